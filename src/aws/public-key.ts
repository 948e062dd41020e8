// The product's public key: inline PEM, or the PEM in a ConfigMap of the product's namespace.
// Anything that prevents reading it is a PublicKeyError (condition reason PublicKeyUnavailable).
import type { KeyObject } from 'node:crypto';
import type { ConfigMapReader } from '../kube/config-maps.js';
import { importPublicKey, PublicKeyError } from './signature.js';

export interface PublicKeySource {
  pem?: string;
  configMapKeyRef?: { name: string; key: string };
}


export async function loadPublicKey(source: PublicKeySource, namespace: string, readConfigMap: ConfigMapReader): Promise<KeyObject> {
  if (source.pem !== undefined) return importPublicKey(source.pem);
  const ref = source.configMapKeyRef;
  if (!ref) throw new PublicKeyError('publicKey has neither pem nor configMapKeyRef');
  const data = await readConfigMap(namespace, ref.name);
  if (data === undefined) throw new PublicKeyError(`ConfigMap ${namespace}/${ref.name} not found`);
  const pem = data[ref.key];
  if (pem === undefined) throw new PublicKeyError(`ConfigMap ${namespace}/${ref.name} has no key ${ref.key}`);
  return importPublicKey(pem);
}
