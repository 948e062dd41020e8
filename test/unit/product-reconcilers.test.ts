// The products (status) and metering reconcilers, constructed directly: in-memory caches and API
// server; metering's MeterUsage through the real SDK clients to the local fake AWS.
import type { V1Pod } from '@kubernetes/client-node';
import { productLabel, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { productKeyOfPod } from '../../src/api/pod-state.js';
import type { Clock } from '../../src/clock.js';
import { hourMs, hourStart } from '../../src/controllers/metering/ledger.js';
import { LedgerStore } from '../../src/controllers/metering/ledger-store.js';
import { clientToken, MeteringReconciler } from '../../src/controllers/metering/reconciler.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import { ProductStatusReconciler } from '../../src/controllers/products/reconciler.js';
import { createMeteringClient } from '../../src/aws/clients.js';
import { meterUsage } from '../../src/aws/metering-operations.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { podCache, type CachedPod } from '../../src/verdicts/pod-cache.js';
import { fakeAwsForSuite, fakeCredentials, fakeProductClients, fakeSettings } from '../support/fake-aws.js';
import { testClock } from '../support/clock.js';
import { MemoryApi, MemoryCache } from '../support/memory.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const fake = fakeAwsForSuite();
const log = createLogger({ level: 'error' });
const sealer = testSealer();
const signal = new AbortController().signal;

function world() {
  const pods = new MemoryCache<V1Pod, CachedPod>({ transform: podCache(sealer), indexBy: productKeyOfPod });
  const products = new MemoryCache<MarketplaceProduct>();
  const api = new MemoryApi({ pods, products });
  return { pods, products, api, reports: new ProductReports() };
}

function product(api: MemoryApi, name: string, metered = false): MarketplaceProduct {
  return api.putProduct({
    apiVersion: 'marketplace.entitlements.io/v1alpha1',
    kind: 'MarketplaceProduct',
    metadata: { namespace: 'shop', name, uid: `${name}-uid`, generation: 2 },
    spec: {
      productCode: `${name}-code`,
      publicKeyVersion: 1,
      publicKey: { pem: 'x' },
      identity: { mode: 'Operator' },
      ...(metered ? { metering: { dimensions: [{ name: 'pods', unit: 'Pod' as const }] } } : {}),
    },
  });
}

/** A pod with a sealed verdict, running. */
function pod(api: MemoryApi, name: string, productName: string, status: 'Entitled' | 'NotEntitled', registeredAt: Date): void {
  const metadata = { namespace: 'shop', name, uid: `${name}-uid`, labels: { [productLabel]: productName } };
  const annotations = sealedAnnotations(sealer, { metadata }, { status, reason: status === 'Entitled' ? 'SignatureVerified' : 'CustomerNotEntitled', registeredAt: registeredAt.toISOString() });
  api.putPod({ metadata: { ...metadata, annotations }, spec: { containers: [{ name: 'c', image: 'c' }], ...(status === 'NotEntitled' ? { schedulingGates: [{ name: 'marketplace.entitlements.io/entitlement' }] } : {}) }, status: { phase: 'Running' } });
}

describe('ProductStatusReconciler', () => {
  const clock: Clock = { now: () => Date.parse('2026-12-01T12:00:00Z'), realMsUntil: () => 0 };

  it('writes the counters and the Entitled condition through the status subresource, once; a conflict starts again from the newest version', async () => {
    const { pods, products, api, reports } = world();
    const reconciler = new ProductStatusReconciler({ client: api, products, pods, reports, clock, log });
    product(api, 'app');
    pod(api, 'a', 'app', 'Entitled', new Date('2026-12-01T11:00:00Z'));
    pod(api, 'b', 'app', 'NotEntitled', new Date('2026-12-01T11:00:00Z'));
    reports.reportRegistration('shop/app', { status: 'False', reason: 'CustomerNotEntitled', message: 'no subscription' });

    await reconciler.reconcile('shop/app');
    expect(api.made('PUT', /\/status$/)).toHaveLength(1);
    expect(api.products.get('shop/app')?.status).toMatchObject({
      observedGeneration: 2,
      entitledPods: 1,
      blockedPods: 1,
      pendingPods: 0,
      bypassedPods: 0,
      conditions: [{ type: 'Entitled', status: 'False', reason: 'CustomerNotEntitled' }],
    });
    await reconciler.reconcile('shop/app');
    expect(api.made('PUT', /\/status$/)).toHaveLength(1);

    // The cache lags behind a write someone else made: the PUT conflicts, the newest is read, written again.
    const cached = products.get('shop/app');
    api.putProduct({ ...(api.products.get('shop/app') as MarketplaceProduct), metadata: { ...(api.products.get('shop/app') as MarketplaceProduct).metadata, labels: { team: 'x' } } });
    if (cached) products.set(cached);
    reports.reportRegistration('shop/app', { status: 'True', reason: 'SignatureVerified', message: 'ok' });
    await reconciler.reconcile('shop/app');
    expect(api.made('GET', '/apis/marketplace.entitlements.io/v1alpha1/namespaces/shop/marketplaceproducts/app')).toHaveLength(1);
    expect(api.products.get('shop/app')?.status?.conditions?.[0]).toMatchObject({ status: 'True', reason: 'SignatureVerified' });
    expect(api.products.get('shop/app')?.metadata.labels).toEqual({ team: 'x' });
  });

  it('a product that is gone is nothing to do; its pods wait as ProductNotFound', async () => {
    const { pods, products, api, reports } = world();
    const reconciler = new ProductStatusReconciler({ client: api, products, pods, reports, clock, log });
    await reconciler.reconcile('shop/none');
    expect(api.requests).toEqual([]);
  });
});

describe('MeteringReconciler', () => {
  // Three hours ago by the real clock: the fake AWS, like AWS, takes usage of the last 6 hours only
  // (a fixed date passed only on the day it was written, before 18:00).
  const hour = Math.floor(Date.now() / hourMs) - 3;

  function metering(options: { eks?: boolean } = {}) {
    const w = world();
    const clock = testClock(hour * hourMs + 10 * 60_000);
    const metrics = new Metrics();
    const deps = {
      products: w.products,
      pods: w.pods,
      store: new LedgerStore(w.api, 'entitlement-operator-system'),
      clients: fakeProductClients(fake(), w.api, metrics),
      reports: w.reports,
      events: new EventRecorder(w.api, { controller: 'test', instance: 'test-0' }, log),
      metrics,
      clock,
      log,
      onEks: () => Promise.resolve(options.eks ?? false),
    };
    const reconciler = new MeteringReconciler(deps);
    return { ...w, reconciler, metrics, deps, advance: clock.advance };
  }

  it('observes pods into the ledger (written ahead), reports the hour once it closes, exactly once, and says so', async () => {
    const m = metering();
    product(m.api, 'metered', true);
    pod(m.api, 'a', 'metered', 'Entitled', new Date(hour * hourMs + 60_000));
    pod(m.api, 'b', 'metered', 'Entitled', new Date(hour * hourMs + 60_000));
    const first = await m.reconciler.reconcile('shop/metered', signal);
    expect(first?.requeueAfterMs).toBe(50 * 60_000 + 1_000); // at the hour's end
    expect([...m.api.configMaps.keys()].sort()).toEqual(['entitlement-operator-system/entitlement-usage-metered-uid', 'entitlement-operator-system/entitlement-usage-metered-uid-0']);
    expect(m.reports.metering('shop/metered')?.condition.reason).toBe('AwaitingFirstHour');

    m.advance(hourMs);
    await m.reconciler.reconcile('shop/metered', signal);
    const sent = fake().calls('MeterUsage', 'ok').filter((c) => c.productCode === 'metered-code');
    expect(sent.map((c) => [c.request.UsageDimension, c.request.UsageQuantity])).toEqual([['pods', 2]]);
    expect(m.reports.metering('shop/metered')).toMatchObject({ lastReportedHour: new Date(hour * hourMs).toISOString().replace('.000', ''), condition: { status: 'True', reason: 'UsageReported' } });

    await m.reconciler.reconcile('shop/metered', signal);
    expect(fake().calls('MeterUsage').filter((c) => c.productCode === 'metered-code')).toHaveLength(1);
  });

  it('a record AWS already holds with other parameters under its ClientToken (IdempotencyConflictException) is done: reported once, never resent, later hours not held back', async () => {
    const m = metering();
    product(m.api, 'conflicted', true);
    pod(m.api, 'a', 'conflicted', 'Entitled', new Date(hour * hourMs + 60_000));
    await m.reconciler.reconcile('shop/conflicted', signal);
    // What was sent for the hour under the same token before, with another quantity (an earlier release, a changed ledger).
    const token = clientToken('shared:conflicted-code', { hour, dimension: 'pods', quantity: 1, caller: { kind: 'operator' } });
    await meterUsage(createMeteringClient(fakeSettings(fake()), fakeCredentials), { productCode: 'conflicted-code', timestamp: hourStart(hour), usageDimension: 'pods', usageQuantity: 7, clientToken: token });

    m.advance(hourMs);
    await m.reconciler.reconcile('shop/conflicted', signal);
    const calls = () => fake().calls('MeterUsage').filter((c) => c.productCode === 'conflicted-code');
    expect(calls().map((c) => [c.request.UsageQuantity, c.errorCode])).toEqual([[7, undefined], [1, 'IdempotencyConflictException']]);
    expect(m.reports.metering('shop/conflicted')).toMatchObject({ lastReportedHour: hourStart(hour).toISOString().replace('.000', ''), condition: { reason: 'UsageReported' } });
    const conflictEvents = () => m.api.made('POST', /\/events$/).filter((body) => JSON.stringify(body).includes('UsageConflict'));
    expect(conflictEvents()).toHaveLength(1);
    expect(JSON.stringify(conflictEvents()[0])).toContain('IdempotencyConflictException');
    expect((await m.metrics.meteringRecords.get()).values.find((v) => v.labels.outcome === 'conflict')?.value).toBe(1);

    await m.reconciler.reconcile('shop/conflicted', signal);
    m.advance(hourMs);
    await m.reconciler.reconcile('shop/conflicted', signal);
    expect(calls().map((c) => [c.request.UsageQuantity, c.errorCode])).toEqual([[7, undefined], [1, 'IdempotencyConflictException'], [1, undefined]]);
    expect(conflictEvents()).toHaveLength(1);
  });

  it('leadership lost while an hour is being reported: the reconcile gives up, no ReportFailing, no Event', async () => {
    const m = metering();
    fake().setBehaviour('slowmeter-code', { delayMs: 1_000 });
    product(m.api, 'slowmeter', true);
    pod(m.api, 'a', 'slowmeter', 'Entitled', new Date(hour * hourMs + 60_000));
    await m.reconciler.reconcile('shop/slowmeter', signal);
    m.advance(hourMs);
    const leading = new AbortController();
    const reporting = m.reconciler.reconcile('shop/slowmeter', leading.signal);
    await new Promise((resolve) => setTimeout(resolve, 200));
    leading.abort(new Error('leadership lost'));
    await expect(reporting).rejects.toThrow('leadership lost');
    expect(m.reports.metering('shop/slowmeter')?.condition.reason).toBe('AwaitingFirstHour');
    expect(m.api.made('POST', /\/events$/)).toEqual([]);
  });

  /** An Operator-mode product of product code `shared-code` in its own namespace, with `pods` running pods. */
  function team(m: ReturnType<typeof metering>, namespace: string, pods: number, spec: Partial<MarketplaceProduct['spec']> = {}): MarketplaceProduct {
    const made = m.api.putProduct({
      apiVersion: 'marketplace.entitlements.io/v1alpha1',
      kind: 'MarketplaceProduct',
      metadata: { namespace, name: 'app', uid: `${namespace}-app-uid`, generation: 1 },
      spec: { productCode: 'shared-code', publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: 'Operator' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] }, ...spec },
    });
    for (let i = 0; i < pods; i++) {
      const metadata = { namespace, name: `app-${i}`, uid: `${namespace}-app-${i}-uid`, labels: { [productLabel]: 'app' } };
      const annotations = sealedAnnotations(sealer, { metadata }, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date(hour * hourMs + 60_000).toISOString() });
      m.api.putPod({ metadata: { ...metadata, annotations }, spec: { containers: [{ name: 'c', image: 'c' }] }, status: { phase: 'Running' } });
    }
    return made;
  }

  it('products of one product code in two namespaces (Operator mode): one record per hour, their sum, with each one\'s part; both report the hour', async () => {
    const m = metering();
    team(m, 'team-a', 2);
    team(m, 'team-b', 3);
    for (const key of ['team-a/app', 'team-b/app']) await m.reconciler.reconcile(key, signal);
    m.advance(hourMs);
    // team-b is not the hour's reporter (team-a is, the first by name): it waits for team-a.
    expect(await m.reconciler.reconcile('team-b/app', signal)).toEqual({ requeueAfterMs: 2_000 });
    expect(fake().calls('MeterUsage').filter((c) => c.productCode === 'shared-code')).toEqual([]);
    await m.reconciler.reconcile('team-a/app', signal);
    await m.reconciler.reconcile('team-b/app', signal);
    const records = fake().records().filter((r) => r.productCode === 'shared-code');
    expect(records.map((r) => [r.dimension, r.hour, r.quantity, r.allocations])).toEqual([
      ['pods', hour * hourMs, 5, [{ quantity: 2, tags: ['namespace=team-a', 'product=app'] }, { quantity: 3, tags: ['namespace=team-b', 'product=app'] }]],
    ]);
    expect(fake().calls('MeterUsage').filter((c) => c.productCode === 'shared-code')).toHaveLength(1);
    for (const key of ['team-a/app', 'team-b/app']) {
      expect(m.reports.metering(key)).toMatchObject({ lastReportedHour: hourStart(hour).toISOString().replace('.000', ''), condition: { reason: 'UsageReported' } });
    }
  });

  it('a product of a shared code still to close the hour holds the record back: the sum is sent once, with it', async () => {
    const m = metering();
    team(m, 'team-a', 1, { productCode: 'held-code' });
    team(m, 'team-b', 1, { productCode: 'held-code' });
    for (const key of ['team-a/app', 'team-b/app']) await m.reconciler.reconcile(key, signal);
    m.advance(hourMs);
    expect(await m.reconciler.reconcile('team-a/app', signal)).toEqual({ requeueAfterMs: 2_000 });
    // A minute past the hour and still waiting: the status says for whom.
    m.advance(2 * 60_000);
    await m.reconciler.reconcile('team-a/app', signal);
    expect(m.reports.metering('team-a/app')?.condition).toMatchObject({ status: 'Unknown', reason: 'AwaitingSharedReport', message: expect.stringContaining('team-b/app') as string });
    await m.reconciler.reconcile('team-b/app', signal);
    await m.reconciler.reconcile('team-a/app', signal);
    await m.reconciler.reconcile('team-b/app', signal);
    expect(fake().records().filter((r) => r.productCode === 'held-code').map((r) => r.quantity)).toEqual([2]);
  });

  it('a closed hour resent after a spec change and a failover is the same request', async () => {
    const m = metering();
    team(m, 'solo', 2, { productCode: 'resent-code', metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }] } });
    await m.reconciler.reconcile('solo/app', signal);
    m.advance(hourMs);
    fake().setBehaviour('resent-code', { delayMs: 500 });
    const leading = new AbortController();
    const reporting = m.reconciler.reconcile('solo/app', leading.signal);
    await new Promise((resolve) => setTimeout(resolve, 200));
    leading.abort(new Error('leadership lost'));
    await expect(reporting).rejects.toThrow('leadership lost');
    await new Promise((resolve) => setTimeout(resolve, 500)); // AWS got the records meanwhile
    fake().setBehaviour('resent-code', {});
    // The spec changes (another code, another unit), and a new leader with its own store takes over.
    const product = m.api.products.get('solo/app') as MarketplaceProduct;
    m.api.putProduct({ ...product, spec: { ...product.spec, productCode: 'changed-code', metering: { dimensions: [{ name: 'pods', unit: 'MemoryGiB' }] } } });
    const successor = new MeteringReconciler({ ...m.deps, store: new LedgerStore(m.api, 'entitlement-operator-system') });
    await successor.reconcile('solo/app', signal);
    const calls = fake().calls('MeterUsage').filter((c) => c.productCode === 'resent-code');
    expect(calls.map((c) => [c.request.UsageDimension, c.errorCode])).toEqual([['pods', undefined], ['cores', undefined], ['pods', undefined], ['cores', undefined]]);
    expect(calls[2]?.request).toEqual(calls[0]?.request);
    expect(calls[3]?.request).toEqual(calls[1]?.request);
    expect(fake().calls('MeterUsage').filter((c) => c.productCode === 'changed-code')).toEqual([]);
    expect(m.reports.metering('solo/app')?.condition.reason).toBe('UsageReported');
  });

  it('on EKS an Operator-mode product is told, once, that AWS takes its usage only signed with the pod\'s IRSA credentials', async () => {
    const m = metering({ eks: true });
    team(m, 'eks-a', 1, { productCode: 'eks-code' });
    team(m, 'eks-b', 0, { productCode: 'eks-pod-code', identity: { mode: 'Pod' } });
    for (const key of ['eks-a/app', 'eks-a/app', 'eks-b/app']) await m.reconciler.reconcile(key, signal);
    const warnings = m.api.made('POST', /\/events$/).filter((r) => JSON.stringify(r.body).includes('IdentityNotAccepted'));
    expect(warnings.map((r) => (r.body as { regarding?: { namespace?: string } }).regarding?.namespace)).toEqual(['eks-a']);
    expect(JSON.stringify(warnings[0]?.body)).toContain('identity.mode: Pod');
    // Elsewhere, nothing.
    const plain = metering();
    team(plain, 'plain', 1, { productCode: 'plain-code' });
    await plain.reconciler.reconcile('plain/app', signal);
    expect(plain.api.made('POST', /\/events$/)).toEqual([]);
  });

  it('a product without dimensions is not metered; a deleted one takes its ledger with it', async () => {
    const m = metering();
    product(m.api, 'plain');
    expect(await m.reconciler.reconcile('shop/plain', signal)).toBeUndefined();
    expect(m.api.configMaps.size).toBe(0);

    const metered = product(m.api, 'gone', true);
    await m.reconciler.reconcile('shop/gone', signal);
    expect([...m.api.configMaps.keys()]).toEqual(['entitlement-operator-system/entitlement-usage-gone-uid']);
    // Made again under its name (a new uid): the old ledger goes, the new one comes.
    m.api.putProduct({ ...metered, metadata: { ...metered.metadata, uid: 'gone-again-uid' } });
    await m.reconciler.reconcile('shop/gone', signal);
    expect([...m.api.configMaps.keys()]).toEqual(['entitlement-operator-system/entitlement-usage-gone-again-uid']);
    // Deleted: reconciled once more (the queue has its key), and its ledger goes.
    m.products.remove('shop/gone');
    expect(await m.reconciler.reconcile('shop/gone', signal)).toBeUndefined();
    expect(m.api.configMaps.size).toBe(0);
  });
});
