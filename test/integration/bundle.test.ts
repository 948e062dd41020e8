// The rendered install bundle against a real kube-apiserver.
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { controlPlaneForSuite } from '../support/control-plane.js';
import type { V1Deployment } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { contentTypes, fromKubeconfigFile, KubeClient } from '../../src/kube/api.js';
import { bundleObject, bundleObjects, bundlePath, operatorNamespace, type BundleObject } from '../support/bundle.js';
import { binary, repoRoot } from '../support/testbin.js';

const controlPlane = controlPlaneForSuite();
let dryRun: string;

beforeAll(async () => {
  const plane = controlPlane();
  // A server-side dry run persists nothing, so the namespace the bundle creates has to exist
  // already for the namespaced objects to pass admission.
  await plane.kubectlOk(['create', 'namespace', operatorNamespace]);
  dryRun = await plane.kubectlOk(['apply', '--dry-run=server', '-f', bundlePath]);
  await plane.kubectlOk(['apply', '-f', bundlePath]);
  await plane.kubectlOk(['wait', '--for=condition=Established', 'crd/marketplaceproducts.marketplace.entitlements.io', '--timeout=60s']);
});

it('config/install.yaml is current with config/ (run `make bundle` when this fails)', async () => {
  const { stdout } = await promisify(execFile)(path.join(repoRoot, 'hack/render-bundle.sh'), ['-'], { env: { ...process.env, KUBECTL: await binary('kubectl') } });
  expect(stdout).toBe(await readFile(bundlePath, 'utf8'));
});

it('kube-score, a manifest scorer users run, finds nothing to fix (ignores are annotated with their reason)', async () => {
  const result = await promisify(execFile)(await binary('kube-score'), ['score', bundlePath, '--output-format', 'ci']).catch((error: unknown) => error as { stdout: string });
  const findings = result.stdout.split('\n').filter((line) => line.trim() && !/^\[(OK|SKIPPED)\]/.test(line));
  expect(findings).toEqual([]);
});

it('kubectl apply --dry-run=server accepts every object of the bundle', () => {
  const lines = dryRun.trim().split('\n');
  expect(lines).toHaveLength(bundleObjects().length);
  for (const line of lines) expect(line).toMatch(/ (created|configured) \(server dry run\)$/);
});

it('kubectl apply installs it, and the operator pod passes the restricted Pod Security level', async () => {
  const plane = controlPlane();
  const labels = JSON.parse(await plane.kubectlOk(['get', 'namespace', operatorNamespace, '-o', 'jsonpath={.metadata.labels}'])) as Record<string, string>;
  expect(labels['pod-security.kubernetes.io/enforce']).toBe('restricted');

  // Create (dry run) a pod from the Deployment's template in the enforcing namespace.
  const deployment = bundleObject('Deployment') as unknown as { spec: { template: { metadata: object; spec: object } } };
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...deployment.spec.template.metadata, name: 'template-check', namespace: operatorNamespace }, spec: deployment.spec.template.spec };
  const result = await plane.kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(pod));
  expect(result.stderr).toBe('');
  expect(result.stdout).toMatch(/pod\/template-check created \(server dry run\)/);
});

it('the operator ServiceAccount may do what the reconciler needs and no more', async () => {
  const plane = controlPlane();
  const as = `--as=system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager`;
  const can = async (...args: string[]) => (await plane.kubectl(['auth', 'can-i', as, ...args])).stdout.trim();
  expect(await can('patch', 'pods', '-n', 'default')).toBe('yes');
  expect(await can('create', 'pods', '--subresource=eviction', '-n', 'default')).toBe('yes');
  expect(await can('create', 'serviceaccounts', '--subresource=token', '-n', 'default')).toBe('yes');
  expect(await can('update', 'marketplaceproducts.marketplace.entitlements.io', '--subresource=status', '-n', 'default')).toBe('yes');
  expect(await can('update', 'leases.coordination.k8s.io/entitlement-operator-leader', '-n', operatorNamespace)).toBe('yes');
  expect(await can('delete', 'pods', '-n', 'default')).toBe('yes');
  expect(await can('deletecollection', 'pods', '-n', 'default')).toBe('no');
  expect(await can('update', 'marketplaceproducts.marketplace.entitlements.io', '-n', 'default')).toBe('no');
  expect(await can('get', 'secrets', '-n', 'default')).toBe('no');
  expect(await can('update', 'leases.coordination.k8s.io/other', '-n', operatorNamespace)).toBe('no');
  expect(await can('patch', 'mutatingwebhookconfigurations/other-webhook')).toBe('no');
});

