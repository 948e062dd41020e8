// The operator's seals in tests: a sealer with a fresh key, and the annotations a verdict state
// sealed by it puts on a pod (the patch's nulls, which remove annotations, left out).
import { randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { VerdictState } from '../../src/api/pod-state.js';
import { VerdictSeal, type Sealer } from '../../src/verdicts/seal.js';

export function testSealer(): Sealer {
  return { seal: new VerdictSeal(randomBytes(32)), adoptsUnsealed: () => false };
}

export function sealedAnnotations(sealer: Sealer, pod: V1Pod, state: VerdictState): Record<string, string> {
  return Object.fromEntries(Object.entries(sealer.seal.annotate(pod, state)).filter((entry): entry is [string, string] => entry[1] !== null));
}
