// The Helm chart against the kustomize bundle: with its defaults it renders the bundle's objects
// field for field, each value changes exactly what it says, the schema refuses bad values, and
// what it renders is accepted by a real API server.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { load, loadAll } from 'js-yaml';
import { asManifest, bundleObjects, clusterScopedKinds, type AdmissionMode, type BundleObject } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { chartPath, differences, helm, helmLabels, helmTemplate, kubeVersion, objectKey, prometheusOperatorCrds, release, type Difference } from '../support/helm.js';
import { repoRoot } from '../support/testbin.js';

const controlPlane = controlPlaneForSuite();

beforeAll(async () => {
  const plane = controlPlane();
  await plane.kubectlOk(['apply', '-f', '-'], asManifest(prometheusOperatorCrds()));
  await plane.kubectlOk(['wait', '--for=condition=Established', 'crd/servicemonitors.monitoring.coreos.com', 'crd/prometheusrules.monitoring.coreos.com', '--timeout=60s']);
});

const deployment = 'Deployment/entitlement-operator-controller-manager';
const container = '.spec.template.spec.containers[0]';
const chartValues = (mode: AdmissionMode): object => (mode === 'policy' ? { admission: { mode: 'policy' } } : {});

/** The bundle as Helm would own it: no Namespace (Helm does not create the release's), no namespace on cluster-scoped objects. */
function bundleAsRelease(mode: AdmissionMode): BundleObject[] {
  return bundleObjects(mode)
    .filter((o) => o.kind !== 'Namespace')
    .map((o) => (clusterScopedKinds.has(o.kind) ? { ...o, metadata: { ...o.metadata, namespace: undefined } } : o));
}

/** The chart's objects without the labels Helm adds to say which release owns them. */
function withoutHelmLabels(objects: readonly BundleObject[]): BundleObject[] {
  return objects.map((o) => {
    const labels = Object.fromEntries(Object.entries(o.metadata.labels ?? {}).filter(([key]) => !helmLabels.includes(key)));
    return { ...o, metadata: { ...o.metadata, labels } };
  });
}

