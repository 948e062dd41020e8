// The pod reconciler, constructed directly: an in-memory cache and API server, and the real
// Registrar and AWS SDK clients against the local fake AWS. Each branch of a pod's life: entitled,
// refused, Audit, a check again when due, ungated without a verdict, a forged verdict, a
// revocation, a successor of the same name, and leadership lost mid-registration.
import type { V1Pod } from '@kubernetes/client-node';
import { annotations } from '../../src/api/marketplace-product.js';
import { isGated, verdictStateOf } from '../../src/api/pod-state.js';
import { fakeAwsForSuite } from '../support/fake-aws.js';
import { gatedPod } from '../support/memory.js';
import { podReconcilerHarness } from '../support/pod-reconciler.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const fake = fakeAwsForSuite({
  products: { 'refused-code': { error: 'CustomerNotEntitledException' }, 'slow-code': { delayMs: 2_000 } },
});

function harness() {
  const h = podReconcilerHarness(fake());
  const { api, pods, sealer } = h;
  /** The pod as the API server has it, and as the cache believes it. */
  const stored = (key: string): V1Pod => api.pods.get(key) ?? {};
  const believed = (key: string) => verdictStateOf(pods.get(key) ?? {});
  const registrations = (nonce: string | undefined) => fake().calls('RegisterUsage').filter((c) => c.request.Nonce === nonce);
  /** The nonce of the pod's registration as it stands now: its uid and check id under the operator key. */
  const nonceOf = (key: string) => sealer.nonces.of(stored(key).metadata?.uid ?? '', verdictStateOf(stored(key)).check);
  const eventReasons = () => api.made('POST', /\/events$/).map((r) => (r.body as { reason: string }).reason);
  /** An entitled pod, registered at `registeredAt`, as the operator left it. */
  const entitledPod = (name: string, productName: string, registeredAt: number): V1Pod => {
    const pod = gatedPod('shop', name, productName);
    const sealed = sealedAnnotations(sealer, pod, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date(registeredAt).toISOString() });
    return api.putPod({ ...pod, metadata: { ...pod.metadata, annotations: sealed }, spec: { ...pod.spec, containers: pod.spec?.containers ?? [], schedulingGates: [] } });
  };
  return Object.assign(h, { stored, believed, registrations, nonceOf, eventReasons, entitledPod });
}

it('entitled: one RegisterUsage with the nonce of its uid, no write before it, a sealed verdict with the gate removed in one patch, the product told; again changes nothing', async () => {
  const h = harness();
  h.product('app');
  h.api.putPod(gatedPod('shop', 'web-0', 'app'));
  const nonce = h.nonceOf('shop/web-0');
  expect(await h.reconcile('shop/web-0')).toBeUndefined();

  const pod = h.stored('shop/web-0');
  expect(h.registrations(nonce)).toHaveLength(1);
  expect(fake().calls('RegisterUsage')).toHaveLength(1);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'Entitled', reason: 'SignatureVerified' });
  expect(isGated(pod)).toBe(false);
  // One patch, with the verdict and the gate's removal, naming the uid: the nonce needed none.
  const patches = h.api.made('PATCH', '/api/v1/namespaces/shop/pods/web-0');
  expect(patches.map((p) => (p.body as { metadata: { uid: string } }).metadata.uid)).toEqual(['web-0-uid']);
  expect(h.reports.registration('shop/app')).toMatchObject({ status: 'True', reason: 'SignatureVerified' });
  expect(h.eventReasons()).toEqual(['Entitled']);

  await h.reconcile('shop/web-0');
  expect(h.registrations(nonce)).toHaveLength(1);
  expect(h.api.made('PATCH', /pods/)).toHaveLength(1);
});

it('a sealed Entitled on a pod still gated (adopted, then the process stopped before ungating) is ungated, with no registration', async () => {
  const h = harness();
  h.product('app');
  const pod = gatedPod('shop', 'web-0', 'app');
  const sealed = sealedAnnotations(h.sealer, pod, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date().toISOString() });
  h.api.putPod({ ...pod, metadata: { ...pod.metadata, annotations: sealed } });
  const before = fake().calls('RegisterUsage').length;
  await h.reconcile('shop/web-0');
  expect(isGated(h.stored('shop/web-0'))).toBe(false);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'Entitled' });
  expect(fake().calls('RegisterUsage')).toHaveLength(before);
});

it('the nonce is a MAC only the operator key makes: another pod, another check or another key gives another one', () => {
  const sealer = testSealer();
  const first = sealer.nonces.of('uid-1', undefined);
  expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(sealer.nonces.of('uid-1', undefined)).toBe(first);
  expect(new Set([first, sealer.nonces.of('uid-2', undefined), sealer.nonces.of('uid-1', 'check-1'), testSealer().nonces.of('uid-1', undefined)]).size).toBe(4);
});

