// Reads a Secret's data, decoded from base64.
import type { V1Secret } from '@kubernetes/client-node';
import { segment, type KubeClient } from './api.js';

/** A Secret's data by namespace and name (decoded). */
export type SecretReader = (namespace: string, name: string) => Promise<Record<string, string>>;

export function kubeSecretReader(client: KubeClient): SecretReader {
  return async (namespace, name) => {
    const secret = await client.request<V1Secret>('GET', `/api/v1/namespaces/${segment(namespace)}/secrets/${segment(name)}`);
    return Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  };
}
