// The operator's seals in tests: a sealer (seal and nonces) with a fresh key, and the annotations a verdict state
// sealed by it puts on a pod (the patch's nulls, which remove annotations, left out).
import { randomBytes } from 'node:crypto';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { defaultNamespace, operatorKeySecretName } from '../../src/api/names.js';
import { verdictStateOf, type VerdictState } from '../../src/api/pod-state.js';
import { RegistrationNonces } from '../../src/verdicts/nonce.js';
import { VerdictSeal, type Sealer } from '../../src/verdicts/seal.js';

export function testSealer(adoptsUnsealed = false): Sealer {
  const key = randomBytes(32);
  return { seal: new VerdictSeal(key), nonces: new RegistrationNonces(key), adoptsUnsealed: () => adoptsUnsealed };
}

export function sealedAnnotations(sealer: Sealer, pod: V1Pod, state: VerdictState): Record<string, string> {
  return Object.fromEntries(Object.entries(sealer.seal.annotate(pod, state)).filter((entry): entry is [string, string] => entry[1] !== null));
}

/**
 * The nonce the operator computes for a pod's registration as it stands (its uid and check id),
 * under the key in the operator's Secret: what a test compares AWS's recorded calls with.
 */
export async function operatorNonces(core: CoreV1Api, namespace: string = defaultNamespace): Promise<(pod: V1Pod) => string> {
  const secret = await core.readNamespacedSecret({ namespace, name: operatorKeySecretName });
  const nonces = new RegistrationNonces(Buffer.from(secret.data?.key ?? '', 'base64'));
  return (pod) => nonces.of(pod.metadata?.uid ?? '', verdictStateOf(pod).check);
}
