// Reads a Secret's data, decoded from base64.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { SecretReader } from '../aws/credentials.js';

export function kubeSecretReader(core: CoreV1Api): SecretReader {
  return async (namespace, name) => {
    const secret = await core.readNamespacedSecret({ name, namespace });
    return Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  };
}
