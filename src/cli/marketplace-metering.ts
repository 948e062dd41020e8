#!/usr/bin/env node
// marketplace-metering: the four AWS Marketplace Metering operations from the command line, with
// the same AWS settings as the operator, plus an offline check of RegisterUsage signatures.
// JSON on stdout; errors on stderr with a non-zero exit code.
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { UsageAllocation, UsageRecord } from '@aws-sdk/client-marketplace-metering';
import { createMeteringClient, createStsClient, type ClientCredentials } from '../aws/clients.js';
import { assumeRoleCredentials, baseCredentials } from '../aws/credentials.js';
import { AwsCallError } from '../aws/errors.js';
import { batchMeterUsage, meterUsage, registerUsage, resolveCustomer } from '../aws/metering-operations.js';
import { resolveAwsSettings, SettingsError, type AwsFlags } from '../aws/settings.js';
import { newNonce } from '../aws/nonce.js';
import { importPublicKey, PublicKeyError, SignatureError, verifyRegistrationSignature } from '../aws/signature.js';
import { loadKubeClient } from '../kube/api.js';
import { kubeSecretReader } from '../kube/secrets.js';
import { awsFlagSpecs, FlagError, flagHelp, helpFlagSpec, parseFlagsWith, type FlagSpecs } from '../config/flags.js';

const program = 'marketplace-metering';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

type Values = Record<string, unknown> & { help?: boolean };

interface Command {
  summary: string;
  flags: FlagSpecs;
  required: readonly string[];
  usesAws: boolean;
  /** The answer, or a promise of it. */
  run: (values: Values, io: CliIo) => unknown;
}

const awsCommandFlags: FlagSpecs = {
  ...awsFlagSpecs,
  'role-arn': { key: 'roleArn', kind: 'string', help: 'assume this IAM role (STS AssumeRole) with the credentials above' },
};

const productCodeFlag: FlagSpecs = { 'product-code': { key: 'productCode', kind: 'string', help: 'the product code (required)' } };

class UsageError extends Error {}

const text = (values: Values, key: string): string => values[key] as string;
const optionalText = (values: Values, key: string): string | undefined => values[key] as string | undefined;

/** A JSON argument, given inline or as @path. */
function jsonArg(value: string, flag: string): unknown {
  const raw = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  try {
    return JSON.parse(raw);
  } catch {
    throw new UsageError(`--${flag}: not valid JSON`);
  }
}

function timeArg(value: string | undefined, flag: string): Date {
  if (value === undefined) return new Date();
  const time = /^\d+$/.test(value) ? new Date(Number(value) * 1000) : new Date(value);
  if (Number.isNaN(time.getTime())) throw new UsageError(`--${flag}: ${JSON.stringify(value)} is not an RFC 3339 time or epoch seconds`);
  return time;
}

function client(values: Values, io: CliIo) {
  const settings = resolveAwsSettings(values as AwsFlags, io.env);
  let credentials: ClientCredentials | undefined = baseCredentials(settings.credentials, (namespace, name) => {
    // Only --aws-credentials-secret needs the cluster: in a pod its service account, else the
    // default kubeconfig (KUBECONFIG, ~/.kube/config).
    return kubeSecretReader(loadKubeClient())(namespace, name);
  });
  const roleArn = optionalText(values, 'roleArn');
  if (roleArn) credentials = assumeRoleCredentials(createStsClient(settings, credentials), roleArn, `${program}-${process.pid}`);
  return createMeteringClient(settings, credentials);
}

