// The nonce of a registration: random, so a RegisterUsage answer cannot be replayed for another pod.
import { randomBytes } from 'node:crypto';

export function newNonce(): string {
  return randomBytes(32).toString('base64url');
}
