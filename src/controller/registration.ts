// One entitlement check for one pod: the product key, the pod's identity, RegisterUsage with the
// pod's nonce, and the signature. Every failure ends in a defined outcome: a verdict with the
// contract's reason, or a retry (throttling, 5xx, network, timeout, anything unexpected).
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { MarketplaceProduct, NotEntitledReason } from '../api/marketplace-product.js';
import type { MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import { createMeteringClient, createRequestHandler, type ClientCredentials } from '../aws/clients.js';
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
  // Clients by credentials provider, then region; anonymous and default-chain ones by region.
  private readonly providerClients = new WeakMap<AwsCredentialIdentityProvider, Map<string, MarketplaceMeteringClient>>();
  private readonly sharedClients = new Map<string, MarketplaceMeteringClient>();

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
        const client = this.client(credentials, spec.region ?? this.settings.region);
        return this.timed('RegisterUsage', () => registerUsage(client, expected));
      });
      await verifyRegistrationSignature(answer.signature, key, expected);
      return { verdict: 'Entitled', registeredAt: new Date(), ...(answer.publicKeyRotationTimestamp ? { publicKeyRotationTimestamp: answer.publicKeyRotationTimestamp } : {}) };
    } catch (error) {
      return outcomeOf(error);
    }
  }

  /**
   * A Metering client for these credentials and region. Clients of the operator's own identities
   * (providers, one per role) are built once: a new client resolves its configuration again
   * (region, endpoint and retry settings, reading the shared config files) on its first call.
   * A pod's credentials are its own, so its client is built per check and not kept.
   */
  private client(credentials: ClientCredentials | undefined, region: string | undefined): MarketplaceMeteringClient {
    if (typeof credentials === 'object') return createMeteringClient(this.settings, credentials, region, this.handler);
    let clients = this.sharedClients;
    if (typeof credentials === 'function') {
      clients = this.providerClients.get(credentials) ?? new Map<string, MarketplaceMeteringClient>();
      this.providerClients.set(credentials, clients);
    }
    const key = `${credentials === 'anonymous' ? 'anonymous' : ''}|${region ?? ''}`;
    let client = clients.get(key);
    if (!client) clients.set(key, (client = createMeteringClient(this.settings, credentials, region, this.handler)));
    return client;
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
