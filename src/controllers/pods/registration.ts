// One registration for one pod: the product key, the pod's identity, RegisterUsage with the
// pod's nonce, and the signature. Every failure ends in a defined answer: a verdict with the
// contract's reason, or a retry (throttling, 5xx, network, timeout, the operator's own faults,
// anything unexpected): what is the operator's fault never becomes the customer's verdict.
import type { MarketplaceProduct, NotEntitledReason } from '../../api/marketplace-product.js';
import type { Clock } from '../../clock.js';
import { AwsCallError } from '../../aws/errors.js';
import type { ProductClients } from '../../aws/product-clients.js';
import { registerUsage } from '../../aws/metering-operations.js';
import { IdentityUnavailableError, type PodRef } from '../../aws/pod-identity.js';
import { loadPublicKey } from '../../aws/public-key.js';
import type { ConfigMapReader } from '../../kube/config-maps.js';
import { PublicKeyError, SignatureError, verifyRegistrationSignature } from '../../aws/signature.js';

export type RegistrationAnswer =
  | { verdict: 'Entitled'; registeredAt: Date; publicKeyRotationTimestamp?: Date }
  | { verdict: 'NotEntitled'; reason: NotEntitledReason; message: string }
  | { verdict: 'Retry'; message: string };

export class Registrar {
  constructor(
    private readonly clients: ProductClients,
    private readonly readConfigMap: ConfigMapReader,
    private readonly clock: Clock,
  ) {}

  /** Rejects only when `signal` aborts (leadership lost): then nothing is known of the answer. */
  async register(product: MarketplaceProduct, pod: PodRef, nonce: string, signal: AbortSignal): Promise<RegistrationAnswer> {
    const { spec } = product;
    const expected = { productCode: spec.productCode, publicKeyVersion: spec.publicKeyVersion, nonce };
    try {
      // The key first: a registration whose answer cannot be verified must not happen.
      const key = await loadPublicKey(spec.publicKey, product.metadata.namespace, this.readConfigMap);
      const answer = await this.clients.run(product, pod, 'RegisterUsage', (client) => registerUsage(client, expected, signal), signal);
      const now = new Date(this.clock.now());
      verifyRegistrationSignature(answer.signature, key, expected, { now });
      return { verdict: 'Entitled', registeredAt: now, ...(answer.publicKeyRotationTimestamp ? { publicKeyRotationTimestamp: answer.publicKeyRotationTimestamp } : {}) };
    } catch (error) {
      signal.throwIfAborted();
      return answerOf(error);
    }
  }
}

function answerOf(error: unknown): RegistrationAnswer {
  if (error instanceof PublicKeyError) return { verdict: 'NotEntitled', reason: 'PublicKeyUnavailable', message: error.message };
  if (error instanceof IdentityUnavailableError) return { verdict: 'NotEntitled', reason: 'IdentityUnavailable', message: error.message };
  // A verified answer for this pod's nonce, dated ahead of the operator's clock: the clocks differ
  // (the operator's node is behind), which is no evidence against the customer. Retried until they agree.
  if (error instanceof SignatureError && error.failure === 'IssuedInFuture') return { verdict: 'Retry', message: `${error.message}: the operator's clock is behind AWS's; check the node's time sync` };
  if (error instanceof SignatureError) return { verdict: 'NotEntitled', reason: 'InvalidSignature', message: `${error.failure}: ${error.message}` };
  if (error instanceof AwsCallError && !error.retryable && error.reason) return { verdict: 'NotEntitled', reason: error.reason, message: error.message };
  // Throttling, 5xx, network errors, timeouts, the operator's own faults getting the pod's identity
  // (IdentityRetryError), and anything unexpected: retry with backoff.
  return { verdict: 'Retry', message: error instanceof Error ? error.message : String(error) };
}