const commands: Readonly<Record<string, Command>> = {
  'register-usage': {
    summary: 'Register a running container: RegisterUsage with a product code, public key version and nonce',
    flags: {
      ...productCodeFlag,
      'public-key-version': { key: 'publicKeyVersion', kind: 'integer', help: 'the public key version (required)' },
      nonce: { key: 'nonce', kind: 'string', help: 'nonce to send (default: 32 fresh random bytes)' },
    },
    required: ['product-code', 'public-key-version'],
    usesAws: true,
    run: async (values, io) => {
      const nonce = optionalText(values, 'nonce') ?? newNonce();
      const out = await registerUsage(client(values, io), { productCode: text(values, 'productCode'), publicKeyVersion: values.publicKeyVersion as number, nonce });
      return { Signature: out.signature, Nonce: nonce, ...(out.publicKeyRotationTimestamp ? { PublicKeyRotationTimestamp: out.publicKeyRotationTimestamp.toISOString() } : {}) };
    },
  },
  'meter-usage': {
    summary: 'Report usage of one dimension for one hour: MeterUsage',
    flags: {
      ...productCodeFlag,
      dimension: { key: 'dimension', kind: 'string', help: 'the usage dimension (required)' },
      quantity: { key: 'quantity', kind: 'integer', help: 'the usage quantity (default 0)' },
      timestamp: { key: 'timestamp', kind: 'string', help: 'RFC 3339 time or epoch seconds (default now; AWS rounds down to the hour)' },
      'dry-run': { key: 'dryRun', kind: 'boolean', help: 'check permissions only' },
      'client-token': { key: 'clientToken', kind: 'string', help: 'idempotency token (1-64 characters)' },
      allocations: { key: 'allocations', kind: 'string', help: 'UsageAllocations as JSON, or @file' },
    },
    required: ['product-code', 'dimension'],
    usesAws: true,
    run: async (values, io) => {
      const allocations = optionalText(values, 'allocations');
      const clientToken = optionalText(values, 'clientToken');
      const out = await meterUsage(client(values, io), {
        productCode: text(values, 'productCode'),
        usageDimension: text(values, 'dimension'),
        usageQuantity: (values.quantity as number | undefined) ?? 0,
        timestamp: timeArg(optionalText(values, 'timestamp'), 'timestamp'),
        ...(values.dryRun ? { dryRun: true } : {}),
        ...(clientToken ? { clientToken } : {}),
        ...(allocations ? { usageAllocations: jsonArg(allocations, 'allocations') as UsageAllocation[] } : {}),
      });
      return { MeteringRecordId: out.meteringRecordId ?? null };
    },
  },
  'batch-meter-usage': {
    summary: 'Report SaaS usage records (up to 25): BatchMeterUsage',
    flags: {
      ...productCodeFlag,
      records: { key: 'records', kind: 'string', help: 'JSON array (or @file) of {Timestamp, CustomerIdentifier|CustomerAWSAccountId, Dimension, Quantity} (required)' },
    },
    required: ['product-code', 'records'],
    usesAws: true,
    run: async (values, io) => {
      const records = jsonArg(text(values, 'records'), 'records');
      if (!Array.isArray(records)) throw new UsageError('--records: must be a JSON array');
      const usageRecords = (records as Record<string, unknown>[]).map((r) => {
        const time = typeof r.Timestamp === 'number' ? String(r.Timestamp) : typeof r.Timestamp === 'string' ? r.Timestamp : undefined;
        return { ...r, Timestamp: timeArg(time, 'records[].Timestamp') } as UsageRecord;
      });
      const out = await batchMeterUsage(client(values, io), text(values, 'productCode'), usageRecords);
      return { Results: out.results, UnprocessedRecords: out.unprocessedRecords };
    },
  },
  'resolve-customer': {
    summary: 'Resolve a SaaS registration token to a customer: ResolveCustomer',
    flags: { 'registration-token': { key: 'registrationToken', kind: 'string', help: 'the x-amzn-marketplace-token (required)' } },
    required: ['registration-token'],
    usesAws: true,
    run: async (values, io) => {
      const out = await resolveCustomer(client(values, io), text(values, 'registrationToken'));
      return { CustomerIdentifier: out.customerIdentifier, CustomerAWSAccountId: out.customerAWSAccountId, ProductCode: out.productCode, LicenseArn: out.licenseArn };
    },
  },
  'verify-signature': {
    summary: 'Check a RegisterUsage signature offline against a public key, product code, key version and nonce',
    flags: {
      signature: { key: 'signature', kind: 'string', help: 'the Signature from RegisterUsage, or @file (required)' },
      'public-key': { key: 'publicKey', kind: 'string', help: 'path of the PEM public key (required)' },
      ...productCodeFlag,
      'public-key-version': { key: 'publicKeyVersion', kind: 'integer', help: 'the public key version sent (required)' },
      nonce: { key: 'nonce', kind: 'string', help: 'the nonce sent (required)' },
    },
    required: ['signature', 'public-key', 'product-code', 'public-key-version', 'nonce'],
    usesAws: false,
    run: (values) => {
      const raw = text(values, 'signature');
      const signature = (raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw).trim();
      const key = importPublicKey(readFileSync(text(values, 'publicKey'), 'utf8'));
      const claims = verifyRegistrationSignature(signature, key, {
        productCode: text(values, 'productCode'),
        publicKeyVersion: values.publicKeyVersion as number,
        nonce: text(values, 'nonce'),
      });
      return { valid: true, productCode: claims.productCode, publicKeyVersion: claims.publicKeyVersion, nonce: claims.nonce, issuedAt: claims.issuedAt.toISOString() };
    },
  },
};

function mainHelp(): string {
  const list = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(20)} ${c.summary}\n`).join('');
  return `Usage: ${program} <command> [flags]\n\nCommands:\n${list}\nRun '${program} <command> --help' for a command's flags.\n`;
}

function commandHelp(name: string, command: Command): string {
  const aws = command.usesAws ? `\nAWS settings (flags beat --config, which beats the environment):\n${flagHelp(awsCommandFlags)}` : '';
  return `Usage: ${program} ${name} [flags]\n\n${command.summary}.\n\nFlags:\n${flagHelp({ ...command.flags, ...helpFlagSpec })}${aws}`;
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(mainHelp());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.stderr(`${program}: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}`);
    return 2;
  }
  try {
    const specs = { ...command.flags, ...(command.usesAws ? awsCommandFlags : {}), ...helpFlagSpec };
    const values = parseFlagsWith<Values>(rest, specs, {});
    if (values.help) {
      io.stdout(commandHelp(name, command));
      return 0;
    }
    const missing = command.required.filter((flag) => values[specs[flag]?.key ?? flag] === undefined);
    if (missing.length > 0) throw new UsageError(`${missing.map((f) => `--${f}`).join(', ')} required`);
    io.stdout(`${JSON.stringify(await command.run(values, io), null, 2)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof FlagError || error instanceof UsageError) {
      io.stderr(`${program} ${name}: ${error.message}\n\n${commandHelp(name, command)}`);
      return 2;
    }
    // A bad setting (a flag's value or the config file) is bad usage too, as the contract says.
    if (error instanceof SettingsError) {
      io.stderr(`${program} ${name}: ${error.message}\n`);
      return 2;
    }
    if (error instanceof SignatureError) io.stderr(`${program} ${name}: invalid signature (${error.failure}): ${error.message}\n`);
    else if (error instanceof AwsCallError) io.stderr(`${program} ${name}: ${error.message}${error.retryable ? ' (retryable)' : ''}\n`);
    else if (error instanceof PublicKeyError) io.stderr(`${program} ${name}: ${error.message}\n`);
    else io.stderr(`${program} ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

// Run when executed directly (also through the npm bin symlink), not when imported by tests.
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const io: CliIo = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), env: process.env };
  process.exitCode = await runCli(process.argv.slice(2), io);
}