describe('the operator ServiceAccount has exactly the reviewed permissions', () => {
  const reviewed = async (section: 'product' | 'operator'): Promise<string[]> => {
    const text = await readFile(path.join(repoRoot, 'test/integration/testdata/operator-permissions.txt'), 'utf8');
    const [product = '', operator = ''] = text.split(/# namespace: entitlement-operator-system \(adds.*\n/);
    const lines = (block: string): string[] => block.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    if (section === 'product') return lines(product).sort();
    // A line of the operator's namespace for a resource and names the product lines have too
    // replaces that line (kubectl merges the verbs of both rules into one).
    const merged = new Map([...lines(product), ...lines(operator)].map((line) => [line.split(' | ').slice(0, 2).join(' | '), line]));
    return [...merged.values()].sort();
  };
  const granted = async (namespace: string): Promise<string[]> => {
    const out = await controlPlane().kubectlOk(['auth', 'can-i', '--list', '-n', namespace, `--as=system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager`]);
    return out
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s{2,}/))
      .filter((cols) => cols.length === 4 && !cols[0]?.startsWith('selfsubject'))
      .map(([resource, , names, verbs]) => `${resource ?? ''} | ${names ?? ''} | ${verbs ?? ''}`)
      .sort();
  };

  it('in a product namespace', async () => {
    expect(await granted('some-app-namespace')).toEqual(await reviewed('product'));
  });

  it('in its own namespace', async () => {
    expect(await granted(operatorNamespace)).toEqual(await reviewed('operator'));
  });
});

it('the example overlay configures image and region in one apply, and its Role lets the operator read one Secret', async () => {
  const plane = controlPlane();
  const overlay = path.join(repoRoot, 'config/overlays/example');
  const rendered = await plane.kubectlOk(['kustomize', '--load-restrictor', 'LoadRestrictionsNone', overlay]);
  const objects = loadAll(rendered) as BundleObject[];
  // The bundle unchanged but for what users set.
  expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(bundleObjects().map((o) => `${o.kind}/${o.metadata.name}`).sort());
  const manager = (objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment).spec?.template.spec?.containers[0];
  expect(manager?.image).toBe('localhost/entitlement-operator:dev');
  expect(manager?.env).toEqual(expect.arrayContaining([{ name: 'AWS_REGION', value: 'us-east-1' }]));
  expect((await plane.kubectl(['apply', '--dry-run=server', '-f', '-'], rendered)).code).toBe(0);

  await plane.kubectlOk(['apply', '-f', path.join(overlay, 'aws-credentials-access.yaml')]);
  const as = `--as=system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager`;
  const can = async (...args: string[]) => (await plane.kubectl(['auth', 'can-i', as, ...args])).stdout.trim();
  expect(await can('get', 'secrets/aws-keys', '-n', operatorNamespace)).toBe('yes');
  expect(await can('get', 'secrets/other', '-n', operatorNamespace)).toBe('no');
  await plane.kubectlOk(['delete', '-f', path.join(overlay, 'aws-credentials-access.yaml')]);
});

