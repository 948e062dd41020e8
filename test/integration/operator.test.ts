// The entitlement gate end to end: the built operator, out of cluster as the bundle's
// ServiceAccount, against a real API server and the fake AWS.
import { CoreV1Api, CustomObjectsApi, EventsV1Api } from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { annotations } from '../../src/api/marketplace-product.js';
import { FakeAws } from '../../src/fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess, waitForPod, type OperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';

const controlPlane = controlPlaneForSuite();
const ns = 'shop';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let operator: OperatorProcess;

beforeAll(async () => {
  const plane = controlPlane();
  fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] });
  await installBundle(plane);
  core = plane.kubeConfig().makeApiClient(CoreV1Api);
  custom = plane.kubeConfig().makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  operator = await startOperatorProcess(plane, fake, await serviceAccountKubeconfig(plane));
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

    const product = await core.createNamespacedPod({ namespace: ns, body: labelledPod('gated-at-admission', 'absent-product') });
    expect(gated(product)).toBe(true);
    expect(await operator.metric('entitlement_webhook_requests_total', { outcome: 'gated' })).toBe(1);
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
