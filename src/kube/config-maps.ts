// Reads a ConfigMap's data; undefined when it does not exist.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { segment, type ApiClient } from './api.js';
import { isNotFound } from './errors.js';

/** A ConfigMap's data by namespace and name; undefined when it does not exist. */
export type ConfigMapReader = (namespace: string, name: string) => Promise<Record<string, string> | undefined>;

export function kubeConfigMapReader(client: ApiClient): ConfigMapReader {
  return async (namespace, name) => {
    try {
      return (await client.request<V1ConfigMap>('GET', `/api/v1/namespaces/${segment(namespace)}/configmaps/${segment(name)}`)).data ?? {};
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  };
}