describe("the API server's limits on the operator's account (ValidatingAdmissionPolicy)", () => {
  const operatorUser = `system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager`;
  const as = `--as=${operatorUser}`;
  const podSpec = (labels: Record<string, string>, gated: boolean) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { labels },
    spec: {
      // The operator's namespace enforces the restricted Pod Security level, and the webhook
      // leaves it alone, so these pods are created as they are.
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      serviceAccountName: 'app',
      ...(gated ? { schedulingGates: [{ name: 'marketplace.entitlements.io/entitlement' }] } : {}),
      containers: [{ name: 'app', image: 'registry.invalid/app:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
    },
  });
  let uid = '';

  beforeAll(async () => {
    const plane = controlPlane();
    await plane.kubectlOk(['create', 'serviceaccount', 'app', '-n', operatorNamespace]);
    await plane.kubectlOk(['create', 'serviceaccount', 'powerful', '-n', 'kube-system']);
    const labelled = { ...podSpec({ 'marketplace.entitlements.io/product': 'p' }, true), metadata: { name: 'labelled', namespace: operatorNamespace, labels: { 'marketplace.entitlements.io/product': 'p' } } };
    const plain = { ...podSpec({ app: 'plain' }, false), metadata: { name: 'plain', namespace: operatorNamespace, labels: { app: 'plain' } } };
    await plane.kubectlOk(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [labelled, plain] }));
    uid = await plane.kubectlOk(['get', 'pod', 'labelled', '-n', operatorNamespace, '-o', 'jsonpath={.metadata.uid}']);
  });

  const run = (...args: string[]) => controlPlane().kubectl([as, ...args]);
  // The operator patches pods without reading them (kubectl would GET first, which it may not).
  const patchAsOperator = async (pod: string, patch: unknown, type: string): Promise<string> => {
    const admin = fromKubeconfigFile(controlPlane().kubeconfigPath);
    const operator = new KubeClient({ ...admin, authorization: () => Promise.resolve({ 'impersonate-user': operatorUser }) });
    try {
      await operator.send('PATCH', `/api/v1/namespaces/${operatorNamespace}/pods/${pod}`, patch, type);
      return 'patched';
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      await operator.close();
    }
  };

  it('allows what the operator does: STS tokens (pod-bound, or unbound for ended pods), its annotations, the gate removed', async () => {
    const token = await run('create', 'token', 'app', '-n', operatorNamespace, '--audience', 'sts.amazonaws.com', '--bound-object-kind', 'Pod', '--bound-object-name', 'labelled', '--bound-object-uid', uid, '--duration', '10m');
    expect(token.stderr).toBe('');
    // Unbound: the hourly usage of a pod that has ended is reported with its account's identity.
    const unbound = await run('create', 'token', 'app', '-n', operatorNamespace, '--audience', 'sts.amazonaws.com', '--duration', '10m');
    expect(unbound.stderr).toBe('');
    const patch = { metadata: { annotations: { 'marketplace.entitlements.io/status': 'Entitled' } }, spec: { schedulingGates: [{ $patch: 'delete', name: 'marketplace.entitlements.io/entitlement' }] } };
    expect(await patchAsOperator('labelled', patch, contentTypes.strategicMergePatch)).toBe('patched');
  });

  it.each([
    ['a default-audience token for a kube-system account', ['create', 'token', 'powerful', '-n', 'kube-system'], /audience sts\.amazonaws\.com/],
    ['an STS token bound to a Secret', ['create', 'token', 'app', '-n', operatorNamespace, '--audience', 'sts.amazonaws.com', '--bound-object-kind', 'Secret', '--bound-object-name', 'entitlement-operator-webhook-tls', '--duration', '10m'], /bind tokens only to a Pod/],
    ['a long-lived STS token', ['create', 'token', 'app', '-n', operatorNamespace, '--audience', 'sts.amazonaws.com', '--bound-object-kind', 'Pod', '--bound-object-name', 'labelled', '--duration', '48h'], /expire within an hour/],
  ])('refuses %s', async (_what, args, message) => {
    const result = await run(...args);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });

  it('binds the operator account in whatever namespace the bundle is installed to', async () => {
    const plane = controlPlane();
    await plane.kubectlOk(['create', 'namespace', 'elsewhere']);
    await plane.kubectlOk(['create', 'serviceaccount', 'entitlement-operator-controller-manager', '-n', 'elsewhere']);
    await plane.kubectlOk(['create', 'clusterrolebinding', 'elsewhere-operator', '--clusterrole', 'entitlement-operator-manager-role', '--serviceaccount', 'elsewhere:entitlement-operator-controller-manager']);
    try {
      const result = await plane.kubectl(['--as=system:serviceaccount:elsewhere:entitlement-operator-controller-manager', 'create', 'token', 'powerful', '-n', 'kube-system']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/audience sts\.amazonaws\.com/);
    } finally {
      await plane.kubectlOk(['delete', 'clusterrolebinding', 'elsewhere-operator']);
      await plane.kubectlOk(['delete', 'namespace', 'elsewhere', '--wait=false']);
    }
  });

  it.each([
    ["a labelled pod's container image", 'labelled', [{ op: 'replace', path: '/spec/containers/0/image', value: 'registry.invalid/evil:1' }], /change nothing in a pod's spec/],
    ["a labelled pod's other annotations", 'labelled', [{ op: 'add', path: '/metadata/annotations', value: { 'other.example/x': 'y' } }], /only the marketplace\.entitlements\.io\/ annotations/],
    ['an unlabelled pod', 'plain', [{ op: 'add', path: '/metadata/annotations', value: { 'marketplace.entitlements.io/status': 'Entitled' } }], /only pods labelled marketplace\.entitlements\.io\/product/],
  ])('refuses a patch of %s', async (_what, pod, patch, message) => {
    expect(await patchAsOperator(pod, patch, contentTypes.jsonPatch)).toMatch(message);
  });
});
