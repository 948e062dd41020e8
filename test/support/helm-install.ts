// Installs, upgrades and uninstalls the chart the way the README tells users to (helm install
// into the operator's namespace), against a test cluster, and takes a kustomize install away
// first: both own the same names, so one cluster holds one of them.
import { loadAll } from 'js-yaml';
import path from 'node:path';
import { asManifest } from './bundle.js';
import type { ControlPlane } from './control-plane.js';
import { chartPath, helm, release } from './helm.js';

/** Runs helm against this control plane as its admin; returns helm's stdout (NOTES included). */
export function helmOn(plane: ControlPlane, args: readonly string[], values?: object): Promise<string> {
  return helm([...args, '--kubeconfig', plane.kubeconfigPath], values);
}

export async function helmInstall(plane: ControlPlane, values: object): Promise<string> {
  return helmOn(plane, ['install', release.name, chartPath, '--namespace', release.namespace, '--wait', '--timeout', '180s'], values);
}

/** helm upgrade with the release's values plus these, as the README says (new defaults of a newer chart apply too). */
export async function helmUpgrade(plane: ControlPlane, values: object): Promise<string> {
  return helmOn(plane, ['upgrade', release.name, chartPath, '--namespace', release.namespace, '--reset-then-reuse-values', '--wait', '--timeout', '180s'], values);
}

export async function helmUninstall(plane: ControlPlane): Promise<string> {
  return helmOn(plane, ['uninstall', release.name, '--namespace', release.namespace, '--wait', '--timeout', '180s']);
}

/**
 * Deletes what `kubectl apply -k overlay` made, but its CRD (whose deletion would delete every
 * MarketplaceProduct) and its Namespace (which holds the operator's state), waiting until the
 * operator's pods are gone.
 */
export async function uninstallOverlay(plane: ControlPlane, overlay: string): Promise<void> {
  const rendered = await plane.kubectlOk(['kustomize', '--load-restrictor', 'LoadRestrictionsNone', overlay]);
  const objects = (loadAll(rendered) as ({ kind: string } | null)[]).filter((o): o is { kind: string } => o !== null && o.kind !== 'CustomResourceDefinition' && o.kind !== 'Namespace');
  await plane.kubectlOk(['delete', '--cascade=foreground', '--wait', '--timeout=180s', '-f', '-'], asManifest(objects));
}

/** The overlay directory installWithOverlay made under `dir`. */
export const overlayDir = (dir: string): string => path.join(dir, 'my-install');
