// NotEntitled pods checked again: with backoff until the customer subscribes, at once when the
// product changes or a user asks (the recheck annotation on a pod or a product), never
// periodically for a permanent reason; a fresh nonce each time, one Event per reason, and the pod
// runs without being recreated. Also: a verdict a pod brings at creation is not believed.
import { EventsV1Api, PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { annotations, group, plural, version } from '../../src/api/marketplace-product.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';
import { testPublicKeyPem } from '../support/products.js';

const controlPlane = controlPlaneForSuite();
const ns = 'rechecks';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

beforeAll(async () => {
  const env = await prepareOperatorEnvironment(controlPlane());
  ({ fake, core, custom } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  // Periodic checks every 2 s at most, so backoff shows within a test.
  await startOperatorProcess(controlPlane(), fake, env.kubeconfig, { env: { RECHECK_MAX_INTERVAL_SECONDS: '2' } });
}, 120_000);
afterAll(async () => fake.close());

const callsFor = (code: string) => fake.calls('RegisterUsage').filter((c) => c.productCode === code);
const withVerdict = (name: string, wanted: string, wantedReason?: string) =>
  waitForPod(`${name}: ${wanted}${wantedReason ? `/${wantedReason}` : ''}`, async () => {
    const pod = await readPod(core, ns, name);
    return verdict(pod) === wanted && (wantedReason === undefined || reason(pod) === wantedReason) ? pod : undefined;
  }, 30_000);
const eventsOf = async (name: string) =>
  (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns, fieldSelector: `regarding.name=${name}` })).items.map((e) => e.reason);
const annotatePod = (name: string, value: string) => core.patchNamespacedPod({ name, namespace: ns, body: { metadata: { annotations: { [annotations.recheck]: value } } } }, mergePatch);
const annotateProduct = (name: string, value: string) =>
  custom.patchNamespacedCustomObject({ group, version, plural, namespace: ns, name, body: { metadata: { annotations: { [annotations.recheck]: value } } } }, mergePatch);

it('a pod refused for CustomerNotEntitled is checked again with backoff, and runs once the customer subscribes, without being recreated', async () => {
  fake.setBehaviour('later-code', { error: 'CustomerNotEntitledException' });
  await createProduct(custom, ns, 'later', { productCode: 'later-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' } });
  const created = await core.createNamespacedPod({ namespace: ns, body: labelledPod('later-0', 'later') });
  await withVerdict('later-0', 'NotEntitled', 'CustomerNotEntitled');
  // Checked again periodically: more calls, each with a fresh nonce, one Event for the reason.
  await waitForPod('three checks', () => Promise.resolve(callsFor('later-code').length >= 3 ? true : undefined), 30_000);
  const nonces = callsFor('later-code').map((c) => c.request.Nonce);
  expect(new Set(nonces).size).toBe(nonces.length);
  expect((await eventsOf('later-0')).filter((r) => r === 'NotEntitled')).toHaveLength(1);
  const pod = await readPod(core, ns, 'later-0');
  expect(gated(pod)).toBe(true);
  expect(JSON.parse(pod.metadata?.annotations?.[annotations.checks] ?? '{}')).toMatchObject({ reason: 'CustomerNotEntitled', attempts: expect.any(Number) as unknown });

  // The customer subscribes.
  fake.setBehaviour('later-code', {});
  const entitled = await withVerdict('later-0', 'Entitled');
  expect(entitled.metadata?.uid).toBe(created.metadata?.uid);
  expect(gated(entitled)).toBe(false);
  expect(entitled.metadata?.annotations?.[annotations.checks]).toBeUndefined();
  expect(await eventsOf('later-0')).toContain('Entitled');
  await waitForPod('status: Entitled=True, one entitled pod, none blocked', async () => {
    const status = (await getProduct(custom, ns, 'later')).status;
    const condition = status?.conditions?.find((c) => c.type === 'Entitled');
    return condition?.status === 'True' && status?.entitledPods === 1 && status.blockedPods === 0 ? true : undefined;
  });
}, 60_000);

