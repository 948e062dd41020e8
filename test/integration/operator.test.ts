// The entitlement gate end to end: the built operator, out of cluster as the bundle's
// ServiceAccount, against a real API server and the fake AWS.
import { AdmissionregistrationV1Api, CoordinationV1Api, EventsV1Api, PatchStrategy, PolicyV1Api, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFile } from 'node:fs/promises';
import { annotations } from '../../src/api/marketplace-product.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { operatorNonces } from '../support/seals.js';
import { fakeCredentials } from '../support/fake-aws.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForGating, waitForPod, withoutGateGuard, type OperatorProcess } from '../support/operator.js';
import { bundleObject } from '../support/bundle.js';
import { webhookConfigurationName } from '../../src/api/names.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';

const controlPlane = controlPlaneForSuite();
const ns = 'shop';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let operator: OperatorProcess;

beforeAll(async () => {
  const env = await prepareOperatorEnvironment(controlPlane());
  ({ fake, core, custom } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  operator = await startOperatorProcess(controlPlane(), fake, env.kubeconfig);
}, 120_000);
afterAll(async () => fake.close());

const operatorMode = (extra: Record<string, unknown> = {}) => ({ publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, ...extra });
const settled = (name: string) =>
  waitForPod(`a verdict on ${name}`, async () => {
    const pod = await readPod(core, ns, name);
    return verdict(pod) && verdict(pod) !== undefined && reason(pod) !== 'ProductNotFound' ? pod : undefined;
  });

describe('admission', () => {
  it('gates a labelled pod at admission, and never sees an unlabelled one', async () => {
    const before = await operator.metric('entitlement_webhook_requests_total');
    const plain = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'plain' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } } });
    expect(plain.spec?.schedulingGates).toBeUndefined();
    expect(await operator.metric('entitlement_webhook_requests_total')).toBe(before);

    const gatedBefore = await operator.metric('entitlement_webhook_requests_total', { outcome: 'gated' });
    const product = await core.createNamespacedPod({ namespace: ns, body: labelledPod('gated-at-admission', 'absent-product') });
    expect(gated(product)).toBe(true);
    expect(await operator.metric('entitlement_webhook_requests_total', { outcome: 'gated' })).toBe(gatedBefore + 1);
  });

  it('a caBundle reset by someone else (the configuration replaced as the bundle has it) is put back at once, and pods are gated again', async () => {
    const admission = controlPlane().kubeConfig().makeApiClient(AdmissionregistrationV1Api);
    const caBundle = async () => (await admission.readMutatingWebhookConfiguration({ name: webhookConfigurationName })).webhooks?.[0]?.clientConfig.caBundle;
    const published = await caBundle();
    expect(published).toBeTruthy();
    // The object as the replace stored it: no CA bundle (the operator's repair may follow within milliseconds).
    const replaced = await controlPlane().kubectlOk(['replace', '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}', '-f', '-'], JSON.stringify(bundleObject('MutatingWebhookConfiguration')));
    expect(replaced).toBe('');
    await waitForPod('the CA bundle put back', async () => ((await caBundle()) === published ? true : undefined), 20_000);
    await waitForGating(controlPlane());
  });
});

