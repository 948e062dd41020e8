// The nonce of a pod's registration, without a write of its own: a MAC, under the operator key,
// of the pod's uid and the id of its check. A pod's first check has no id; every check again
// (and every start-over from a verdict the operator did not seal) writes a fresh random one in
// the patch it makes anyway, sealed with the verdict state. So nobody without the key can
// predict or choose a nonce; a retry after a crash computes the same one (same uid, same check
// id); a check again has a fresh one; and an admission policy, which cannot make random values,
// need not write one when the pod is created.
import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';

const nonceVersion = 'nonce-v1';

export class RegistrationNonces {
  // Its own key, derived from the operator key, so a nonce is never a seal (seal.ts) nor one's input.
  private readonly key: KeyObject;

  constructor(operatorKey: Buffer) {
    this.key = createSecretKey(createHmac('sha256', operatorKey).update(nonceVersion).digest());
  }

  /** The nonce of the registration of pod `uid` for check `check` (undefined: its first). */
  of(uid: string, check: string | undefined): string {
    return createHmac('sha256', this.key)
      .update(JSON.stringify([uid, check ?? '']))
      .digest('base64url');
  }
}

/** The id of a check again: random, so its nonce is one no earlier check used. */
export function newCheckId(): string {
  return randomBytes(16).toString('base64url');
}
