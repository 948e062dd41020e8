// One entitlement check for one pod: the product key, the pod's identity, RegisterUsage with the
// pod's nonce, and the signature. Every failure ends in a defined outcome: a verdict with the
// contract's reason, or a retry (throttling, 5xx, network, timeout, anything unexpected).
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { MarketplaceProduct, NotEntitledReason } from '../api/marketplace-product.js';
import { createMeteringClient, createRequestHandler } from '../aws/clients.js';
import { AwsCallError } from '../aws/errors.js';
import type { Identities } from '../aws/identity.js';
import { registerUsage } from '../aws/metering.js';
import { IdentityUnavailableError, type PodRef } from '../aws/pod-identity.js';
import { loadPublicKey, type ConfigMapReader } from '../aws/public-key.js';
import type { AwsSettings } from '../aws/settings.js';
import { PublicKeyError, SignatureError, verifyRegistrationSignature } from '../aws/signature.js';
import type { Metrics } from '../observability/metrics.js';
import { Semaphore } from './semaphore.js';

export type CheckResult =
  | { verdict: 'Entitled'; registeredAt: Date; publicKeyRotationTimestamp?: Date }
  | { verdict: 'NotEntitled'; reason: NotEntitledReason; message: string }
  | { verdict: 'Retry'; message: string };

export class Registrar {
  private readonly handler: NodeHttpHandler;
  private readonly limit: Semaphore;

  constructor(
    private readonly settings: AwsSettings,
    private readonly identities: Identities,
    private readonly readConfigMap: ConfigMapReader,
    private readonly metrics: Metrics,
    awsConcurrency: number,
  ) {
    this.handler = createRequestHandler(settings);
    this.limit = new Semaphore(awsConcurrency);
  }

  async check(product: MarketplaceProduct, pod: PodRef, nonce: string): Promise<CheckResult> {
    const { spec } = product;
    const expected = { productCode: spec.productCode, publicKeyVersion: spec.publicKeyVersion, nonce };
    try {
      // The key first: a registration whose answer cannot be verified must not happen.
      const key = await loadPublicKey(spec.publicKey, product.metadata.namespace, this.readConfigMap);
      const answer = await this.limit.run(async () => {
        const credentials = await this.timed('Identity', () => this.identities.forPod({ mode: spec.identity?.mode ?? 'Pod', ...(spec.identity?.roleArn ? { roleArn: spec.identity.roleArn } : {}) }, pod));
        const client = createMeteringClient(this.settings, credentials, spec.region ?? this.settings.region, this.handler);
        return this.timed('RegisterUsage', () => registerUsage(client, expected));
      });
      await verifyRegistrationSignature(answer.signature, key, expected);
      return { verdict: 'Entitled', registeredAt: new Date(), ...(answer.publicKeyRotationTimestamp ? { publicKeyRotationTimestamp: answer.publicKeyRotationTimestamp } : {}) };
    } catch (error) {
      return outcomeOf(error);
    }
  }

  private async timed<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const end = this.metrics.awsLatency.startTimer({ operation });
    try {
      const result = await call();
      this.metrics.awsCalls.inc({ operation, outcome: 'ok' });
      return result;
    } catch (error) {
      this.metrics.awsCalls.inc({ operation, outcome: error instanceof AwsCallError ? error.code : error instanceof Error ? error.name : 'error' });
      throw error;
    } finally {
      end();
    }
  }
}

function outcomeOf(error: unknown): CheckResult {
  if (error instanceof PublicKeyError) return { verdict: 'NotEntitled', reason: 'PublicKeyUnavailable', message: error.message };
  if (error instanceof IdentityUnavailableError) return { verdict: 'NotEntitled', reason: 'IdentityUnavailable', message: error.message };
  if (error instanceof SignatureError) return { verdict: 'NotEntitled', reason: 'InvalidSignature', message: `${error.failure}: ${error.message}` };
  if (error instanceof AwsCallError && !error.retryable && error.reason) return { verdict: 'NotEntitled', reason: error.reason, message: error.message };
  // Throttling, 5xx, network errors, timeouts, and anything unexpected: retry with backoff.
  return { verdict: 'Retry', message: error instanceof Error ? error.message : String(error) };
}