describe('verdicts', () => {
  it('entitled: gate removed, annotations, a Normal Event, status Entitled=True and kubectl get mpp', async () => {
    await createProduct(custom, ns, 'good', operatorMode({ productCode: 'good-code' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('good-0', 'good') });
    const pod = await settled('good-0');
    expect(gated(pod)).toBe(false);
    expect(pod.metadata?.annotations).toMatchObject({ [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: expect.stringMatching(/^\d{4}-/) as unknown });

    const eventsApi = controlPlane().kubeConfig().makeApiClient(EventsV1Api);
    const event = await waitForPod('a Normal Entitled event', async () => {
      const events = await eventsApi.listNamespacedEvent({ namespace: ns, fieldSelector: 'regarding.name=good-0' });
      return events.items.find((e) => e.reason === 'Entitled');
    });
    expect(event).toMatchObject({ type: 'Normal', action: 'RegisterUsage', regarding: { kind: 'Pod', name: 'good-0' } });

    const status = await waitForPod('status Entitled=True', async () => {
      const p = await getProduct(custom, ns, 'good');
      return p.status?.entitledPods === 1 ? p.status : undefined;
    });
    expect(status.conditions?.find((c) => c.type === 'Entitled')).toMatchObject({ status: 'True', reason: 'SignatureVerified', observedGeneration: 1 });
    expect(status).toMatchObject({ entitledPods: 1, blockedPods: 0, pendingPods: 0, observedGeneration: 1, lastRegistrationTime: expect.any(String) as unknown });
    const row = (await controlPlane().kubectlOk(['get', 'mpp', 'good', '-n', ns, '--no-headers'])).split(/\s+/);
    expect(row.slice(0, 6)).toEqual(['good', 'good-code', 'True', 'SignatureVerified', '1', '0']);
    expect(fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'good-code')).toHaveLength(1);
  });

  it('CustomerNotEntitled: the pod stays gated and the product says why', async () => {
    fake.setBehaviour('revoked-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, ns, 'revoked', operatorMode({ productCode: 'revoked-code' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('revoked-0', 'revoked') });
    const pod = await settled('revoked-0');
    expect(gated(pod)).toBe(true);
    expect([verdict(pod), reason(pod)]).toEqual(['NotEntitled', 'CustomerNotEntitled']);
    const status = await waitForPod('status Entitled=False', async () => {
      const p = await getProduct(custom, ns, 'revoked');
      return p.status?.blockedPods === 1 ? p.status : undefined;
    });
    expect(status.conditions?.find((c) => c.type === 'Entitled')).toMatchObject({ status: 'False', reason: 'CustomerNotEntitled' });
  });

  it('Audit mode ungates a pod that fails, and marks it NotEntitled', async () => {
    fake.setBehaviour('audit-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, ns, 'audited', operatorMode({ productCode: 'audit-code', enforcement: 'Audit' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('audited-0', 'audited') });
    const pod = await settled('audited-0');
    expect(gated(pod)).toBe(false);
    expect([verdict(pod), reason(pod)]).toEqual(['NotEntitled', 'CustomerNotEntitled']);
  });

  it('a forged signature is InvalidSignature', async () => {
    fake.setBehaviour('forged-code', { badSignature: true });
    await createProduct(custom, ns, 'forged', operatorMode({ productCode: 'forged-code' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('forged-0', 'forged') });
    const pod = await settled('forged-0');
    expect(gated(pod)).toBe(true);
    expect([verdict(pod), reason(pod)]).toEqual(['NotEntitled', 'InvalidSignature']);
  });

  it('a missing product keeps the pod gated as ProductNotFound until the product appears', async () => {
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('early-0', 'late') });
    await waitForPod('ProductNotFound', async () => {
      const pod = await readPod(core, ns, 'early-0');
      return reason(pod) === 'ProductNotFound' ? pod : undefined;
    });
    await createProduct(custom, ns, 'late', operatorMode({ productCode: 'late-code' }));
    const pod = await settled('early-0');
    expect([verdict(pod), reason(pod), gated(pod)]).toEqual(['Entitled', 'SignatureVerified', false]);
  });
});

describe('identities and scale', () => {
  it('Pod mode: the registration is signed with the role of the pod ServiceAccount', async () => {
    const role = 'arn:aws:iam::123456789012:role/shop-app';
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'shop-app', annotations: { 'eks.amazonaws.com/role-arn': role } } } });
    await createProduct(custom, ns, 'podmode', { publicKey: { pem: fake.publicKeyPem }, productCode: 'podmode-code' });
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('podmode-0', 'podmode', { serviceAccountName: 'shop-app' }) });
    const pod = await settled('podmode-0');
    expect([verdict(pod), gated(pod)]).toEqual(['Entitled', false]);
    expect(fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'podmode-code')[0]).toMatchObject({ roleArn: role, roleSessionName: `${ns}.podmode-0` });
  });

  it('no role for a Pod-mode product: IdentityUnavailable', async () => {
    await createProduct(custom, ns, 'norole', { publicKey: { pem: fake.publicKeyPem }, productCode: 'norole-code' });
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'plain-sa' } } });
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('norole-0', 'norole', { serviceAccountName: 'plain-sa' }) });
    const pod = await settled('norole-0');
    expect([verdict(pod), reason(pod), gated(pod)]).toEqual(['NotEntitled', 'IdentityUnavailable', true]);
  });

  it('with half the calls throttled for a while, 200 pods all end Entitled with exactly one successful RegisterUsage each', async () => {
    fake.setBehaviour('burst-code', { throttleShare: 0.5 });
    await createProduct(custom, ns, 'burst', operatorMode({ productCode: 'burst-code' }));
    const names = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(names.slice(i, i + 25).map((name) => core.createNamespacedPod({ namespace: ns, body: labelledPod(name, 'burst') })));
    }
    setTimeout(() => {
      fake.setBehaviour('burst-code', {});
    }, 3000).unref();
    const pods = await waitForPod('200 entitled pods', async () => {
      const list = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'marketplace.entitlements.io/product=burst' })).items;
      return list.filter((p) => verdict(p) === 'Entitled').length === 200 ? list : undefined;
    }, 180_000);
    expect(pods.filter(gated)).toEqual([]);
    const successes = fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'burst-code');
    expect(fake.calls('RegisterUsage', 'ThrottlingException').filter((c) => c.productCode === 'burst-code').length).toBeGreaterThan(0);
    expect(successes).toHaveLength(200);
    const perNonce = new Map<unknown, number>();
    for (const call of successes) perNonce.set(call.request.Nonce, (perNonce.get(call.request.Nonce) ?? 0) + 1);
    const nonceOf = await operatorNonces(core);
    for (const pod of pods) expect(perNonce.get(nonceOf(pod))).toBe(1);
    const status = await waitForPod('the counters', async () => {
      const p = await getProduct(custom, ns, 'burst');
      return p.status?.entitledPods === 200 ? p.status : undefined;
    });
    expect(status).toMatchObject({ entitledPods: 200, blockedPods: 0, pendingPods: 0 });
  }, 240_000);
});

