// What Pod identity keeps of each pod's credentials (PodIdentity) and how they sign its calls
// (ProductClients): a real API server issues the bound tokens, the fake STS exchanges them and
// records which pod each token was bound to, the fake Metering verifies the signatures.
import { readFile } from 'node:fs/promises';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { createStsClient } from '../../src/aws/clients.js';
import { meterUsage, registerUsage } from '../../src/aws/metering-operations.js';
import { newNonce } from '../../src/aws/nonce.js';
import { PodIdentity, roleArnAnnotation, type PodIdentityLimits, type PodRef } from '../../src/aws/pod-identity.js';
import { Metrics } from '../../src/observability/metrics.js';
import { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { fakeProductClients, fakeSettings } from '../support/fake-aws.js';

const controlPlane = controlPlaneForSuite();
const namespace = 'creds';
const role = 'arn:aws:iam::123456789012:role/creds-workload';
let fake: FakeAws;
let core: CoreV1Api;
const pods: PodRef[] = [];

beforeAll(async () => {
  const plane = controlPlane();
  fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')], products: { 'creds-code': { delayMs: 200 } } });
  core = plane.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  for (const name of ['app', 'other', 'third']) await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name, annotations: { [roleArnAnnotation]: role } } } });
  for (let i = 0; i < 4; i++) {
    const pod: V1Pod = await core.createNamespacedPod({ namespace, body: { metadata: { name: `app-${i}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'registry.invalid/app:1' }] } } });
    pods.push({ namespace, name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '', serviceAccountName: 'app' });
  }
});
afterAll(async () => fake.close());

const exchangesFor = (pod: PodRef) => fake.calls('AssumeRoleWithWebIdentity', 'ok').filter((c) => c.boundPod?.uid === pod.uid).length;
const at = (i: number): PodRef => {
  const pod = pods[i];
  if (!pod) throw new Error(`no pod ${i}`);
  return pod;
};
const podIdentity = (now: () => number = Date.now, limits?: PodIdentityLimits) => new PodIdentity(controlPlane().client(), createStsClient(fakeSettings(fake), 'anonymous'), now, limits);

describe('ProductClients in Pod identity', () => {
  const product: MarketplaceProduct = {
    apiVersion: 'marketplace.entitlements.io/v1alpha1',
    kind: 'MarketplaceProduct',
    metadata: { name: 'creds', namespace },
    spec: { productCode: 'creds-code', publicKeyVersion: 1, publicKey: { pem: '' }, identity: { mode: 'Pod' } },
  };

  it("signs each pod's calls with credentials issued for that pod, however many are in flight at once through the one client", async () => {
    const clients = fakeProductClients(fake, controlPlane().client(), new Metrics(), { RegisterUsage: 4, MeterUsage: 4 });
    const nonces = pods.map(() => newNonce());
    await Promise.all(pods.map((pod, i) => clients.run(product, pod, 'RegisterUsage', (client) => registerUsage(client, { productCode: 'creds-code', publicKeyVersion: 1, nonce: nonces[i] ?? '' }))));
    const calls = fake.calls('RegisterUsage', 'ok').filter((c) => nonces.includes(String(c.request.Nonce)));
    expect(calls.map((c) => [c.request.Nonce, c.boundPod?.uid, c.roleSessionName])).toEqual(
      expect.arrayContaining(pods.map((pod, i) => [nonces[i], pod.uid, `${namespace}.${pod.name}`])),
    );
    expect(calls).toHaveLength(pods.length);
  });

  it("a pod's hourly MeterUsage is signed with the credentials of its RegisterUsage, with no second TokenRequest or exchange", async () => {
    const clients = fakeProductClients(fake, controlPlane().client(), new Metrics());
    const pod = at(0);
    const before = exchangesFor(pod);
    const nonce = newNonce();
    await clients.run(product, pod, 'RegisterUsage', (client) => registerUsage(client, { productCode: 'creds-code', publicKeyVersion: 1, nonce }));
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
    await clients.run(product, pod, 'MeterUsage', (client) => meterUsage(client, { productCode: 'creds-code', timestamp: hour, usageDimension: 'pods', usageQuantity: 1 }));
    const registered = fake.calls('RegisterUsage', 'ok').find((c) => c.request.Nonce === nonce);
    const metered = fake.calls('MeterUsage', 'ok').slice(-1)[0];
    expect(metered?.accessKeyId).toBe(registered?.accessKeyId);
    expect(metered?.boundPod?.uid).toBe(pod.uid);
    expect(exchangesFor(pod) - before).toBe(1);
  });

  it("a per-call-credentials client (a pod identity's) used outside ProductClients.run signs nothing", async () => {
    const clients = fakeProductClients(fake, controlPlane().client(), new Metrics());
    let escaped: Parameters<Parameters<typeof clients.run>[3]>[0] | undefined;
    await clients.run(product, at(1), 'RegisterUsage', (client) => {
      escaped = client;
      return Promise.resolve();
    });
    if (!escaped) throw new Error('no client');
    await expect(registerUsage(escaped, { productCode: 'creds-code', publicKeyVersion: 1, nonce: newNonce() })).rejects.toThrow(/outside ProductClients\.run/);
  });
});

describe('PodIdentity keeps credentials for their lifetime, bounded', () => {
  it('keeps at most its limit of pods, dropping the least recently used, never all at once', async () => {
    const identity = podIdentity(Date.now, { pods: 2, serviceAccounts: 10 });
    const before = pods.map(exchangesFor);
    await identity.credentials(at(0));
    await identity.credentials(at(1));
    await identity.credentials(at(0)); // pod 1 is now the least recently used
    await identity.credentials(at(2));
    expect(identity.cachedPods).toBe(2);
    await identity.credentials(at(0));
    await identity.credentials(at(2));
    expect(pods.map((pod, i) => exchangesFor(pod) - (before[i] ?? 0))).toEqual([1, 1, 1, 0]);
    await identity.credentials(at(1));
    expect(pods.map((pod, i) => exchangesFor(pod) - (before[i] ?? 0))).toEqual([1, 2, 1, 0]);
  });

  it("drops a deleted pod's credentials (forget), and the next call for it exchanges again", async () => {
    const identity = podIdentity();
    const pod = at(3);
    const before = exchangesFor(pod);
    await identity.credentials(pod);
    identity.forget(pod.uid);
    expect(identity.cachedPods).toBe(0);
    await identity.credentials(pod);
    expect(exchangesFor(pod) - before).toBe(2);
  });

  it('drops credentials once they have expired, though there is room for them', async () => {
    let now = Date.now();
    const identity = podIdentity(() => now);
    await identity.credentials(at(0));
    await identity.credentials(at(1));
    expect(identity.cachedPods).toBe(2);
    now += 2 * 3_600_000; // the fake issues credentials for an hour
    await identity.credentials(at(2)).catch(() => undefined); // its token is real-time; only the pruning matters here
    expect(identity.cachedPods).toBe(1);
  });

  it("keeps a bounded number of ServiceAccounts' roles, and prunes those older than their 30 s", async () => {
    let now = Date.now();
    const identity = podIdentity(() => now, { pods: 10, serviceAccounts: 2 });
    const onAccount = (serviceAccountName: string): PodRef => ({ ...at(0), serviceAccountName });
    // Roles are read before the token, so a pod of the wrong ServiceAccount still fills the cache.
    for (const account of ['app', 'other', 'third']) await identity.credentials(onAccount(account)).catch(() => undefined);
    expect(identity.cachedServiceAccounts).toBe(2);
    now += 31_000;
    await identity.credentials(onAccount('app')).catch(() => undefined);
    expect(identity.cachedServiceAccounts).toBe(1);
  });
});
