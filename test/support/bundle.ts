// The rendered install bundle, parsed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { repoRoot } from './testbin.js';

export const bundlePath = path.join(repoRoot, 'config/install.yaml');
/** The policy admission mode's bundle (Kubernetes 1.36+): no webhook, a MutatingAdmissionPolicy. */
export const policyBundlePath = path.join(repoRoot, 'config/install-policy-mode.yaml');
export const operatorNamespace = 'entitlement-operator-system';

/** Who adds the gate: the operator's webhook, or the API server's MutatingAdmissionPolicy. */
export type AdmissionMode = 'webhook' | 'policy';

export function bundlePathOf(mode: AdmissionMode): string {
  return mode === 'policy' ? policyBundlePath : bundlePath;
}

export type BundleObject = KubernetesObject & { kind: string; metadata: { name: string } };

/** The cluster-scoped kinds among the bundle's (kustomize writes its namespace into them too; the API server drops it). */
export const clusterScopedKinds: ReadonlySet<string> = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding']);

/** Objects as one input for `kubectl apply -f -` (or delete): a JSON document each. */
export function asManifest(objects: readonly object[]): string {
  return objects.map((o) => JSON.stringify(o)).join('\n');
}

export function bundleObjects(mode: AdmissionMode = 'webhook'): BundleObject[] {
  return loadAll(readFileSync(bundlePathOf(mode), 'utf8')) as BundleObject[];
}

/** The one object of a kind (and name) in the bundle, typed as the caller's client-node model. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the model type
export function bundleObject<T extends KubernetesObject>(kind: string, name?: string): T {
  const found = bundleObjects().filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''} in the bundle, found ${found.length}`);
  return found[0] as T;
}

/** How the bundle's Deployment runs the operator: its memory and CPU limits, and the environment it sets literally (NODE_OPTIONS, ...). */
export function managerRuntime(): { memoryLimit: string; cpuLimit?: string; env: Record<string, string> } {
  const deployment = bundleObject<V1Deployment>('Deployment');
  const manager = deployment.spec?.template.spec?.containers.find((c) => c.name === 'manager');
  const memoryLimit = manager?.resources?.limits?.memory;
  if (!manager || !memoryLimit) throw new Error('the bundle has no manager container with a memory limit');
  const cpuLimit = manager.resources?.limits?.cpu;
  const env = Object.fromEntries((manager.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value ?? '']));
  return { memoryLimit, ...(cpuLimit ? { cpuLimit } : {}), env };
}