describe('running pods', () => {
  it('a labelled pod that bypassed the webhook is registered too, and evicted when it fails under Enforce', async () => {
    await createProduct(custom, ns, 'bypass-ok', operatorMode({ productCode: 'bypass-ok-code' }));
    fake.setBehaviour('bypass-bad-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, ns, 'bypass-bad', operatorMode({ productCode: 'bypass-bad-code' }));
    // Created without the label (the webhook never sees it), labelled afterwards: what a cluster
    // admin can do once the gate guard's binding is gone (test/integration/gate-guard.test.ts).
    await withoutGateGuard(controlPlane(), async () => {
      for (const product of ['bypass-ok', 'bypass-bad']) {
        await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: `${product}-0` }, spec: { containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } } });
        await controlPlane().kubectlOk(['label', 'pod', '-n', ns, `${product}-0`, `marketplace.entitlements.io/product=${product}`]);
      }
    });
    const ok = await settled('bypass-ok-0');
    expect([verdict(ok), gated(ok)]).toEqual(['Entitled', false]);
    await waitForPod('the failing pod to be evicted', async () => ((await core.listNamespacedPod({ namespace: ns, fieldSelector: 'metadata.name=bypass-bad-0' })).items.length === 0 ? true : undefined));
    expect(fake.calls('RegisterUsage', 'CustomerNotEntitledException').filter((c) => c.productCode === 'bypass-bad-code')).toHaveLength(1);
  });

  it('onRevocation: Evict evicts the running pods when the next registration answers CustomerNotEntitled', async () => {
    await createProduct(custom, ns, 'evictable', operatorMode({ productCode: 'evictable-code', onRevocation: 'Evict' }));
    for (const name of ['evictable-0', 'evictable-1']) await core.createNamespacedPod({ namespace: ns, body: labelledPod(name, 'evictable') });
    for (const name of ['evictable-0', 'evictable-1']) expect(verdict(await settled(name))).toBe('Entitled');

    fake.setBehaviour('evictable-code', { error: 'CustomerNotEntitledException' });
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('evictable-2', 'evictable') });
    const remaining = await waitForPod('the running pods to be evicted', async () => {
      const list = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'marketplace.entitlements.io/product=evictable' })).items;
      return list.length === 1 ? list : undefined;
    });
    expect(remaining.map((p) => [p.metadata?.name, verdict(p), reason(p), gated(p)])).toEqual([['evictable-2', 'NotEntitled', 'CustomerNotEntitled', true]]);
  });
});

