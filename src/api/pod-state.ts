// What a labelled pod says about its entitlement, read from the pod alone (pure): its gate, its
// product, and the verdict state the operator keeps in its annotations. The operator believes a
// verdict state only when it carries its seal (verdicts/seal.ts); the pod cache drops
// any other, so what the controllers read here is the operator's own.
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel, schedulingGate, type CheckRecord, type MarketplaceProduct, type Verdict } from './marketplace-product.js';

/** The annotations that hold a pod's verdict state, all written (and sealed) together. */
export const verdictStateAnnotations = [annotations.status, annotations.reason, annotations.registeredAt, annotations.checks, annotations.check] as const;

/** A pod's verdict and the record of its checks. Empty for a pod the operator has not decided. */
export interface VerdictState {
  status?: Verdict;
  reason?: string;
  /** When its registration last verified; kept through a later refusal, which is then a revocation. */
  registeredAt?: string;
  checks?: CheckRecord;
  /** The id of the check under way when it is a check again (verdicts/nonce.ts); none for a pod's first. */
  check?: string;
}

export function isGated(pod: { spec?: { schedulingGates?: readonly { name: string }[] } }): boolean {
  return (pod.spec?.schedulingGates ?? []).some((g) => g.name === schedulingGate);
}

/** Index key of a pod's product: "namespace/product". */
export function productKeyOfPod(pod: V1Pod): string | undefined {
  const product = pod.metadata?.labels?.[productLabel];
  return product === undefined ? undefined : `${pod.metadata?.namespace ?? ''}/${product}`;
}

export function verdictOf(pod: V1Pod): Verdict | undefined {
  const value = pod.metadata?.annotations?.[annotations.status];
  return value === 'Entitled' || value === 'NotEntitled' ? value : undefined;
}

function reasonOf(pod: V1Pod): string | undefined {
  return pod.metadata?.annotations?.[annotations.reason];
}

export function readCheckRecord(pod: V1Pod): CheckRecord | undefined {
  const text = pod.metadata?.annotations?.[annotations.checks];
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<CheckRecord>;
    return typeof value.attempts === 'number' && typeof value.product === 'string' && typeof value.pod === 'string' ? (value as CheckRecord) : undefined;
  } catch {
    return undefined;
  }
}

export function verdictStateOf(pod: V1Pod): VerdictState {
  const status = verdictOf(pod);
  const reason = reasonOf(pod);
  const registeredAt = pod.metadata?.annotations?.[annotations.registeredAt];
  const checks = readCheckRecord(pod);
  const check = pod.metadata?.annotations?.[annotations.check];
  return { ...(status ? { status } : {}), ...(reason ? { reason } : {}), ...(registeredAt ? { registeredAt } : {}), ...(checks ? { checks } : {}), ...(check ? { check } : {}) };
}

/** The annotation values that write `state`: every verdict annotation, null (removed) where the state has none. */
export function verdictStateValues(state: VerdictState): Record<(typeof verdictStateAnnotations)[number], string | null> {
  return {
    [annotations.status]: state.status ?? null,
    [annotations.reason]: state.reason ?? null,
    [annotations.registeredAt]: state.registeredAt ?? null,
    [annotations.checks]: state.checks ? JSON.stringify(state.checks) : null,
    [annotations.check]: state.check ?? null,
  };
}

/** The pod held a verified Entitled verdict once. Refused since (onRevocation: Evict), it is a revoked pod. */
function wasEntitled(state: VerdictState): boolean {
  return state.registeredAt !== undefined;
}

/**
 * The operator itself let the pod run: it was entitled once, or refused under Audit. Its
 * PodDisruptionBudget is respected when it must go; a pod never allowed to run gets no such grace.
 */
export function wasAllowedToRun(state: VerdictState): boolean {
  return wasEntitled(state) || state.checks?.ranUnderAudit === true;
}

/**
 * A refused pod that must not run: under Enforce, and under Audit too once its entitlement was
 * revoked (onRevocation: Evict is an explicit choice).
 */
export function mustNotRun(product: MarketplaceProduct, state: VerdictState): boolean {
  if (state.status !== 'NotEntitled' || state.reason === 'ProductNotFound') return false;
  return product.spec.enforcement !== 'Audit' || (wasEntitled(state) && product.spec.onRevocation === 'Evict');
}

/**
 * Not gated, yet no verified verdict lets it run (Enforce): its gate was removed, or its verdict
 * forged, by someone other than the operator. The operator registers it and evicts it if refused.
 */
export function isBypassing(product: MarketplaceProduct, pod: V1Pod, state: VerdictState): boolean {
  return product.spec.enforcement !== 'Audit' && !isGated(pod) && pod.metadata?.deletionTimestamp === undefined && state.status !== 'Entitled' && !wasAllowedToRun(state);
}
