// The rendered install bundle against a real kube-apiserver.
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { controlPlaneForSuite } from '../support/control-plane.js';
import type { V1Deployment } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { ApiError, contentTypes, fromKubeconfigFile, KubeClient } from '../../src/kube/api.js';
import { isGoneOrReplaced } from '../../src/kube/errors.js';
import { bundleObject, bundleObjects, bundlePath, bundlePathOf, operatorNamespace, type BundleObject } from '../support/bundle.js';
import { configureWebhook } from '../../src/webhook/configuration.js';
import { createStsClient } from '../../src/aws/clients.js';
import { IdentityUnavailableError, PodIdentity } from '../../src/aws/pod-identity.js';
import { FakeAws } from '../fake-aws/server.js';
import { fakeSettings } from '../support/fake-aws.js';
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

it.each(['webhook', 'policy'] as const)('the %s mode bundle is current with config/ (run `make bundle` when this fails)', async (mode) => {
  const { stdout } = await promisify(execFile)(path.join(repoRoot, 'hack/render-bundle.sh'), ['-', mode], { env: { ...process.env, KUBECTL: await binary('kubectl') } });
  expect(stdout).toBe(await readFile(bundlePathOf(mode), 'utf8'));
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
  // Delete and patch of pods are narrowed by the limits policy (below), which RBAC cannot do.
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
  /** What `account` may do in `namespace`, as kubectl lists it. */
  const canI = async (namespace: string, account: string): Promise<string[]> => {
    const out = await controlPlane().kubectlOk(['auth', 'can-i', '--list', '-n', namespace, `--as=system:serviceaccount:${account}`]);
    return out
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s{2,}/))
      .filter((cols) => cols.length === 4 && !cols[0]?.startsWith('selfsubject'))
      .map(([resource, , names, verbs]) => `${resource ?? ''} | ${names ?? ''} | ${verbs ?? ''}`)
      .sort();
  };
  /** The operator's grants, less what every ServiceAccount has (the defaults differ between Kubernetes releases). */
  const granted = async (namespace: string): Promise<string[]> => {
    const everyone = new Set(await canI(namespace, 'default:default'));
    return (await canI(namespace, `${operatorNamespace}:entitlement-operator-controller-manager`)).filter((line) => !everyone.has(line));
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

describe("the API server's limits on the operator's account (ValidatingAdmissionPolicy), tried with its token", () => {
  const operatorUser = `system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager`;
  const as = `--as=${operatorUser}`;
  const apps = 'apps';
  const podSpec = (name: string, namespace: string, labels: Record<string, string>, gated: boolean, serviceAccountName = 'app') => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels },
    spec: {
      // The operator's namespace enforces the restricted Pod Security level.
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      serviceAccountName,
      ...(gated ? { schedulingGates: [{ name: 'marketplace.entitlements.io/entitlement' }] } : {}),
      containers: [{ name: 'app', image: 'registry.invalid/app:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
    },
  });
  const labelled = { 'marketplace.entitlements.io/product': 'p' };
  const uids: Record<string, string> = {};
  /** A token of the operator's account bound to a pod of its own, as the kubelet projects it in cluster. */
  let inClusterToken = '';

  beforeAll(async () => {
    const plane = controlPlane();
    await plane.kubectlOk(['create', 'namespace', apps]);
    await plane.kubectlOk(['create', 'namespace', 'metered']);
    await plane.kubectlOk(['label', 'namespace', 'metered', 'marketplace.entitlements.io/meter-ended-pods=true']);
    for (const namespace of [apps, 'metered', operatorNamespace]) await plane.kubectlOk(['create', 'serviceaccount', 'app', '-n', namespace]);
    await plane.kubectlOk(['create', 'serviceaccount', 'powerful', '-n', 'kube-system']);
    // No operator runs here to answer the fail-closed webhook: it is put back after the pods exist.
    await plane.kubectlOk(['delete', 'mutatingwebhookconfiguration', 'entitlement-operator-mutating-webhook-configuration']);
    const pods = [
      podSpec('gated', apps, labelled, true),
      podSpec('gated-too', apps, labelled, true),
      podSpec('running', apps, labelled, false),
      podSpec('plain', apps, { app: 'plain' }, false),
      podSpec('own', operatorNamespace, labelled, false),
      podSpec('operator', operatorNamespace, { app: 'operator' }, false, 'entitlement-operator-controller-manager'),
    ];
    await plane.kubectlOk(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: pods }));
    await plane.kubectlOk(['apply', '-f', bundlePath]);
    for (const pod of pods) uids[pod.metadata.name] = await plane.kubectlOk(['get', 'pod', pod.metadata.name, '-n', pod.metadata.namespace, '-o', 'jsonpath={.metadata.uid}']);
    inClusterToken = (
      await plane.kubectlOk(['create', 'token', 'entitlement-operator-controller-manager', '-n', operatorNamespace, '--bound-object-kind', 'Pod', '--bound-object-name', 'operator', '--bound-object-uid', uids.operator ?? '', '--duration', '10m'])
    ).trim();
  });

  const run = (...args: string[]) => controlPlane().kubectl([as, ...args]);
  /** The operator's client: out of cluster (impersonated, no pod binding), or with the in-cluster token. */
  const operatorClient = (inCluster: boolean): KubeClient => {
    const admin = fromKubeconfigFile(controlPlane().kubeconfigPath);
    const identity: Record<string, string> = inCluster ? { authorization: `Bearer ${inClusterToken}` } : { 'impersonate-user': operatorUser };
    return new KubeClient({ server: admin.server, ...(admin.ca ? { ca: admin.ca } : {}), ...(inCluster ? {} : { cert: admin.cert ?? '', key: admin.key ?? '' }), authorization: () => Promise.resolve(identity) });
  };
  /** What the operator's client makes of `call`: 'done', or the error's message. */
  const asOperatorDo = async (call: (client: KubeClient) => Promise<unknown>, inCluster = false): Promise<string> => {
    const operator = operatorClient(inCluster);
    try {
      await call(operator);
      return 'done';
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      await operator.close();
    }
  };
  /** A request as the operator, without reading first (kubectl would GET, which it may not). */
  const asOperator = (method: 'PATCH' | 'DELETE' | 'POST', path: string, body: unknown, type: string = contentTypes.json, inCluster = false): Promise<string> =>
    asOperatorDo((client) => client.send(method, path, body, type), inCluster);
  const podPath = (namespace: string, name: string) => `/api/v1/namespaces/${namespace}/pods/${name}`;
  const webhookPath = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/entitlement-operator-mutating-webhook-configuration';
  const caBundle = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64');
  const stsToken = (namespace: string, bound?: string) => [
    'create', 'token', 'app', '-n', namespace, '--audience', 'sts.amazonaws.com', '--duration', '10m',
    ...(bound ? ['--bound-object-kind', 'Pod', '--bound-object-name', bound, '--bound-object-uid', uids[bound] ?? ''] : []),
  ];

  it('allows what the operator does: STS tokens bound to a pod, its annotations and the gate removed, evicting or deleting a running labelled pod, the caBundle', async () => {
    expect((await run(...stsToken(apps, 'gated'))).stderr).toBe('');
    const verdict = { metadata: { uid: uids.gated, annotations: { 'marketplace.entitlements.io/status': 'Entitled' } }, spec: { schedulingGates: [{ $patch: 'delete', name: 'marketplace.entitlements.io/entitlement' }] } };
    expect(await asOperator('PATCH', podPath(apps, 'gated'), verdict, contentTypes.strategicMergePatch)).toBe('done');
    // The operator's own code: in cluster the caBundle, out of cluster (--webhook-url) the URL too.
    const pem = Buffer.from(caBundle, 'base64').toString();
    expect(await asOperatorDo((client) => configureWebhook(client, pem), true)).toBe('done');
    expect(await asOperatorDo((client) => configureWebhook(client, `${pem}\n`, 'https://127.0.0.1:9443'))).toBe('done');
    const configured = JSON.parse(await controlPlane().kubectlOk(['get', 'mutatingwebhookconfiguration', 'entitlement-operator-mutating-webhook-configuration', '-o', 'json'])) as { webhooks: { clientConfig: { url?: string } }[] };
    expect(configured.webhooks[0]?.clientConfig.url).toBe('https://127.0.0.1:9443/mutate-v1-pod');
    expect(await asOperator('POST', `${podPath(apps, 'running')}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'running', namespace: apps }, deleteOptions: { preconditions: { uid: uids.running } } })).toBe('done');
  });

  it('allows an unbound STS token only in a namespace labelled to meter ended pods', async () => {
    expect((await run(...stsToken('metered'))).stderr).toBe('');
    const refused = await run(...stsToken(apps));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/token bound to no pod .* only in a namespace labelled marketplace\.entitlements\.io\/meter-ended-pods=true/);
  });

  it("the operator's own request for an ended pod's token, refused in an unlabelled namespace, says which label allows it", async () => {
    const client = operatorClient(false);
    const fake = await FakeAws.start();
    try {
      const identity = new PodIdentity(client, createStsClient(fakeSettings(fake), 'anonymous'));
      const ended = { namespace: apps, name: 'ended-0', uid: '00000000-0000-0000-0000-000000000002', serviceAccountName: 'app', ended: true };
      const error = await identity.credentials(ended, 'arn:aws:iam::123456789012:role/app').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdentityUnavailableError);
      expect((error as Error).message).toMatch(/only in a namespace labelled marketplace\.entitlements\.io\/meter-ended-pods=true/);
      expect(fake.calls('AssumeRoleWithWebIdentity')).toHaveLength(0);
    } finally {
      await fake.close();
      await client.close();
    }
  });

  it.each([
    ['a default-audience token', ['create', 'token', 'app', '-n', apps], /audience sts\.amazonaws\.com/],
    ['an STS token for a kube-system account', ['create', 'token', 'powerful', '-n', 'kube-system', '--audience', 'sts.amazonaws.com', '--duration', '10m'], /leaves the pods of kube-system alone/],
    ["an STS token in the operator's own namespace", ['create', 'token', 'app', '-n', operatorNamespace, '--audience', 'sts.amazonaws.com', '--duration', '10m'], /leaves the pods of entitlement-operator-system alone/],
    ['an STS token bound to a Secret', ['create', 'token', 'app', '-n', apps, '--audience', 'sts.amazonaws.com', '--bound-object-kind', 'Secret', '--bound-object-name', 'some-secret', '--duration', '10m'], /bind tokens only to a Pod/],
    ['a long-lived STS token', ['create', 'token', 'app', '-n', apps, '--audience', 'sts.amazonaws.com', '--bound-object-kind', 'Pod', '--bound-object-name', 'gated', '--duration', '48h'], /expire within an hour/],
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
      const result = await plane.kubectl(['--as=system:serviceaccount:elsewhere:entitlement-operator-controller-manager', 'create', 'token', 'app', '-n', apps]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/audience sts\.amazonaws\.com/);
    } finally {
      await plane.kubectlOk(['delete', 'clusterrolebinding', 'elsewhere-operator']);
      await plane.kubectlOk(['delete', 'namespace', 'elsewhere', '--wait=false']);
    }
  });

  it.each([
    ["a labelled pod's container image", apps, 'gated', [{ op: 'replace', path: '/spec/containers/0/image', value: 'registry.invalid/evil:1' }], /change nothing in a pod's spec/],
    ["a labelled pod's other annotations", apps, 'gated', [{ op: 'add', path: '/metadata/annotations/other.example~1x', value: 'y' }], /only the marketplace\.entitlements\.io\/ annotations/],
    ['an unlabelled pod', apps, 'plain', [{ op: 'add', path: '/metadata/annotations', value: { 'marketplace.entitlements.io/status': 'Entitled' } }], /only pods labelled marketplace\.entitlements\.io\/product/],
    ["a labelled pod in the operator's own namespace", operatorNamespace, 'own', [{ op: 'add', path: '/metadata/annotations', value: { 'marketplace.entitlements.io/status': 'Entitled' } }], /leaves the pods of entitlement-operator-system alone/],
    // An owner the garbage collector finds missing gets a gated pod deleted; a finalizer keeps one from going.
    ["a labelled pod's owner references", apps, 'gated-too', [{ op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'gone', uid: '00000000-0000-0000-0000-000000000001' }] }], /no owner reference or finalizer/],
    ["a labelled pod's finalizers", apps, 'gated-too', [{ op: 'add', path: '/metadata/finalizers', value: ['example.com/hold'] }], /no owner reference or finalizer/],
    ["a gated pod's node selector", apps, 'gated-too', [{ op: 'add', path: '/spec/nodeSelector', value: { 'kubernetes.io/hostname': 'chosen' } }], /change nothing in a pod's spec/],
    ["a gated pod's affinity", apps, 'gated-too', [{ op: 'add', path: '/spec/affinity', value: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['chosen'] }] }] } } } }], /change nothing in a pod's spec/],
  ])('refuses a patch of %s', async (_what, namespace, pod, patch, message) => {
    expect(await asOperator('PATCH', podPath(namespace, pod), patch, contentTypes.jsonPatch)).toMatch(message);
  });

  it('refuses to delete a pod that is gated, unlabelled, or in its own namespace, and to evict there', async () => {
    const deletion = { apiVersion: 'v1', kind: 'DeleteOptions' };
    expect(await asOperator('DELETE', podPath(apps, 'gated-too'), deletion)).toMatch(/delete only pods that run ungated/);
    expect(await asOperator('DELETE', podPath(apps, 'plain'), deletion)).toMatch(/only pods labelled marketplace\.entitlements\.io\/product/);
    expect(await asOperator('DELETE', podPath(operatorNamespace, 'own'), deletion)).toMatch(/leaves the pods of entitlement-operator-system alone/);
    const eviction = { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'own', namespace: operatorNamespace } };
    expect(await asOperator('POST', `${podPath(operatorNamespace, 'own')}/eviction`, eviction)).toMatch(/leaves the pods of entitlement-operator-system alone/);
    // A labelled pod that runs ungated (what an eviction budget may hold back): deleted.
    expect(await asOperator('DELETE', podPath(apps, 'gated'), { ...deletion, preconditions: { uid: uids.gated } })).toBe('done');
  });

  it.each([
    ['its rules (to see every Secret)', [{ op: 'replace', path: '/webhooks/0/rules/0/resources', value: ['secrets'] }]],
    ['its object selector', [{ op: 'replace', path: '/webhooks/0/objectSelector', value: {} }]],
    ['its namespace selector', [{ op: 'replace', path: '/webhooks/0/namespaceSelector', value: {} }]],
    ['its failure policy', [{ op: 'replace', path: '/webhooks/0/failurePolicy', value: 'Ignore' }]],
    ['its timeout', [{ op: 'replace', path: '/webhooks/0/timeoutSeconds', value: 30 }]],
    ['its annotations (cert-manager reads which CA to inject from one)', [{ op: 'add', path: '/metadata/annotations', value: { 'cert-manager.io/inject-ca-from': 'kube-system/other' } }]],
    // An owner that does not exist: the garbage collector would delete the configuration, which the operator may not create again.
    ['its owner references', [{ op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'v1', kind: 'Namespace', name: 'gone', uid: '00000000-0000-0000-0000-000000000000' }] }]],
    ['its finalizers', [{ op: 'add', path: '/metadata/finalizers', value: ['example.com/hold'] }]],
  ])('refuses a change of its webhook configuration in %s', async (_what, patch) => {
    expect(await asOperator('PATCH', webhookPath, patch, contentTypes.jsonPatch, true)).toMatch(/only the caBundle of its webhook configuration/);
    expect(await asOperator('PATCH', webhookPath, patch, contentTypes.jsonPatch)).toMatch(/only the caBundle of its webhook configuration/);
  });

  it('refuses a new URL for its webhook when it runs in cluster (a token bound to its pod)', async () => {
    const elsewhere = [{ op: 'replace', path: '/webhooks/0/clientConfig', value: { url: 'https://attacker.invalid/steal', caBundle } }];
    expect(await asOperator('PATCH', webhookPath, elsewhere, contentTypes.jsonPatch, true)).toMatch(/its URL only when it runs out of cluster/);
  });
});

describe('what the API server answers a write that names a replaced pod (isGoneOrReplaced)', () => {
  const ns = 'successors';
  const wrongUid = '00000000-0000-0000-0000-000000000000';
  const answer = async (call: (client: KubeClient) => Promise<unknown>): Promise<unknown> => {
    const client = controlPlane().client();
    try {
      await call(client);
      return undefined;
    } catch (error) {
      return error;
    } finally {
      await client.close();
    }
  };

  beforeAll(async () => {
    const plane = controlPlane();
    await plane.kubectlOk(['create', 'namespace', ns]);
    await plane.kubectlOk(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'db-0', namespace: ns }, spec: { containers: [{ name: 'c', image: 'registry.invalid/db:1' }] } }));
  });

  it('a patch naming another uid: 422 on metadata.uid, which means replaced', async () => {
    const error = await answer((client) => client.send('PATCH', `/api/v1/namespaces/${ns}/pods/db-0`, { metadata: { uid: wrongUid, annotations: { a: 'b' } } }, contentTypes.strategicMergePatch));
    expect([(error as ApiError).code, isGoneOrReplaced(error)]).toEqual([422, true]);
  });

  it('an eviction or a delete with another uid as precondition: 409 naming the uid, which means replaced', async () => {
    const eviction = await answer((client) => client.send('POST', `/api/v1/namespaces/${ns}/pods/db-0/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'db-0', namespace: ns }, deleteOptions: { preconditions: { uid: wrongUid } } }));
    expect([(eviction as ApiError).code, isGoneOrReplaced(eviction)]).toEqual([409, true]);
    const deletion = await answer((client) => client.send('DELETE', `/api/v1/namespaces/${ns}/pods/db-0`, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: wrongUid } }));
    expect([(deletion as ApiError).code, isGoneOrReplaced(deletion)]).toEqual([409, true]);
  });

  it('a conflict of another kind (a stale resourceVersion) and a missing pod', async () => {
    const stale = await answer((client) => client.send('PUT', `/api/v1/namespaces/${ns}/pods/db-0`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'db-0', namespace: ns, resourceVersion: '1' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/db:1' }] } }));
    expect([(stale as ApiError).code, isGoneOrReplaced(stale)]).toEqual([409, false]);
    const missing = await answer((client) => client.send('PATCH', `/api/v1/namespaces/${ns}/pods/db-9`, { metadata: { annotations: { a: 'b' } } }, contentTypes.strategicMergePatch));
    expect([(missing as ApiError).code, isGoneOrReplaced(missing)]).toEqual([404, true]);
  });
});
