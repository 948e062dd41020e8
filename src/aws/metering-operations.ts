// Typed wrappers for the four Marketplace Metering operations. Failures come out classified
// (AwsCallError).
import {
  BatchMeterUsageCommand,
  MeterUsageCommand,
  RegisterUsageCommand,
  ResolveCustomerCommand,
  type MarketplaceMeteringClient,
  type UsageAllocation,
  type UsageRecord,
  type UsageRecordResult,
} from '@aws-sdk/client-marketplace-metering';
import { awsCall } from './errors.js';

export interface RegisterUsageResult {
  signature: string;
  publicKeyRotationTimestamp?: Date;
}

export interface MeterUsageInput {
  productCode: string;
  timestamp: Date;
  usageDimension: string;
  usageQuantity?: number;
  dryRun?: boolean;
  usageAllocations?: UsageAllocation[];
  clientToken?: string;
}

export interface BatchMeterUsageResult {
  results: UsageRecordResult[];
  unprocessedRecords: UsageRecord[];
}

export interface ResolvedCustomer {
  customerIdentifier?: string;
  customerAWSAccountId?: string;
  productCode?: string;
  licenseArn?: string;
}

/** `signal` abandons the call (the SDK aborts its request). */
export async function registerUsage(client: MarketplaceMeteringClient, input: { productCode: string; publicKeyVersion: number; nonce: string }, signal?: AbortSignal): Promise<RegisterUsageResult> {
  const out = await awsCall('RegisterUsage', () =>
    client.send(new RegisterUsageCommand({ ProductCode: input.productCode, PublicKeyVersion: input.publicKeyVersion, Nonce: input.nonce }), signal ? { abortSignal: signal } : {}),
  );
  if (!out.Signature) throw new Error('RegisterUsage answered without a Signature');
  return { signature: out.Signature, ...(out.PublicKeyRotationTimestamp ? { publicKeyRotationTimestamp: out.PublicKeyRotationTimestamp } : {}) };
}

export async function meterUsage(client: MarketplaceMeteringClient, input: MeterUsageInput, signal?: AbortSignal): Promise<{ meteringRecordId?: string }> {
  const out = await awsCall('MeterUsage', () =>
    client.send(
      new MeterUsageCommand({
        ProductCode: input.productCode,
        Timestamp: input.timestamp,
        UsageDimension: input.usageDimension,
        UsageQuantity: input.usageQuantity,
        DryRun: input.dryRun,
        UsageAllocations: input.usageAllocations,
        ClientToken: input.clientToken,
      }),
      signal ? { abortSignal: signal } : {},
    ),
  );
  return out.MeteringRecordId ? { meteringRecordId: out.MeteringRecordId } : {};
}

export async function batchMeterUsage(client: MarketplaceMeteringClient, productCode: string, records: UsageRecord[]): Promise<BatchMeterUsageResult> {
  const out = await awsCall('BatchMeterUsage', () => client.send(new BatchMeterUsageCommand({ ProductCode: productCode, UsageRecords: records })));
  return { results: out.Results ?? [], unprocessedRecords: out.UnprocessedRecords ?? [] };
}

export async function resolveCustomer(client: MarketplaceMeteringClient, registrationToken: string): Promise<ResolvedCustomer> {
  const out = await awsCall('ResolveCustomer', () => client.send(new ResolveCustomerCommand({ RegistrationToken: registrationToken })));
  return {
    ...(out.CustomerIdentifier ? { customerIdentifier: out.CustomerIdentifier } : {}),
    ...(out.CustomerAWSAccountId ? { customerAWSAccountId: out.CustomerAWSAccountId } : {}),
    ...(out.ProductCode ? { productCode: out.ProductCode } : {}),
    ...(out.LicenseArn ? { licenseArn: out.LicenseArn } : {}),
  };
}
