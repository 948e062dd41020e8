// Reads a ConfigMap's data; undefined when it does not exist.
import { ApiException, type CoreV1Api } from '@kubernetes/client-node';
import type { ConfigMapReader } from '../aws/public-key.js';

export function kubeConfigMapReader(core: CoreV1Api): ConfigMapReader {
  return async (namespace, name) => {
    try {
      return (await core.readNamespacedConfigMap({ name, namespace })).data ?? {};
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw error;
    }
  };
}
