// The upgrade from a release that wrote verdicts without seals: the first start of this one where
// that release ran (its Lease is there) makes the operator key and, for a while, adopts and seals
// the verdicts it finds without a seal, so nothing is registered or evicted again and nothing is
// reported as tampering. Once the window is over, an unsealed verdict is a forged one again.
import { EventsV1Api, PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel } from '../../src/api/marketplace-product.js';
import { operatorKeySecretName } from '../../src/api/names.js';
import { sealedSinceAnnotation } from '../../src/verdicts/operator-key.js';
import type { FakeAws } from '../fake-aws/server.js';
import { bundleObject, operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod, withoutGateGuard, type OperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, readPod, verdict } from '../support/pods.js';

const controlPlane = controlPlaneForSuite();
const ns = 'upgraded';
const webhookConfiguration = 'entitlement-operator-mutating-webhook-configuration';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let kubeconfig: string;

/** Where releases before this one wrote the nonce (now computed, verdicts/nonce.ts): left as it is. */
const legacyNonce = 'marketplace.entitlements.io/nonce';

/** A pod as the release before seals left it: ungated, its verdict annotations without a seal. */
function previousRelease(name: string): V1Pod {
  return {
    metadata: {
      name,
      labels: { [productLabel]: 'app' },
      annotations: { [legacyNonce]: `nonce-${name}`, [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: '2026-11-30T10:00:00.000Z' },
    },
    spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1' }] },
  };
}

beforeAll(async () => {
  const plane = controlPlane();
  const env = await prepareOperatorEnvironment(plane);
  ({ fake, core, custom, kubeconfig } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await createProduct(custom, ns, 'app', { productCode: 'app-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' } });
  // What the release before left: pods created through its webhook (here without one, which would
  // strip verdicts), entitled and running, and no operator key yet.
  await plane.kubectlOk(['delete', 'mutatingwebhookconfiguration', webhookConfiguration]);
  for (const name of ['old-0', 'old-1']) await core.createNamespacedPod({ namespace: ns, body: previousRelease(name) });
  await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify(bundleObject('MutatingWebhookConfiguration')));
  // The previous release's leader Lease (released as it stopped): how the first start knows it upgrades.
  await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'entitlement-operator-leader', namespace: operatorNamespace }, spec: {} }));
}, 120_000);
afterAll(async () => fake.close());

let operator: OperatorProcess | undefined;
async function restart(): Promise<void> {
  if (operator) {
    operator.proc.terminate();
    await operator.proc.exited();
  }
  operator = await startOperatorProcess(controlPlane(), fake, kubeconfig, { name: `operator-${Date.now()}` });
}

const registrations = () => fake.calls('RegisterUsage').filter((c) => c.productCode === 'app-code');

it('adopts the verdicts of the pods that were there: sealed, not registered again, no Event of tampering', async () => {
  await restart();
  const key = await core.readNamespacedSecret({ name: operatorKeySecretName, namespace: operatorNamespace });
  expect(Date.parse(key.metadata?.annotations?.[sealedSinceAnnotation] ?? '')).toBeGreaterThan(0);
  for (const name of ['old-0', 'old-1']) {
    const pod = await waitForPod(`${name} sealed`, async () => {
      const current = await readPod(core, ns, name);
      return current.metadata?.annotations?.[annotations.seal] ? current : undefined;
    });
    expect([verdict(pod), gated(pod), pod.metadata?.annotations?.[legacyNonce], pod.metadata?.annotations?.[annotations.registeredAt]]).toEqual(['Entitled', false, `nonce-${name}`, '2026-11-30T10:00:00.000Z']);
    const reasons = (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns, fieldSelector: `regarding.name=${name}` })).items.map((e) => e.reason);
    expect(reasons).toEqual([]);
  }
  expect(registrations()).toHaveLength(0);
  const status = await waitForPod('both counted entitled', async () => {
    const current = (await getProduct(custom, ns, 'app')).status;
    return current?.entitledPods === 2 ? current : undefined;
  });
  expect(status).toMatchObject({ entitledPods: 2, bypassedPods: 0 });
});

/** Refused, then given an Entitled without a seal (the gate guard out of the way): checked with AWS again, and still gated. */
async function forgedWhileGated(name: string): Promise<void> {
  fake.setBehaviour('app-code', { error: 'CustomerNotEntitledException' });
  await core.createNamespacedPod({ namespace: ns, body: { metadata: { name, labels: { [productLabel]: 'app' } }, spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1' }] } } });
  await waitForPod(`${name} refused`, async () => (verdict(await readPod(core, ns, name)) === 'NotEntitled' ? true : undefined));
  const before = registrations().length;
  await withoutGateGuard(controlPlane(), async () => {
    await controlPlane().kubectlOk(['annotate', 'pod', name, '-n', ns, '--overwrite', `${annotations.status}=Entitled`, `${annotations.reason}=SignatureVerified`, `${annotations.seal}-`]);
    const pod = await waitForPod(`${name} checked again and refused`, async () => {
      const current = await readPod(core, ns, name);
      return verdict(current) === 'NotEntitled' && registrations().length === before + 1 ? current : undefined;
    });
    expect(gated(pod)).toBe(true);
  });
  fake.setBehaviour('app-code', {});
}

it('within the window, an Entitled without a seal on a pod still gated is not adopted: checked with AWS, the gate stays', async () => {
  await forgedWhileGated('gated-0');
});

it('once the window is over (the time on the key moved back), a verdict without a seal is no verdict: checked with AWS', async () => {
  // Ten minutes on: the same as a key made that long ago. A replica reads the time when it starts.
  await core.patchNamespacedSecret({ name: operatorKeySecretName, namespace: operatorNamespace, body: { metadata: { annotations: { [sealedSinceAnnotation]: '2026-01-01T00:00:00Z' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  await restart();
  await forgedWhileGated('new-0');
});