describe('with its default values', () => {
  it.each(['webhook', 'policy'] as const)('renders the objects of the %s mode bundle, field for field (CRD included)', async (mode) => {
    const chart = await helmTemplate(chartValues(mode), { args: ['--include-crds'] });
    expect(differences(bundleAsRelease(mode), withoutHelmLabels(chart))).toEqual([]);
    // The one object the bundle has and a release does not: its namespace (helm install --create-namespace).
    expect(bundleObjects(mode).filter((o) => o.kind === 'Namespace').map(objectKey)).toEqual([`Namespace/${release.namespace}`]);
  });

  it('labels every object with the release that owns it', async () => {
    for (const o of await helmTemplate()) {
      expect(Object.keys(o.metadata.labels ?? {})).toEqual(expect.arrayContaining(helmLabels));
      expect(o.metadata.labels?.['app.kubernetes.io/instance']).toBe(release.name);
    }
  });

  it('keeps its copies of the CRD, alert rules and dashboard equal to their sources (run `make bundle` when this fails)', async () => {
    const copies = [['crds/marketplaceproducts.yaml', 'crds/marketplaceproducts.yaml'], ['files/alerts.yaml', 'config/prometheus/alerts.yaml'], ['files/entitlement-operator.json', 'config/grafana/entitlement-operator.json']];
    for (const [copy = '', source = ''] of copies) {
      expect(await readFile(path.join(chartPath, copy), 'utf8')).toBe(await readFile(path.join(repoRoot, source), 'utf8'));
    }
  });

  it('uses no hooks and no lookups, which an EKS add-on may not (it is rendered offline, once)', async () => {
    const templates = await readdir(path.join(chartPath, 'templates'));
    for (const file of templates) {
      const text = await readFile(path.join(chartPath, 'templates', file), 'utf8');
      expect({ file, hook: /helm\.sh\/hook/.test(text), lookup: /\blookup\b/.test(text), capabilities: /\.Capabilities\.APIVersions/.test(text) }).toEqual({ file, hook: false, lookup: false, capabilities: false });
    }
  });

  it('renders as the EKS add-on validation renders it: every supported release, k8version set, CRDs, no hooks; .Release only by name and namespace', async () => {
    for (const minor of [30, 31, 32, 33, 34, 35, 36, 37]) {
      const objects = await helmTemplate({ k8version: `1.${minor}` }, { args: ['--kube-version', `1.${minor}.0`, '--include-crds', '--no-hooks'] });
      expect(objects.length).toBeGreaterThan(10);
    }
    for (const file of await readdir(path.join(chartPath, 'templates'))) {
      const text = await readFile(path.join(chartPath, 'templates', file), 'utf8');
      expect({ file, release: [...new Set(text.match(/\.Release\.\w+/g) ?? [])].filter((r) => r !== '.Release.Name' && r !== '.Release.Namespace') }).toEqual({ file, release: [] });
    }
  });

  it('refuses the policy mode before Kubernetes 1.36, saying why', async () => {
    await expect(helmTemplate({ admission: { mode: 'policy' } }, { args: ['--kube-version', '1.35.4'] })).rejects.toThrow('admission.mode=policy needs Kubernetes 1.36 or later');
  });

  it('NOTES.txt names only objects the release has (rendered by a client-side dry run against a real API server)', async () => {
    const values = { prometheusRule: { enabled: true }, serviceMonitor: { enabled: true } };
    for (const mode of ['webhook', 'policy'] as const) {
      const out = await helm(['install', release.name, chartPath, '--namespace', release.namespace, '--dry-run=client', '--kubeconfig', controlPlane().kubeconfigPath], { ...values, ...chartValues(mode) });
      const notes = out.slice(out.indexOf('NOTES:'));
      const named = [...notes.matchAll(/kubectl (?:-n \S+ )?(?:get|rollout status) (\w+)[ /]([\w.-]+)/g)].map(([, kind = '', name = '']) => `${kind}/${name}`);
      expect(named.length).toBeGreaterThanOrEqual(mode === 'policy' ? 3 : 2);
      const objects = (await helmTemplate({ ...values, ...chartValues(mode) })).map((o) => `${o.kind.toLowerCase()}/${o.metadata.name}`);
      for (const name of named.filter((n) => !n.startsWith('marketplaceproducts/') && !n.startsWith('pods/'))) expect(objects).toContain(name);
    }
  });

  it.each(['helm', 'helm4'] as const)('passes %s lint --strict in both admission modes', async (which) => {
    for (const mode of ['webhook', 'policy'] as const) {
      const out = await helm(['lint', '--strict', chartPath, '--kube-version', kubeVersion], chartValues(mode), which);
      expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(out).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it('renders the same objects under Helm 4 as under Helm 3, every optional object on', async () => {
    const all = { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true }, aws: { credentialsSecret: 'aws-keys' } };
    for (const mode of ['webhook', 'policy'] as const) {
      const values = { ...all, ...chartValues(mode) };
      const [three, four] = await Promise.all([helmTemplate(values, { args: ['--include-crds'] }), helmTemplate(values, { args: ['--include-crds'], helm: 'helm4' })]);
      expect(differences(three, four)).toEqual([]);
    }
  });
});

const image = (ref: string): Difference => ({ object: deployment, path: `${container}.image`, before: 'ghcr.io/entitlement-operator/entitlement-operator:0.1.0', after: ref });
const baseArgs = ['--leader-elect', '--webhook-port=9443', '--metrics-port=8080', '--health-port=8081'];
const args = (...extra: string[]): Difference => ({ object: deployment, path: `${container}.args`, before: baseArgs, after: [...baseArgs, ...extra] });
const exemptSelector = { before: ['kube-system', release.namespace], after: ['kube-system', release.namespace, 'monitoring', 'istio-system'] };

// Each value with every field it changes against the defaults' render: anything else that
// changes fails the test.
const valueCases: [string, object, Difference[]][] = [
  ['image.repository and tag', { image: { repository: 'registry.example/team/operator', tag: '1.2.3' } }, [image('registry.example/team/operator:1.2.3')]],
  ['image.digest (wins over the tag)', { image: { tag: '9.9.9', digest: `sha256:${'ab'.repeat(32)}` } }, [image(`ghcr.io/entitlement-operator/entitlement-operator@sha256:${'ab'.repeat(32)}`)]],
  ['image.pullPolicy', { image: { pullPolicy: 'Always' } }, [{ object: deployment, path: `${container}.imagePullPolicy`, after: 'Always' }]],
  ['replicaCount', { replicaCount: 3 }, [{ object: deployment, path: '.spec.replicas', before: 2, after: 3 }]],
  ['replicaCount=1 (no budget: it would block every drain)', { replicaCount: 1 }, [
    { object: deployment, path: '.spec.replicas', before: 2, after: 1 },
    { object: 'PodDisruptionBudget/entitlement-operator-controller-manager', path: '', before: 'removed' },
  ]],
  ['podLabels and podAnnotations', { podLabels: { team: 'platform' }, podAnnotations: { 'example.com/owner': 'platform' } }, [
    { object: deployment, path: '.spec.template.metadata.labels.team', after: 'platform' },
    { object: deployment, path: '.spec.template.metadata.annotations', after: { 'example.com/owner': 'platform' } },
  ]],
  ['resources', { resources: { limits: { memory: '512Mi' } } }, [{ object: deployment, path: `${container}.resources.limits.memory`, before: '256Mi', after: '512Mi' }]],
  ['nodeSelector', { nodeSelector: { 'kubernetes.io/arch': 'arm64' } }, [{ object: deployment, path: '.spec.template.spec.nodeSelector', after: { 'kubernetes.io/arch': 'arm64' } }]],
  ['tolerations', { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'platform', effect: 'NoSchedule' }] }, [{ object: deployment, path: '.spec.template.spec.tolerations', after: [{ key: 'dedicated', operator: 'Equal', value: 'platform', effect: 'NoSchedule' }] }]],
  ['affinity (replaces the spreading of replicas)', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['ops'] }] }] } } } }, [
    { object: deployment, path: '.spec.template.spec.affinity.podAntiAffinity', before: expect.objectContaining({ preferredDuringSchedulingIgnoredDuringExecution: expect.any(Array) as unknown }) as unknown },
    { object: deployment, path: '.spec.template.spec.affinity.nodeAffinity', after: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['ops'] }] }] } } },
  ]],
  ['priorityClassName', { priorityClassName: 'system-cluster-critical' }, [{ object: deployment, path: '.spec.template.spec.priorityClassName', after: 'system-cluster-critical' }]],
  ['aws.region and endpoints', { aws: { region: 'us-east-1', endpoints: { metering: 'https://metering.vpce.example:443', sts: 'https://sts.vpce.example' } } }, [args('--region=us-east-1', '--metering-endpoint=https://metering.vpce.example:443', '--sts-endpoint=https://sts.vpce.example')]],
  ['aws.credentialsSecret (the flag, and get on that one Secret)', { aws: { credentialsSecret: 'aws-keys' } }, [
    args(`--aws-credentials-secret=${release.namespace}/aws-keys`),
    { object: 'Role/entitlement-operator-aws-credentials', path: '', after: 'added' },
    { object: 'RoleBinding/entitlement-operator-aws-credentials', path: '', after: 'added' },
  ]],
  ['serviceAccount.irsaRoleArn', { serviceAccount: { irsaRoleArn: 'arn:aws:iam::123456789012:role/entitlement-operator' } }, [
    { object: 'ServiceAccount/entitlement-operator-controller-manager', path: '.metadata.annotations', after: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/entitlement-operator' } },
  ]],
  ['admission.exemptNamespaces (the operator, the webhook, the gate guard and the limits alike)', { admission: { exemptNamespaces: ['monitoring', 'istio-system'] } }, [
    args('--exempt-namespaces=monitoring,istio-system'),
    { object: 'ValidatingAdmissionPolicy/entitlement-operator-gate-guard', path: '.spec.matchConstraints.namespaceSelector.matchExpressions[0].values', ...exemptSelector },
    { object: 'ValidatingAdmissionPolicy/entitlement-operator-limits', path: '.spec.validations[0].expression', before: "variables.isWebhookConfiguration || !(request.namespace in ['kube-system', variables.operatorNamespace])", after: "variables.isWebhookConfiguration || !(request.namespace in ['kube-system', variables.operatorNamespace, 'monitoring', 'istio-system'])" },
    { object: 'MutatingWebhookConfiguration/entitlement-operator-mutating-webhook-configuration', path: '.webhooks[0].namespaceSelector.matchExpressions[0].values', ...exemptSelector },
  ]],
  ['podDisruptionBudget.enabled=false and networkPolicy.enabled=false', { podDisruptionBudget: { enabled: false }, networkPolicy: { enabled: false } }, [
    { object: 'PodDisruptionBudget/entitlement-operator-controller-manager', path: '', before: 'removed' },
    { object: 'NetworkPolicy/entitlement-operator-controller-manager', path: '', before: 'removed' },
  ]],
  ['serviceMonitor.enabled', { serviceMonitor: { enabled: true } }, [{ object: 'ServiceMonitor/entitlement-operator-controller-manager', path: '', after: 'added' }]],
  ['prometheusRule.enabled', { prometheusRule: { enabled: true } }, [{ object: 'PrometheusRule/entitlement-operator-alerts', path: '', after: 'added' }]],
  ['grafanaDashboard.enabled', { grafanaDashboard: { enabled: true } }, [{ object: 'ConfigMap/entitlement-operator-dashboard', path: '', after: 'added' }]],
];

