// The rendered install bundle, parsed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { repoRoot } from './testbin.js';

export const bundlePath = path.join(repoRoot, 'config/install.yaml');
export const operatorNamespace = 'entitlement-operator-system';

export type BundleObject = KubernetesObject & { kind: string; metadata: { name: string } };

export function bundleObjects(): BundleObject[] {
  return loadAll(readFileSync(bundlePath, 'utf8')) as BundleObject[];
}

/** The one object of a kind (and name) in the bundle, typed as the caller's client-node model. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the model type
export function bundleObject<T extends KubernetesObject>(kind: string, name?: string): T {
  const found = bundleObjects().filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''} in the bundle, found ${found.length}`);
  return found[0] as T;
}
