// Reads a Secret's data, decoded from base64.
import type { V1Secret } from '@kubernetes/client-node';
import type { SecretReader } from '../aws/credentials.js';
import { segment, type KubeClient } from './api.js';

export function kubeSecretReader(client: KubeClient): SecretReader {
  return async (namespace, name) => {
    const secret = await client.request<V1Secret>('GET', `/api/v1/namespaces/${segment(namespace)}/secrets/${segment(name)}`);
    return Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  };
}