describe('each value changes what it says and nothing else', () => {
  let defaults: BundleObject[];
  beforeAll(async () => {
    defaults = await helmTemplate();
  });

  it.each(valueCases)('%s', async (_name, values, expected) => {
    const inPlaceOrder = (list: Difference[]): Difference[] => list.toSorted((a, b) => `${a.object} ${a.path}`.localeCompare(`${b.object} ${b.path}`));
    expect(inPlaceOrder(differences(defaults, await helmTemplate(values)))).toEqual(inPlaceOrder(expected));
  });

  it('the exempt namespaces reach the pod-gate policy of the policy mode too', async () => {
    const policy = { admission: { mode: 'policy', exemptNamespaces: ['monitoring', 'istio-system'] } };
    const changed = differences(await helmTemplate(chartValues('policy')), await helmTemplate(policy)).map((d) => d.object);
    expect(changed).toContain('MutatingAdmissionPolicy/entitlement-operator-pod-gate');
  });

  it('a release namespace other than the default leaves no trace of the default in any object', async () => {
    const objects = await helmTemplate({ admission: { mode: 'policy' } }, { namespace: 'payments-ops' });
    expect(JSON.stringify(objects)).not.toContain(release.namespace);
    const guard = objects.find((o) => objectKey(o) === 'ValidatingAdmissionPolicy/entitlement-operator-gate-guard') as unknown as { spec: { matchConditions: { expression: string }[] } };
    expect(guard.spec.matchConditions[0]?.expression).toBe("request.userInfo.username != 'system:serviceaccount:payments-ops:entitlement-operator-controller-manager'");
  });

  it("the ServiceMonitor and PrometheusRule are config/prometheus's, field for field", async () => {
    const kustomized = loadAll(await controlPlane().kubectlOk(['kustomize', path.join(repoRoot, 'config/prometheus')])) as BundleObject[];
    const chart = await helmTemplate({ serviceMonitor: { enabled: true }, prometheusRule: { enabled: true } });
    const monitoring = withoutHelmLabels(chart.filter((o) => o.kind === 'ServiceMonitor' || o.kind === 'PrometheusRule'));
    expect(differences(kustomized, monitoring)).toEqual([]);
  });

  it('the ServiceMonitor scrapes the metrics Service of this release by its port name', async () => {
    const objects = await helmTemplate({ serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus' } } });
    const monitor = objects.find((o) => o.kind === 'ServiceMonitor') as unknown as { metadata: { labels: Record<string, string> }; spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; interval: string }[] } };
    const service = objects.find((o) => objectKey(o) === 'Service/entitlement-operator-metrics-service') as unknown as { metadata: { labels: Record<string, string> }; spec: { ports: { name: string }[] } };
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(service.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]?.port);
    expect(monitor.spec.endpoints[0]?.interval).toBe('15s');
    expect(monitor.metadata.labels.release).toBe('kube-prometheus');
  });

  it("the PrometheusRule carries config/prometheus/alerts.yaml's groups", async () => {
    const rule = (await helmTemplate({ prometheusRule: { enabled: true } })).find((o) => o.kind === 'PrometheusRule') as unknown as { spec: unknown };
    expect(rule.spec).toEqual(load(await readFile(path.join(repoRoot, 'config/prometheus/alerts.yaml'), 'utf8')));
  });
});

