// Pods and products for operator tests.
import type { CoreV1Api, CustomObjectsApi, V1Pod } from '@kubernetes/client-node';
import { annotations, group, plural, productLabel, version } from '../../src/api/marketplace-product.js';
import { isGated } from '../../src/api/pod-state.js';
import { productManifest } from './products.js';

export function labelledPod(name: string, product: string, extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { name, labels: { [productLabel]: product, app: 'paid' } },
    spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1' }], ...extra },
  };
}

export const gated = isGated;
export const verdict = (pod: V1Pod): string | undefined => pod.metadata?.annotations?.[annotations.status];
export const reason = (pod: V1Pod): string | undefined => pod.metadata?.annotations?.[annotations.reason];

export async function createProduct(custom: CustomObjectsApi, namespace: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await custom.createNamespacedCustomObject({ group, version, plural, namespace, body: { ...productManifest(name, spec), metadata: { name, namespace } } });
}

export async function getProduct(custom: CustomObjectsApi, namespace: string, name: string): Promise<{ metadata: { generation?: number }; status?: Record<string, unknown> & { conditions?: { type: string; status: string; reason: string; observedGeneration?: number }[] } }> {
  return (await custom.getNamespacedCustomObject({ group, version, plural, namespace, name })) as never;
}

export async function readPod(core: CoreV1Api, namespace: string, name: string): Promise<V1Pod> {
  return core.readNamespacedPod({ name, namespace });
}