it('refused under Enforce: NotEntitled with its record of checks, the gate stays, a check again is scheduled', async () => {
  const h = harness();
  h.product('refused');
  h.api.putPod(gatedPod('shop', 'web-0', 'refused'));
  const nonce = h.nonceOf('shop/web-0');
  await h.reconcile('shop/web-0');
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', reason: 'CustomerNotEntitled', checks: { attempts: 1 } });
  expect(isGated(h.stored('shop/web-0'))).toBe(true);
  expect(h.reports.registration('shop/refused')).toMatchObject({ status: 'False', reason: 'CustomerNotEntitled' });
  expect(h.eventReasons()).toEqual(['NotEntitled']);
  // The registration used the nonce of the pod's uid; the one patch is the verdict's.
  expect(h.registrations(nonce)).toHaveLength(1);
  expect(h.api.made('PATCH', /pods/)).toHaveLength(1);

  // Its next pass waits for the check again.
  const next = await h.reconcile('shop/web-0');
  expect(next?.requeueAfterMs).toBeGreaterThan(0);
  expect(next?.requeueAfterMs).toBeLessThanOrEqual(15 * 60_000);
});

it('refused under Audit: the gate goes, the pod runs NotEntitled, and its record says it ran under Audit', async () => {
  const h = harness();
  h.product('refused', { enforcement: 'Audit' });
  h.api.putPod(gatedPod('shop', 'web-0', 'refused'));
  await h.reconcile('shop/web-0');
  expect(isGated(h.stored('shop/web-0'))).toBe(false);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', checks: { ranUnderAudit: true } });
  expect(h.api.made('POST', /eviction$/)).toEqual([]);
});

it('a check again when due: the verdict goes, a fresh check id (so a fresh nonce) is written with it, and the pod is registered like a new one', async () => {
  const h = harness();
  h.product('refused');
  h.api.putPod(gatedPod('shop', 'web-0', 'refused'));
  const first = h.nonceOf('shop/web-0');
  await h.reconcile('shop/web-0');
  h.clock.advance(16 * 60_000);
  await h.reconcile('shop/web-0'); // starts the check again
  const second = h.nonceOf('shop/web-0');
  expect(h.stored('shop/web-0').metadata?.annotations?.[annotations.check]).toMatch(/^[A-Za-z0-9_-]{22}$/);
  expect(second).not.toBe(first);
  expect(h.believed('shop/web-0').status).toBeUndefined();
  await h.reconcile('shop/web-0'); // registers again
  expect(h.registrations(second)).toHaveLength(1);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', checks: { attempts: 2 } });
});

it('a retry after a crash is the same registration: the new process computes the same nonce from the pod', async () => {
  const h = harness();
  h.product('flaky');
  h.api.putPod(gatedPod('shop', 'web-0', 'flaky'));
  fake().setBehaviour('flaky-code', { error: 'InternalServiceErrorException' });
  await expect(h.reconcile('shop/web-0')).rejects.toThrow();
  h.restart();
  fake().setBehaviour('flaky-code', {});
  await h.reconcile('shop/web-0');
  const nonces = new Set(fake().calls('RegisterUsage').filter((c) => c.productCode === 'flaky-code').map((c) => c.request.Nonce));
  expect([...nonces]).toEqual([h.nonceOf('shop/web-0')]);
  expect(h.believed('shop/web-0').status).toBe('Entitled');
});

it("a check again that a crash interrupted, and one whose product went meanwhile, keep their check id: the same nonce, never the first check's", async () => {
  const h = harness();
  const refused = h.product('refused');
  h.api.putPod(gatedPod('shop', 'web-0', 'refused'));
  const first = h.nonceOf('shop/web-0');
  await h.reconcile('shop/web-0');
  h.clock.advance(16 * 60_000);
  await h.reconcile('shop/web-0'); // starts the check again: its check id is on the pod
  const again = h.nonceOf('shop/web-0');
  h.restart();
  h.api.products.delete('shop/refused');
  h.productCache.remove('shop/refused');
  await h.reconcile('shop/web-0'); // ProductNotFound, the check id kept
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', reason: 'ProductNotFound' });
  expect(h.nonceOf('shop/web-0')).toBe(again);
  h.api.putProduct(refused);
  h.restart();
  await h.reconcile('shop/web-0');
  expect([h.registrations(first).length, h.registrations(again).length]).toEqual([1, 1]);
});

it('an entitled pod whose verdict was removed (the gate guard gone), seen by the next process: a fresh check id, not the nonce AWS already answered', async () => {
  const h = harness();
  h.product('app');
  h.api.putPod(gatedPod('shop', 'web-0', 'app'));
  const first = h.nonceOf('shop/web-0');
  await h.reconcile('shop/web-0');
  const entitled = h.stored('shop/web-0');
  h.api.putPod({ ...entitled, metadata: { ...entitled.metadata, annotations: {} } });
  h.restart();
  await h.reconcile('shop/web-0'); // ungated, no verdict: starts over with a fresh check id
  const fresh = h.nonceOf('shop/web-0');
  expect(fresh).not.toBe(first);
  await h.reconcile('shop/web-0');
  expect([h.registrations(first).length, h.registrations(fresh).length, h.believed('shop/web-0').status]).toEqual([1, 1, 'Entitled']);
});

