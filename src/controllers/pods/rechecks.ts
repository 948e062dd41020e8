// When a NotEntitled pod is checked again (pure): at once when its product changed (generation),
// its public key changed (the ConfigMap a product names), or a user asked (the recheck
// annotation, on the product or the pod, set or changed since the last check), else with backoff
// from the last verdict, 1 minute doubling up to a cap users set, except for the permanent reasons.
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, permanentReasons, type CheckRecord, type MarketplaceProduct } from '../../api/marketplace-product.js';

const recheckBaseMs = 60_000;

export type RecheckPlan = { kind: 'now'; attempts: number; why: string } | { kind: 'at'; time: number } | { kind: 'never' };

export type CheckBasis = Pick<CheckRecord, 'product' | 'pod' | 'key'>;

/**
 * What a check is for: the product's generation and recheck annotation, the pod's, and the
 * fingerprint of the key a ConfigMap holds (key-config-maps.ts; undefined when not known).
 */
export function checkBasis(product: MarketplaceProduct, pod: V1Pod, key?: string): CheckBasis {
  return {
    product: `${product.metadata.generation ?? 0}/${product.metadata.annotations?.[annotations.recheck] ?? ''}`,
    pod: pod.metadata?.annotations?.[annotations.recheck] ?? '',
    ...(key !== undefined ? { key } : {}),
  };
}

/** The delay after the n-th check of a streak. */
export function recheckDelayMs(attempts: number, maxIntervalMs: number): number {
  return Math.min(maxIntervalMs, recheckBaseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 30));
}

/** `record`: what the operator last wrote about the pod's checks (its own copy is newer than the cache's). */
export function planRecheck(record: CheckRecord | undefined, reason: string | undefined, basis: CheckBasis, nowMs: number, maxIntervalMs: number): RecheckPlan {
  if (!record) return { kind: 'now', attempts: 1, why: 'no record of its checks' };
  if (record.product !== basis.product) return { kind: 'now', attempts: 1, why: 'its MarketplaceProduct changed or asked for a check' };
  if (basis.key !== undefined && record.key !== basis.key) return { kind: 'now', attempts: 1, why: 'its public key changed' };
  if (record.pod !== basis.pod) return { kind: 'now', attempts: 1, why: 'a check was asked for on the pod' };
  if (reason !== undefined && permanentReasons.has(reason)) return { kind: 'never' };
  const at = Date.parse(record.at ?? '');
  if (!Number.isFinite(at)) return { kind: 'now', attempts: record.attempts + 1, why: 'its last check has no time' };
  const due = at + recheckDelayMs(record.attempts, maxIntervalMs);
  return nowMs >= due ? { kind: 'now', attempts: record.attempts + 1, why: 'periodic' } : { kind: 'at', time: due };
}
