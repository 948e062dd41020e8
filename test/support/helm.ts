// The Helm chart, rendered with the Helm binary the tests build (hack/build-test-binaries.sh),
// and the objects of two renders compared field by field.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadAll } from 'js-yaml';
import type { BundleObject } from './bundle.js';
import { binary, repoRoot } from './testbin.js';

export const chartPath = path.join(repoRoot, 'charts/entitlement-operator');
/** The release the README installs: its name and namespace give the bundle's object names. */
export const release = { name: 'entitlement-operator', namespace: 'entitlement-operator-system' };
/** The Kubernetes release the chart is rendered for (the main suites'). */
export const kubeVersion = '1.37.2';

/** Which Helm: 3 (the default) or 4, both built by hack/build-test-binaries.sh. */
export type HelmBinary = 'helm' | 'helm4';

export interface RenderOptions {
  namespace?: string;
  helm?: HelmBinary;
  /** More arguments for helm template, such as --include-crds. */
  args?: readonly string[];
}

/** `helm template` of the chart with these values (written to a values file, removed after). */
export async function helmTemplate(values: object = {}, options: RenderOptions = {}): Promise<BundleObject[]> {
  const stdout = await helm(['template', release.name, chartPath, '--namespace', options.namespace ?? release.namespace, '--kube-version', kubeVersion, ...(options.args ?? [])], values, options.helm ?? 'helm');
  return (loadAll(stdout) as (BundleObject | null)[]).filter((o): o is BundleObject => o !== null);
}

/** Runs helm, with a values file holding `values` if given; rejects with helm's stderr when it fails. */
export async function helm(args: readonly string[], values?: object, which: HelmBinary = 'helm'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'helm-values-'));
  try {
    const file = path.join(dir, 'values.json');
    if (values) await writeFile(file, JSON.stringify(values));
    // Helm's cache, config and data in the same temporary directory: nothing left in $HOME.
    const env = { ...process.env, HELM_CACHE_HOME: path.join(dir, 'cache'), HELM_CONFIG_HOME: path.join(dir, 'config'), HELM_DATA_HOME: path.join(dir, 'data') };
    const { stdout } = await promisify(execFile)(await binary(which), [...args, ...(values ? ['--values', file] : [])], { maxBuffer: 64 << 20, env });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`helm ${args[0] ?? ''}: ${stderr?.trim() ?? String(error)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One field that differs between two renders: `path` inside the object `object` (Kind/name). */
export interface Difference {
  object: string;
  path: string;
  before?: unknown;
  after?: unknown;
}

export const objectKey = (o: BundleObject): string => `${o.kind}/${o.metadata.name}`;

/** Every field that differs, objects matched by kind and name (a whole object when only one side has it). */
export function differences(before: readonly BundleObject[], after: readonly BundleObject[]): Difference[] {
  const index = (objects: readonly BundleObject[]): Map<string, BundleObject> => new Map(objects.map((o) => [objectKey(o), o]));
  const [a, b] = [index(before), index(after)];
  const found: Difference[] = [];
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const [x, y] = [a.get(key), b.get(key)];
    if (x === undefined) found.push({ object: key, path: '', after: 'added' });
    else if (y === undefined) found.push({ object: key, path: '', before: 'removed' });
    else {
      diffValues(x, y, '', (path, left, right) => {
        found.push({ object: key, path, ...(left === undefined ? {} : { before: left }), ...(right === undefined ? {} : { after: right }) });
      });
    }
  }
  return found;
}

function diffValues(left: unknown, right: unknown, at: string, report: (path: string, left: unknown, right: unknown) => void): void {
  if (isRecord(left) && isRecord(right)) {
    for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) diffValues(left[key], right[key], `${at}.${key}`, report);
  } else if (Array.isArray(left) && Array.isArray(right) && left.length === right.length) {
    left.forEach((item, i) => {
      diffValues(item, right[i], `${at}[${i}]`, report);
    });
  } else if (JSON.stringify(left) !== JSON.stringify(right)) {
    report(at, left, right);
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The labels Helm adds to every object and the bundle has not: they say which release owns it. */
export const helmLabels = ['app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/version', 'helm.sh/chart'];

/**
 * The Prometheus Operator's two kinds the chart can make, as CRDs that keep any spec: enough for
 * an API server to take a ServiceMonitor and a PrometheusRule (their schemas are not ours to test).
 */
export function prometheusOperatorCrds(): object[] {
  return [['ServiceMonitor', 'servicemonitors'], ['PrometheusRule', 'prometheusrules']].map(([kind = '', plural = '']) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: 'monitoring.coreos.com',
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
    },
  }));
}