describe('writes that name the pod', () => {
  it('a result computed for a deleted pod never lands on its successor of the same name', async () => {
    fake.setBehaviour('successor-code', { delayMs: 3000 });
    await createProduct(custom, ns, 'successor', operatorMode({ productCode: 'successor-code' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('db-0', 'successor') });
    await waitForPod('the first db-0 registration in flight', () => Promise.resolve((fake.state.delayed.get('successor-code') ?? 0) > 0 ? true : undefined));
    // Its answer, Entitled, is on its way; the successor will be refused.
    fake.setBehaviour('successor-code', { error: 'CustomerNotEntitledException' });
    await core.deleteNamespacedPod({ name: 'db-0', namespace: ns, gracePeriodSeconds: 0 });
    await waitForPod('the first db-0 gone', async () => ((await core.listNamespacedPod({ namespace: ns, fieldSelector: 'metadata.name=db-0' })).items.length === 0 ? true : undefined));
    const successor = await core.createNamespacedPod({ namespace: ns, body: labelledPod('db-0', 'successor') });
    const pod = await settled('db-0');
    expect(fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'successor-code')).toHaveLength(1);
    expect([pod.metadata?.uid, verdict(pod), reason(pod), gated(pod)]).toEqual([successor.metadata?.uid, 'NotEntitled', 'CustomerNotEntitled', true]);
    const refused = fake.calls('RegisterUsage', 'CustomerNotEntitledException').filter((c) => c.productCode === 'successor-code');
    expect(refused.map((c) => c.request.Nonce)).toEqual([(await operatorNonces(core))(pod)]);
  });
});

describe('revocation', () => {
  it('in Pod mode revokes only the refused identity, and finishes past a budget that refuses one of its pods', async () => {
    const paying = 'arn:aws:iam::123456789012:role/paying';
    const lapsed = 'arn:aws:iam::123456789012:role/lapsed';
    for (const [name, role] of [['paying', paying], ['lapsed', lapsed]] as const) {
      await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name, annotations: { 'eks.amazonaws.com/role-arn': role } } } });
    }
    await createProduct(custom, ns, 'identities', { publicKey: { pem: fake.publicKeyPem }, productCode: 'identities-code', onRevocation: 'Evict' });
    const pod = (name: string, serviceAccountName: string, labels: Record<string, string> = {}) => {
      const body = labelledPod(name, 'identities', { serviceAccountName });
      body.metadata = { name, labels: { 'marketplace.entitlements.io/product': 'identities', ...labels } };
      return core.createNamespacedPod({ namespace: ns, body });
    };
    await pod('paying-0', 'paying');
    await pod('lapsed-0', 'lapsed');
    await pod('lapsed-1', 'lapsed', { held: 'yes' });
    for (const name of ['paying-0', 'lapsed-0', 'lapsed-1']) expect(verdict(await settled(name))).toBe('Entitled');
    // lapsed-1 runs, behind a budget that allows no disruption (a Pending pod would be evicted whatever its budget says).
    await core.patchNamespacedPodStatus({ name: 'lapsed-1', namespace: ns, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const policy = controlPlane().kubeConfig().makeApiClient(PolicyV1Api);
    await policy.createNamespacedPodDisruptionBudget({ namespace: ns, body: { metadata: { name: 'held' }, spec: { maxUnavailable: 0, selector: { matchLabels: { held: 'yes' } } } } });

    // The customer behind the lapsed role cancels; a new pod of that identity is refused.
    fake.setBehaviour('identities-code', { notEntitledRoles: [lapsed] });
    await pod('lapsed-2', 'lapsed');
    expect(reason(await settled('lapsed-2'))).toBe('CustomerNotEntitled');
    await waitForPod('lapsed-0 evicted', async () => ((await core.listNamespacedPod({ namespace: ns, fieldSelector: 'metadata.name=lapsed-0' })).items.length === 0 ? true : undefined));
    const held = await readPod(core, ns, 'lapsed-1');
    expect([verdict(held), reason(held)]).toEqual(['NotEntitled', 'CustomerNotEntitled']);
    const payingPod = await readPod(core, ns, 'paying-0');
    expect([verdict(payingPod), gated(payingPod)]).toEqual(['Entitled', false]);
    // The customer subscribes again: a pod of that identity entitled after the refusal stays so.
    fake.setBehaviour('identities-code', {});
    await pod('lapsed-3', 'lapsed');
    expect(verdict(await settled('lapsed-3'))).toBe('Entitled');
    await controlPlane().kubectlOk(['label', 'pod', 'lapsed-3', '-n', ns, 'touched=yes']);
    await sleep(1_000);
    expect(verdict(await readPod(core, ns, 'lapsed-3'))).toBe('Entitled');
    // The budget protects a pod that was entitled: it is retried, never deleted past it.
    await sleep(3_000);
    expect((await readPod(core, ns, 'lapsed-1')).metadata?.deletionTimestamp).toBeUndefined();
    await policy.deleteNamespacedPodDisruptionBudget({ name: 'held', namespace: ns });
    await waitForPod('lapsed-1 evicted once its budget is gone', async () => ((await core.listNamespacedPod({ namespace: ns, fieldSelector: 'metadata.name=lapsed-1' })).items.length === 0 ? true : undefined), 120_000);
    const events = (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns, fieldSelector: 'regarding.name=lapsed-1' })).items.map((e) => e.reason);
    expect(events).not.toContain('Deleted');
    expect((await readPod(core, ns, 'paying-0')).metadata?.deletionTimestamp).toBeUndefined();
  }, 180_000);
});

