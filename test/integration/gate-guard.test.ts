// The gate holds against an application team: a ServiceAccount with nothing but the built-in
// `edit` rules in its own namespace (the aggregated rules, bound directly: this control plane runs
// no aggregation controller) tries every way around the entitlement gate, against the installed
// bundle and the operator running as the bundle's account. With the gate guard in place each try
// is refused by the API server with a message that says why; with the guard's binding deleted
// (what a cluster admin can do), the operator alone still never lets a forged verdict run a pod.
import { setTimeout as sleep } from 'node:timers/promises';
import { EventsV1Api, PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { operatorKeySecretName } from '../../src/api/names.js';
import { sealedSinceAnnotation } from '../../src/verdicts/operator-key.js';
import type { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { storedLedger } from '../support/ledgers.js';
import { operatorNonces } from '../support/seals.js';
import { accountKubeconfig, prepareOperatorEnvironment, startOperatorProcess, waitForPod, withoutGateGuard, type OperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';

const controlPlane = controlPlaneForSuite();
const ns = 'team';
const graceSeconds = 3;
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let operator: OperatorProcess;
let teamKubeconfig = '';

beforeAll(async () => {
  const plane = controlPlane();
  const env = await prepareOperatorEnvironment(plane);
  ({ fake, core, custom } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await plane.kubectlOk(['create', 'serviceaccount', 'app-team', '-n', ns]);
  for (const role of ['edit', 'view']) await plane.kubectlOk(['create', 'rolebinding', `app-team-${role}`, '-n', ns, `--clusterrole=system:aggregate-to-${role}`, `--serviceaccount=${ns}:app-team`]);
  teamKubeconfig = await accountKubeconfig(plane, ns, 'app-team');
  operator = await startOperatorProcess(plane, fake, env.kubeconfig, { env: { UNENTITLED_EVICTION_GRACE_SECONDS: String(graceSeconds) } });
  fake.setBehaviour('refused-code', { error: 'CustomerNotEntitledException' });
  const pem = fake.publicKeyPem;
  await createProduct(custom, ns, 'refused', { productCode: 'refused-code', publicKey: { pem }, identity: { mode: 'Operator' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } });
  await createProduct(custom, ns, 'audited', { productCode: 'audited-code', publicKey: { pem }, identity: { mode: 'Operator' }, enforcement: 'Audit' });
  await createProduct(custom, ns, 'good', { productCode: 'good-code', publicKey: { pem }, identity: { mode: 'Operator' } });
}, 120_000);
afterAll(async () => fake.close());

const asTeam = (args: readonly string[], input?: string) => controlPlane().kubectlWith(teamKubeconfig, ['-n', ns, ...args], input);
const refusedCalls = () => fake.calls('RegisterUsage').filter((c) => c.productCode === 'refused-code').length;
const eventsOf = async (name: string) => (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns, fieldSelector: `regarding.name=${name}` })).items;
const gone = (name: string) => async () => ((await core.listNamespacedPod({ namespace: ns, fieldSelector: `metadata.name=${name}` })).items.length === 0 ? true : undefined);
const removeGate = JSON.stringify([{ op: 'remove', path: '/spec/schedulingGates' }]);

/** A pod the team creates itself, settled with the verdict `wanted`. */
async function teamPod(name: string, product: string, wanted: string, labels: Record<string, string> = {}): Promise<V1Pod> {
  const pod = labelledPod(name, product);
  pod.metadata = { name, labels: { [productLabel]: product, app: 'paid', ...labels } };
  const created = await asTeam(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }));
  if (created.code !== 0) throw new Error(`the team could not create ${name}: ${created.stderr}`);
  return waitForPod(`${name}: ${wanted}`, async () => {
    const current = await readPod(core, ns, name);
    return verdict(current) === wanted ? current : undefined;
  });
}

