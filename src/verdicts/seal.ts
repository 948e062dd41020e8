// The operator's seal on a pod's verdict state: an HMAC-SHA256, under a key only the operator
// holds (verdicts/operator-key.ts), of the pod's uid, its product label and every verdict
// annotation. Anyone who may patch a pod can write `status: Entitled` on it; nobody without the
// key can seal it, nor move a seal to another pod (the uid) or another product (the label). The
// operator believes no verdict state without its seal (verdicts/pod-cache.ts), so with the
// admission policy that guards the annotations gone, a forged verdict is still no verdict.
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel } from '../api/marketplace-product.js';
import { verdictStateAnnotations, verdictStateValues, type VerdictState } from '../api/pod-state.js';
import type { RegistrationNonces } from './nonce.js';

const sealVersion = 'v1';

/** Who holds the seal and makes the nonces: the operator key once it is loaded (operator-key.ts). */
export interface Sealer {
  readonly seal: VerdictSeal;
  readonly nonces: RegistrationNonces;
  /** Whether a verdict without any seal is adopted now: shortly after the upgrade from a release without seals. */
  adoptsUnsealed(): boolean;
}

export class VerdictSeal {
  // A KeyObject: createHmac with a Buffer key tests for one by throwing and catching, every call.
  private readonly key: KeyObject;

  constructor(key: Buffer) {
    if (key.length < 32) throw new Error(`the operator key has ${key.length} bytes; a seal needs 32 or more`);
    this.key = createSecretKey(key);
  }

  /** The annotations that write `state` on `pod`, with its seal: every verdict annotation, null where the state has none. */
  annotate(pod: V1Pod, state: VerdictState): Record<string, string | null> {
    const values = verdictStateValues(state);
    const sealed = Object.values(values).some((value) => value !== null);
    return { ...values, [annotations.seal]: sealed ? this.sealOf(pod, values) : null };
  }

  /** True when the pod has no verdict state, or one that carries the seal this key gives it. */
  verifies(pod: V1Pod): boolean {
    const own = pod.metadata?.annotations ?? {};
    const values = Object.fromEntries(verdictStateAnnotations.map((key) => [key, own[key] ?? null]));
    if (Object.values(values).every((value) => value === null)) return true;
    const seal = own[annotations.seal];
    if (seal === undefined) return false;
    const expected = Buffer.from(this.sealOf(pod, values));
    const given = Buffer.from(seal);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private sealOf(pod: V1Pod, values: Record<string, string | null>): string {
    // The check id joins the message only when there is one, so the seals written before it
    // existed (the same message without it) still verify after an upgrade.
    const check = values[annotations.check] ?? null;
    const sealed = verdictStateAnnotations.filter((key) => key !== annotations.check).map((key) => values[key] ?? null);
    const message = JSON.stringify([sealVersion, pod.metadata?.uid ?? '', pod.metadata?.labels?.[productLabel] ?? '', ...sealed, ...(check === null ? [] : [check])]);
    return `${sealVersion}.${createHmac('sha256', this.key).update(message).digest('base64url')}`;
  }
}