describe('namespaces the webhook never gates', () => {
  it('kube-system pods are left alone: not registered, not evicted, not annotated, a forged verdict not counted', async () => {
    fake.setBehaviour('system-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, 'kube-system', 'system', operatorMode({ productCode: 'system-code' }));
    const forged = labelledPod('forged', 'system');
    if (forged.metadata) forged.metadata.annotations = { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified' };
    await core.createNamespacedPod({ namespace: 'kube-system', body: forged });
    await core.createNamespacedPod({ namespace: 'kube-system', body: labelledPod('unchecked', 'system') });
    // A pod elsewhere, made after them, gets its verdict: the operator has seen their events by then.
    await createProduct(custom, ns, 'after-system', operatorMode({ productCode: 'after-system-code' }));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('after-system-0', 'after-system') });
    expect(verdict(await settled('after-system-0'))).toBe('Entitled');
    const status = await waitForPod('the kube-system product reconciled', async () => {
      const p = await getProduct(custom, 'kube-system', 'system');
      return p.status?.observedGeneration === p.metadata.generation ? p.status : undefined;
    });

    expect(status).toMatchObject({ entitledPods: 0, blockedPods: 0, pendingPods: 0 });
    expect(fake.calls('RegisterUsage').filter((c) => c.productCode === 'system-code')).toHaveLength(0);
    const pods = (await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'marketplace.entitlements.io/product=system' })).items;
    expect(pods.map((p) => [p.metadata?.name, verdict(p), p.metadata?.annotations?.[annotations.seal], gated(p)]).sort()).toEqual([
      ['forged', 'Entitled', undefined, false],
      ['unchecked', undefined, undefined, false],
    ]);
  });
});

describe('observability', () => {
  it('exposes reconciles, durations, queue depth, AWS calls and latency, webhook latency, verdicts and leadership', async () => {
    expect(await operator.metric('entitlement_reconciles_total', { result: 'success' })).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_reconcile_duration_seconds_count')).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_workqueue_depth')).toBeGreaterThanOrEqual(0);
    expect(await operator.metric('entitlement_aws_calls_total', { operation: 'RegisterUsage', outcome: 'ok' })).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_aws_calls_total', { operation: 'RegisterUsage', outcome: 'CustomerNotEntitledException' })).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_aws_call_duration_seconds_count', { operation: 'RegisterUsage' })).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_webhook_duration_seconds_count')).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_verdicts_total', { verdict: 'Entitled', reason: 'SignatureVerified' })).toBeGreaterThan(0);
    expect(await operator.metric('entitlement_leader')).toBe(1);
    const ready = await fetch(`${operator.healthUrl}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([200, 'ok\n']);
  });

  it('logs JSON lines that name the pod and product, without credentials', async () => {
    const log = await readFile(controlPlane().file('operator.log'), 'utf8');
    const lines = log.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    // An entitled pod is logged at debug (its Event records it); a refusal is a warning.
    const refused = lines.find((l) => l.message === 'pod not entitled' && l.reason === 'CustomerNotEntitled');
    expect(refused).toMatchObject({ level: 'warn', pod: expect.stringMatching(new RegExp(`^${ns}/`)) as unknown, product: `${ns}/revoked` });
    expect(log).not.toContain(fakeCredentials.secretAccessKey);
    expect(log).not.toMatch(/eyJhbGciOiJQUzI1NiI/); // no signature (JWT) in the logs
  });

  it('SIGTERM: a graceful stop releases the Lease and exits 0', async () => {
    operator.proc.terminate();
    expect(await operator.proc.exited()).toBe(0);
    const lease = await controlPlane().kubeConfig().makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'entitlement-operator-leader', namespace: 'entitlement-operator-system' });
    expect(lease.spec?.holderIdentity).toBeUndefined();
  });
});
