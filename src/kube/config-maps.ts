// Reads a ConfigMap's data; undefined when it does not exist.
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { ConfigMapReader } from '../aws/public-key.js';
import { ApiError, segment, type KubeClient } from './api.js';

export function kubeConfigMapReader(client: KubeClient): ConfigMapReader {
  return async (namespace, name) => {
    try {
      return (await client.request<V1ConfigMap>('GET', `/api/v1/namespaces/${segment(namespace)}/configmaps/${segment(name)}`)).data ?? {};
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) return undefined;
      throw error;
    }
  };
}