it('a permanent reason is not checked again periodically, but at once when asked on the pod or the product, and when the product is fixed', async () => {
  // The wrong public key: every signature fails (InvalidSignature, permanent).
  await createProduct(custom, ns, 'wrongkey', { productCode: 'wrongkey-code', publicKey: { pem: testPublicKeyPem }, identity: { mode: 'Operator' } });
  await core.createNamespacedPod({ namespace: ns, body: labelledPod('wrongkey-0', 'wrongkey') });
  await core.createNamespacedPod({ namespace: ns, body: labelledPod('wrongkey-1', 'wrongkey') });
  await withVerdict('wrongkey-0', 'NotEntitled', 'InvalidSignature');
  await withVerdict('wrongkey-1', 'NotEntitled', 'InvalidSignature');
  await sleep(5_000); // more than two periodic intervals
  expect(callsFor('wrongkey-code')).toHaveLength(2);

  // Asked on one pod: that pod only.
  await annotatePod('wrongkey-0', 'first');
  await waitForPod('a check of wrongkey-0', () => Promise.resolve(callsFor('wrongkey-code').length === 3 ? true : undefined));
  await withVerdict('wrongkey-0', 'NotEntitled', 'InvalidSignature');
  // Asked on the product: both.
  await annotateProduct('wrongkey', 'both');
  await waitForPod('a check of both pods', () => Promise.resolve(callsFor('wrongkey-code').length === 5 ? true : undefined));
  await sleep(1_000);
  expect(callsFor('wrongkey-code')).toHaveLength(5);
  expect((await eventsOf('wrongkey-0')).filter((r) => r === 'NotEntitled')).toHaveLength(1);
  // The annotations stay where the user put them.
  expect((await readPod(core, ns, 'wrongkey-0')).metadata?.annotations?.[annotations.recheck]).toBe('first');

  // The seller fixes the key: checked at once, entitled.
  await custom.patchNamespacedCustomObject({ group, version, plural, namespace: ns, name: 'wrongkey', body: { spec: { publicKey: { pem: fake.publicKeyPem } } } }, mergePatch);
  await withVerdict('wrongkey-0', 'Entitled');
  await withVerdict('wrongkey-1', 'Entitled');
}, 60_000);

it('a pod created with a verdict of its own is gated and registered like any other', async () => {
  // A product whose registrations all fail (the wrong key: InvalidSignature, never checked periodically).
  await createProduct(custom, ns, 'forged', { productCode: 'forged-code', publicKey: { pem: testPublicKeyPem }, identity: { mode: 'Operator' } });
  const forged = labelledPod('forged-0', 'forged');
  forged.metadata = { name: 'forged-0', labels: forged.metadata?.labels ?? {}, annotations: { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified' } };
  const created = await core.createNamespacedPod({ namespace: ns, body: forged });
  expect(created.metadata?.annotations?.[annotations.status]).toBeUndefined();
  expect(gated(created)).toBe(true);
  const pod = await withVerdict('forged-0', 'NotEntitled', 'InvalidSignature');
  expect(gated(pod)).toBe(true);
  expect(callsFor('forged-code')).toHaveLength(1);
});

it("a product's key ConfigMap rewritten by the team refuses new pods (InvalidSignature); restored, they are checked again at once and run", async () => {
  await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'signing-key' }, data: { 'key.pem': fake.publicKeyPem } } });
  await createProduct(custom, ns, 'keyed', { productCode: 'keyed-code', publicKey: { configMapKeyRef: { name: 'signing-key', key: 'key.pem' } }, identity: { mode: 'Operator' } });
  await core.createNamespacedPod({ namespace: ns, body: labelledPod('keyed-0', 'keyed') });
  await withVerdict('keyed-0', 'Entitled');
  // Someone who may edit ConfigMaps in the namespace writes another key.
  await core.replaceNamespacedConfigMap({ name: 'signing-key', namespace: ns, body: { metadata: { name: 'signing-key' }, data: { 'key.pem': testPublicKeyPem } } });
  // Registrations read the key from the ConfigMap's watch: the next pod sees the new one.
  await sleep(1_000);
  await core.createNamespacedPod({ namespace: ns, body: labelledPod('keyed-1', 'keyed') });
  await withVerdict('keyed-1', 'NotEntitled', 'InvalidSignature');
  const calls = callsFor('keyed-code').length;
  await sleep(5_000); // a permanent reason: no periodic check
  expect(callsFor('keyed-code')).toHaveLength(calls);
  // Restored: checked again at once, entitled, never recreated.
  await core.replaceNamespacedConfigMap({ name: 'signing-key', namespace: ns, body: { metadata: { name: 'signing-key' }, data: { 'key.pem': fake.publicKeyPem } } });
  const pod = await withVerdict('keyed-1', 'Entitled');
  expect(gated(pod)).toBe(false);
  // The entitled pod was never checked again.
  expect(callsFor('keyed-code')).toHaveLength(calls + 1);
}, 60_000);