it('ungated without a verdict (someone removed the gate): reported, registered, and evicted once refused', async () => {
  const h = harness();
  h.product('refused');
  const pod = gatedPod('shop', 'web-0', 'refused');
  h.api.putPod({ ...pod, spec: { ...pod.spec, containers: pod.spec?.containers ?? [], schedulingGates: [] } });
  await h.reconcile('shop/web-0'); // a fresh check id first: a check of it may have been answered before its gate went
  expect(h.stored('shop/web-0').metadata?.annotations?.[annotations.check]).toBeDefined();
  await h.reconcile('shop/web-0');
  expect(h.eventReasons()).toEqual(['Ungated', 'NotEntitled']);
  await h.reconcile('shop/web-0');
  const [eviction] = h.api.made('POST', '/api/v1/namespaces/shop/pods/web-0/eviction');
  expect(eviction?.body).toMatchObject({ deleteOptions: { preconditions: { uid: 'web-0-uid' } } });
  expect(h.api.pods.has('shop/web-0')).toBe(false);
});

it('a forged Entitled verdict is not believed: the pod starts over with a fresh nonce and is checked with AWS', async () => {
  const h = harness();
  h.product('refused');
  h.api.putPod(gatedPod('shop', 'web-0', 'refused', { annotations: { [annotations.status]: 'Entitled', [annotations.check]: 'chosen-by-the-forger' } }));
  expect(h.believed('shop/web-0').status).toBeUndefined();
  await h.reconcile('shop/web-0'); // starts over
  const nonce = h.nonceOf('shop/web-0');
  expect(h.stored('shop/web-0').metadata?.annotations?.[annotations.check]).not.toBe('chosen-by-the-forger');
  expect(nonce).not.toBe(h.sealer.nonces.of('web-0-uid', 'chosen-by-the-forger'));
  expect(h.stored('shop/web-0').metadata?.annotations?.[annotations.status]).toBeUndefined();
  await h.reconcile('shop/web-0');
  expect(h.registrations(nonce)).toHaveLength(1);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', reason: 'CustomerNotEntitled' });
  expect(h.eventReasons()).toEqual(['UnverifiedVerdict', 'NotEntitled']);
});

it('onRevocation Evict: a refusal queues the pods entitled before it, each is marked revoked by its own pass, then evicted', async () => {
  const h = harness();
  h.product('refused', { onRevocation: 'Evict' });
  const before = h.clock.now() - 60_000;
  h.entitledPod('web-0', 'refused', before);
  h.entitledPod('web-1', 'refused', before);
  h.api.putPod(gatedPod('shop', 'web-2', 'refused'));
  await h.reconcile('shop/web-2');
  expect(h.requeued.sort()).toEqual(['shop/web-0', 'shop/web-1']);
  for (const key of h.requeued) await h.reconcile(key);
  expect(h.believed('shop/web-0')).toMatchObject({ status: 'NotEntitled', reason: 'CustomerNotEntitled' });
  h.api.evictionRefusal = 429; // web-0's budget says no: web-1 goes anyway
  await expect(h.reconcile('shop/web-0')).rejects.toThrow(/refused/);
  h.api.evictionRefusal = undefined;
  await h.reconcile('shop/web-1');
  expect(h.api.pods.has('shop/web-1')).toBe(false);
  expect(h.api.pods.has('shop/web-0')).toBe(true);
});

it('a result computed for a deleted pod never lands on its successor of the same name', async () => {
  const h = harness();
  h.product('app');
  h.api.putPod(gatedPod('shop', 'db-0', 'app'));
  // The successor is in the API server; the cache still shows the first pod.
  h.api.pods.set('shop/db-0', { ...gatedPod('shop', 'db-0', 'app', { uid: 'successor-uid' }), metadata: { ...gatedPod('shop', 'db-0', 'app', { uid: 'successor-uid' }).metadata, resourceVersion: '99' } });
  expect(await h.reconcile('shop/db-0')).toBeUndefined();
  expect(h.api.pods.get('shop/db-0')?.metadata?.annotations).toEqual({});
  expect(isGated(h.api.pods.get('shop/db-0') ?? {})).toBe(true);
});

it('leadership lost mid-registration: the AWS call is aborted, nothing is written', async () => {
  const h = harness();
  h.product('slow');
  h.api.putPod(gatedPod('shop', 'web-0', 'slow'));
  const leading = new AbortController();
  const running = h.reconcile('shop/web-0', leading.signal);
  await new Promise((resolve) => setTimeout(resolve, 300));
  leading.abort(new Error('leadership lost'));
  await expect(running).rejects.toThrow('leadership lost');
  expect(h.api.made('PATCH', /pods/)).toEqual([]);
  expect(h.eventReasons()).toEqual([]);
  expect(h.reports.registration('shop/slow')).toBeUndefined();
});