it.each([
  [{ admission: { mode: 'mutating' } }, "at '/admission/mode': value must be one of 'webhook', 'policy'"],
  [{ replicaCount: 0 }, "at '/replicaCount': minimum: got 0, want 1"],
  [{ replicas: 3 }, "additional properties 'replicas' not allowed"],
  [{ image: { digest: 'latest' } }, "at '/image/digest': 'latest' does not match pattern"],
  [{ aws: { region: 'Frankfurt' } }, "at '/aws/region': 'Frankfurt' does not match pattern"],
  [{ aws: { endpoints: { metering: 'ftp://metering' } } }, "at '/aws/endpoints/metering': 'ftp://metering' does not match pattern"],
  [{ admission: { exemptNamespaces: ['Not_A_Namespace'] } }, "at '/admission/exemptNamespaces/0': 'Not_A_Namespace' does not match pattern"],
  [{ serviceAccount: { irsaRoleArn: 'my-role' } }, "at '/serviceAccount/irsaRoleArn': 'my-role' does not match pattern"],
  [{ resources: { limits: { memory: 'lots' } } }, "at '/resources/limits/memory'"],
  [{ podLabels: { 'app.kubernetes.io/name': 'other' } }, "at '/podLabels/app.kubernetes.io~1name'"],
  [{ image: { repository: 'Registry/Operator' } }, "at '/image/repository': 'Registry/Operator' does not match pattern"],
])('values.schema.json refuses %j, naming the value (Helm 3 and 4)', async (values, message) => {
  await expect(helmTemplate(values)).rejects.toThrow(message);
  await expect(helmTemplate(values, { helm: 'helm4' })).rejects.toThrow(message);
});

it('a real API server accepts everything the chart renders with every value set, in both modes', async () => {
  const plane = controlPlane();
  await plane.kubectlOk(['create', 'namespace', 'payments-ops']);
  const values = { replicaCount: 3, serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true }, admission: { exemptNamespaces: ['monitoring'] }, aws: { region: 'us-east-1', credentialsSecret: 'aws-keys' }, serviceAccount: { irsaRoleArn: 'arn:aws:iam::123456789012:role/op' }, nodeSelector: { 'kubernetes.io/os': 'linux' }, priorityClassName: 'system-cluster-critical', tolerations: [{ key: 'dedicated', operator: 'Exists' }] };
  for (const mode of ['webhook', 'policy'] as const) {
    const objects = await helmTemplate({ ...values, admission: { ...values.admission, mode } }, { namespace: 'payments-ops', args: ['--include-crds'] });
    const out = await plane.kubectlOk(['apply', '--dry-run=server', '-f', '-'], asManifest(objects));
    expect(out.trim().split('\n')).toHaveLength(objects.length);
  }
});