describe('a namespace user with edit, the gate guard in place', () => {
  beforeAll(async () => {
    await teamPod('refused-0', 'refused', 'NotEntitled', { app: 'guarded' });
    // The team's own budget: no voluntary disruption of its pods at all.
    const budget = { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'guarded' }, spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'guarded' } } } };
    expect((await asTeam(['create', '-f', '-'], JSON.stringify(budget))).code).toBe(0);
  });

  const gateMessage = /the scheduling gate marketplace\.entitlements\.io\/entitlement of a product's pod is removed only by the entitlement operator/;
  const annotationMessage = /the marketplace\.entitlements\.io\/ annotations of a product's pod .* are written only by the entitlement operator/;
  const labelMessage = /the label marketplace\.entitlements\.io\/product is set when a pod is created and is not changed afterwards/;

  it.each([
    ['writes status: Entitled on a refused pod', ['annotate', 'pod', 'refused-0', `${annotations.status}=Entitled`, `${annotations.reason}=SignatureVerified`, '--overwrite'], annotationMessage],
    ['removes the gate, behind its own PodDisruptionBudget', ['patch', 'pod', 'refused-0', '--type=json', `-p=${removeGate}`], gateMessage],
    ['drops the product label', ['label', 'pod', 'refused-0', `${productLabel}-`], labelMessage],
    ['drops the label and the gate in one patch', ['patch', 'pod', 'refused-0', '--type=merge', `-p=${JSON.stringify({ metadata: { labels: { [productLabel]: null } }, spec: { schedulingGates: null } })}`], /is removed only by the entitlement operator|is set when a pod is created/],
    ['moves the label to an Audit product', ['label', 'pod', 'refused-0', `${productLabel}=audited`, '--overwrite'], labelMessage],
    ['chooses its check id (and so its nonce)', ['annotate', 'pod', 'refused-0', `${annotations.check}=chosen`, '--overwrite'], annotationMessage],
    ['removes the record of checks', ['annotate', 'pod', 'refused-0', `${annotations.checks}-`], annotationMessage],
    ['writes a seal', ['annotate', 'pod', 'refused-0', `${annotations.seal}=v1.forged`, '--overwrite'], annotationMessage],
  ])('%s: refused', async (_what, args, message) => {
    const result = await asTeam(args);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });

  it('replaces the whole pod without its gate (kubectl replace, as kubectl edit does): refused', async () => {
    const pod = JSON.parse((await asTeam(['get', 'pod', 'refused-0', '-o', 'json'])).stdout) as V1Pod;
    delete pod.spec?.schedulingGates;
    const result = await asTeam(['replace', '-f', '-'], JSON.stringify(pod));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(gateMessage);
  });

  it('labels a running unlabelled pod with a product: refused', async () => {
    expect((await asTeam(['run', 'plain-0', '--image=registry.invalid/paid:1'])).code).toBe(0);
    const result = await asTeam(['label', 'pod', 'plain-0', `${productLabel}=refused`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(labelMessage);
  });

  it('creates a pod already bound to a node (no scheduler to gate): refused at creation', async () => {
    const pod = labelledPod('bound-0', 'refused', { nodeName: 'some-node' });
    const result = await asTeam(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/spec\.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared/);
  });

  it('creates a pod with the gate and a forged verdict: the verdict is dropped at admission, the pod is checked and stays gated', async () => {
    const pod = labelledPod('forged-0', 'refused', { schedulingGates: [{ name: schedulingGate }] });
    pod.metadata = { name: 'forged-0', labels: { [productLabel]: 'refused', app: 'paid' }, annotations: { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.seal]: 'v1.forged', [annotations.check]: 'chosen' } };
    const before = refusedCalls();
    expect((await asTeam(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }))).code).toBe(0);
    const settled = await waitForPod('forged-0 refused', async () => {
      const current = await readPod(core, ns, 'forged-0');
      return verdict(current) === 'NotEntitled' ? current : undefined;
    });
    expect([reason(settled), gated(settled), settled.metadata?.annotations?.[annotations.check]]).toEqual(['CustomerNotEntitled', true, undefined]);
    expect(refusedCalls()).toBe(before + 1);
    // Its registration's nonce is the operator's for the pod's first check, not one of a chosen check id.
    const nonceOf = await operatorNonces(core, operatorNamespace);
    expect(fake.calls('RegisterUsage').filter((c) => c.productCode === 'refused-code').at(-1)?.request.Nonce).toBe(nonceOf(settled));
  });

  it("is refused under the operator's account name in another namespace: the guard exempts exactly the operator's account", async () => {
    const plane = controlPlane();
    // An account named like the operator's, in a namespace of its own, given edit in the team's
    // (a cluster admin's doing). The operator's limits hold it by its name but let it remove a
    // gate, as they let the operator: only the gate guard stands in its way.
    await plane.kubectlOk(['create', 'namespace', 'lookalike']);
    await plane.kubectlOk(['create', 'serviceaccount', 'entitlement-operator-controller-manager', '-n', 'lookalike']);
    for (const role of ['edit', 'view']) {
      await plane.kubectlOk(['create', 'rolebinding', `lookalike-${role}`, '-n', ns, `--clusterrole=system:aggregate-to-${role}`, '--serviceaccount=lookalike:entitlement-operator-controller-manager']);
    }
    const lookalike = await accountKubeconfig(plane, 'lookalike', 'entitlement-operator-controller-manager');
    const result = await plane.kubectlWith(lookalike, ['-n', ns, 'patch', 'pod', 'refused-0', '--type=json', `-p=${removeGate}`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(gateMessage);
  });

  it("writes a verdict through a pod's binding (a cluster admin, as a scheduler would): refused", async () => {
    // An entitled pod is ungated: a binding may carry annotations onto it.
    await teamPod('audited-0', 'audited', 'Entitled');
    const binding = { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'audited-0', annotations: { [annotations.status]: 'Entitled' } }, target: { kind: 'Node', name: 'some-node' } };
    const result = await controlPlane().kubectl(['create', '--raw', `/api/v1/namespaces/${ns}/pods/audited-0/binding`, '-f', '-'], JSON.stringify(binding));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(annotationMessage);
  });

  it("writes a verdict through the pod's status (a cluster admin, as a kubelet could) or the older bindings resource: refused", async () => {
    const status = await controlPlane().kubectl(['patch', 'pod', 'refused-0', '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ metadata: { annotations: { [annotations.status]: 'Entitled' } } })]);
    expect(status.code).not.toBe(0);
    expect(status.stderr).toMatch(annotationMessage);
    const dropLabel = await controlPlane().kubectl(['patch', 'pod', 'refused-0', '-n', ns, '--subresource=status', '--type=json', '-p', JSON.stringify([{ op: 'remove', path: '/metadata/labels/marketplace.entitlements.io~1product' }])]);
    expect(dropLabel.stderr).toMatch(labelMessage);
    // The status itself may change (the kubelet's and scheduler's writes).
    expect((await controlPlane().kubectl(['patch', 'pod', 'refused-0', '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { message: 'from the kubelet' } })])).code).toBe(0);
    const binding = { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'audited-0', annotations: { [annotations.status]: 'Entitled' } }, target: { kind: 'Node', name: 'some-node' } };
    const legacy = await controlPlane().kubectl(['create', '--raw', `/api/v1/namespaces/${ns}/bindings`, '-f', '-'], JSON.stringify(binding));
    expect(legacy.code).not.toBe(0);
    expect(legacy.stderr).toMatch(annotationMessage);
  });

  it('keeps working as before: the recheck annotation (the operator checks again), other labels and annotations, deletion', async () => {
    const before = refusedCalls();
    expect((await asTeam(['annotate', 'pod', 'refused-0', `${annotations.recheck}=${Date.now()}`])).code).toBe(0);
    await waitForPod('a check of refused-0', () => Promise.resolve(refusedCalls() > before ? true : undefined));
    expect((await asTeam(['label', 'pod', 'refused-0', 'tier=backend'])).code).toBe(0);
    expect((await asTeam(['annotate', 'pod', 'refused-0', 'team.example/owner=payments'])).code).toBe(0);
    expect((await asTeam(['delete', 'pod', 'plain-0', '--wait=false'])).code).toBe(0);
  });

  it('the API server counts each refusal, for a platform team to alert on', async () => {
    const metrics = await controlPlane().kubectlOk(['get', '--raw', '/metrics']);
    const denied = metrics
      .split('\n')
      .filter((line) => line.startsWith('apiserver_validating_admission_policy_check_total{') && line.includes('policy="entitlement-operator-gate-guard"') && line.includes('enforcement_action="deny"'))
      .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    // The refusals above: eight in the table, replace, label, the look-alike account, the bindings and the status writes.
    expect(denied).toBeGreaterThanOrEqual(15);
  });

  it('after all of it: the refused pod is still gated and refused, and nothing counts it entitled', async () => {
    const pod = await waitForPod('refused-0 refused again', async () => {
      const current = await readPod(core, ns, 'refused-0');
      return verdict(current) === 'NotEntitled' ? current : undefined;
    });
    expect([gated(pod), reason(pod), pod.metadata?.labels?.tier]).toEqual([true, 'CustomerNotEntitled', 'backend']);
    expect((await getProduct(custom, ns, 'refused')).status?.entitledPods ?? 0).toBe(0);
  });
});

describe("the gate guard deleted (a cluster admin's choice): the operator alone never lets a forged verdict run a pod", () => {
  let restore: () => void = () => undefined;
  let restored: Promise<unknown> = Promise.resolve();
  beforeAll(async () => {
    // The guard stays away for the whole describe: withoutGateGuard waits for the API server to drop it.
    let dropped: () => void = () => undefined;
    const isDropped = new Promise<void>((resolve) => (dropped = resolve));
    restored = withoutGateGuard(controlPlane(), async () => {
      dropped();
      await new Promise<void>((resolve) => (restore = resolve));
    });
    await isDropped;
  });
  afterAll(async () => {
    restore();
    await restored;
  });

  const forge = (name: string, extra: Record<string, string> = {}) =>
    asTeam(['annotate', 'pod', name, '--overwrite', `${annotations.status}=Entitled`, `${annotations.reason}=SignatureVerified`, `${annotations.registeredAt}=${new Date().toISOString()}`, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)]);
  /** Checked with AWS once more (started over once, not in a loop), and refused again. */
  const refusedAgain = async (name: string, after: number) => {
    const pod = await waitForPod(`${name} checked with AWS and refused again`, async () => {
      const current = await readPod(core, ns, name);
      return refusedCalls() > after && verdict(current) === 'NotEntitled' && current.metadata?.annotations?.[annotations.seal] !== undefined ? current : undefined;
    });
    await sleep(1_000);
    expect(refusedCalls()).toBe(after + 1);
    return pod;
  };

  it('a fresh install opens no window for unsealed verdicts (no release before it ran here)', async () => {
    const key = await core.readNamespacedSecret({ name: operatorKeySecretName, namespace: operatorNamespace });
    expect(key.metadata?.annotations?.[sealedSinceAnnotation]).toBeUndefined();
  });

  it('a forged Entitled on a refused pod: ignored (an UnverifiedVerdict Event), checked with AWS again, still gated, not counted', async () => {
    await teamPod('forge-1', 'refused', 'NotEntitled');
    const before = refusedCalls();
    const forged = await forge('forge-1');
    expect(forged.code).toBe(0);
    const pod = await refusedAgain('forge-1', before);
    expect([gated(pod), reason(pod)]).toEqual([true, 'CustomerNotEntitled']);
    expect((await eventsOf('forge-1')).map((e) => e.reason)).toContain('UnverifiedVerdict');
    expect(await operator.metric('entitlement_gate_bypasses_total', { kind: 'unverified_verdict' })).toBeGreaterThanOrEqual(1);
    const status = (await getProduct(custom, ns, 'refused')).status;
    expect(status?.entitledPods ?? 0).toBe(0);
  });

  it("an entitled pod's sealed annotations copied onto a refused one: the seal names the other pod, so it is no verdict", async () => {
    const good = await teamPod('good-0', 'good', 'Entitled');
    await teamPod('copy-1', 'refused', 'NotEntitled');
    const own = Object.entries(good.metadata?.annotations ?? {}).filter(([key]) => key.startsWith('marketplace.entitlements.io/'));
    const before = refusedCalls();
    expect((await asTeam(['annotate', 'pod', 'copy-1', '--overwrite', ...own.map(([k, v]) => `${k}=${v}`)])).code).toBe(0);
    const pod = await refusedAgain('copy-1', before);
    expect(gated(pod)).toBe(true);
  });

  it('the gate removed without a budget: registered, refused, evicted', async () => {
    await teamPod('ungated-1', 'refused', 'NotEntitled');
    expect((await asTeam(['patch', 'pod', 'ungated-1', '--type=json', `-p=${removeGate}`])).code).toBe(0);
    await waitForPod('ungated-1 evicted', gone('ungated-1'));
    expect((await eventsOf('ungated-1')).map((e) => e.reason)).toContain('NotEntitled');
  });

  it('a forged Entitled and the gate removed, behind a budget with maxUnavailable 0: counted as bypassed, evictions refused, then deleted with an Event saying why; never metered', async () => {
    const pod = await teamPod('ungated-2', 'refused', 'NotEntitled', { app: 'guarded' });
    // As the kubelet would report it once it runs (a Pending pod is evicted whatever its budget says).
    await core.patchNamespacedPodStatus({ name: 'ungated-2', namespace: ns, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect((await forge('ungated-2')).code).toBe(0);
    expect((await asTeam(['patch', 'pod', 'ungated-2', '--type=json', `-p=${removeGate}`])).code).toBe(0);
    const bypassed = await waitForPod('the product to count a bypassed pod', async () => {
      const status = (await getProduct(custom, ns, 'refused')).status as { bypassedPods?: number } | undefined;
      return (status?.bypassedPods ?? 0) >= 1 ? status : undefined;
    });
    expect(bypassed.bypassedPods).toBeGreaterThanOrEqual(1);
    await waitForPod('ungated-2 deleted past its budget', gone('ungated-2'), (graceSeconds + 30) * 1000);
    const reasons = (await eventsOf('ungated-2')).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['UnverifiedVerdict', 'EvictionRefused', 'Deleted']));
    const deleted = (await eventsOf('ungated-2')).find((e) => e.reason === 'Deleted');
    expect(deleted?.note).toMatch(/A budget protects entitled workloads, and this pod was never entitled/);
    expect(await operator.metric('entitlement_evictions_total', { outcome: 'deleted' })).toBeGreaterThanOrEqual(1);
    // Its usage ledger never held it.
    const uid = (await getProduct(custom, ns, 'refused')) as { metadata: { uid?: string } };
    const pods = Object.keys((await storedLedger(core, uid.metadata.uid ?? ''))?.ledger.pods ?? {});
    expect(pods).not.toContain(pod.metadata?.uid);
  }, 120_000);
});

describe("a budget protects the pods the operator let run", () => {
  it('switching a product from Audit to Enforce evicts its refused running pods, and their budgets hold (they were allowed to run)', async () => {
    fake.setBehaviour('switch-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, ns, 'switch', { productCode: 'switch-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, enforcement: 'Audit' });
    await teamPod('switch-0', 'switch', 'NotEntitled', { app: 'switched' });
    await teamPod('switch-1', 'switch', 'NotEntitled');
    for (const name of ['switch-0', 'switch-1']) {
      expect(gated(await readPod(core, ns, name))).toBe(false);
      await core.patchNamespacedPodStatus({ name, namespace: ns, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    }
    const budget = { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'switched' }, spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'switched' } } } };
    expect((await asTeam(['create', '-f', '-'], JSON.stringify(budget))).code).toBe(0);
    const refusedBefore = await operator.metric('entitlement_evictions_total', { outcome: 'refused' });
    await custom.patchNamespacedCustomObject({ group: 'marketplace.entitlements.io', version: 'v1alpha1', plural: 'marketplaceproducts', namespace: ns, name: 'switch', body: { spec: { enforcement: 'Enforce' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    // The one without a budget goes; the one behind its budget stays past the grace period, its eviction retried.
    await waitForPod('switch-1 evicted', gone('switch-1'));
    await sleep((graceSeconds + 3) * 1000);
    const held = await readPod(core, ns, 'switch-0');
    expect([verdict(held), held.metadata?.deletionTimestamp]).toEqual(['NotEntitled', undefined]);
    // Its eviction was tried, and retried, while the budget refused it.
    expect(await operator.metric('entitlement_evictions_total', { outcome: 'refused' })).toBeGreaterThanOrEqual(refusedBefore + 2);
    const reasons = (await eventsOf('switch-0')).map((e) => e.reason);
    expect(reasons).not.toContain('Deleted');
    expect(reasons).not.toContain('Ungated');
    const status = (await getProduct(custom, ns, 'switch')).status as { bypassedPods?: number; blockedPods?: number } | undefined;
    expect([status?.bypassedPods, status?.blockedPods]).toEqual([0, 1]);
  }, 60_000);
});
