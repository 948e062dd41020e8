// What the metering reconciler holds in memory for each product (failed tries, records accepted
// of hours in progress, warnings given, the ledger as last written) goes once the product stops
// being metered or is deleted, so it stays bounded by the products metered now; a product metered
// again starts afresh. And which changes of a product's pods it is woken for: those that can
// change the ledger, not every step of a pod that starts. A real fake AWS (its wire protocol
// through the SDK) and the ledger store over MemoryApi.
import type { V1Pod } from '@kubernetes/client-node';
import { productLabel, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { productKeyOfPod } from '../../src/api/pod-state.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { LedgerStore } from '../../src/controllers/metering/ledger-store.js';
import { MeteringReconciler } from '../../src/controllers/metering/reconciler.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { podCache, type CachedPod } from '../../src/verdicts/pod-cache.js';
import { fakeAwsForSuite, fakeProductClients } from '../support/fake-aws.js';
import { testClock } from '../support/clock.js';
import { MemoryApi, MemoryCache } from '../support/memory.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const fake = fakeAwsForSuite();
const log = createLogger({ level: 'error' });
const sealer = testSealer();
const signal = new AbortController().signal;
// Within the fake's 6-hour window, as AWS's.
const hour = Math.floor(Date.now() / hourMs) - 4;
const code = 'memory-code';

function metering() {
  const pods = new MemoryCache<V1Pod, CachedPod>({ transform: podCache(sealer), indexBy: productKeyOfPod });
  const products = new MemoryCache<MarketplaceProduct>();
  const api = new MemoryApi({ pods, products });
  const clock = testClock(hour * hourMs + 10 * 60_000);
  const metrics = new Metrics();
  const store = new LedgerStore(api, 'entitlement-operator-system');
  const reconciler = new MeteringReconciler({
    products,
    pods,
    store,
    clients: fakeProductClients(fake(), api, metrics),
    reports: new ProductReports(),
    events: new EventRecorder(api, { controller: 'test', instance: 'test-0' }, log),
    metrics,
    clock,
    log,
    onEks: () => Promise.resolve(true),
  });
  const put = (metered: boolean): MarketplaceProduct =>
    api.putProduct({
      apiVersion: 'marketplace.entitlements.io/v1alpha1',
      kind: 'MarketplaceProduct',
      metadata: { namespace: 'shop', name: 'app', uid: 'app-uid', generation: 2 },
      spec: { productCode: code, publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: 'Operator' }, ...(metered ? { metering: { dimensions: [{ name: 'pods', unit: 'Pod' as const }] } } : {}) },
    });
  const metadata = { namespace: 'shop', name: 'a', uid: 'a-uid', labels: { [productLabel]: 'app' } };
  const annotations = sealedAnnotations(sealer, { metadata }, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date(hour * hourMs + 60_000).toISOString() });
  api.putPod({ metadata: { ...metadata, annotations }, spec: { containers: [{ name: 'c', image: 'c' }] }, status: { phase: 'Running' } });
  return { api, pods, products, reconciler, put, advance: clock.advance };
}

describe('what the metering reconciler holds in memory', () => {
  afterEach(() => {
    fake().setBehaviour(code, {});
  });

  it('a product no longer metered leaves nothing behind but the key of the ledger to delete with it; metered again, a failing hour backs off from the first retry', async () => {
    const m = metering();
    m.put(true);
    await m.reconciler.reconcile('shop/app', signal);
    m.advance(hourMs);
    fake().setBehaviour(code, { serverErrorShare: 1 });
    expect((await m.reconciler.reconcile('shop/app', signal))?.requeueAfterMs).toBe(30_000);
    expect((await m.reconciler.reconcile('shop/app', signal))?.requeueAfterMs).toBe(60_000);
    expect(m.reconciler.held()).toEqual({ products: 1, failing: 1, warned: 1, hoursInProgress: 1, ledgers: 1 });

    m.put(false);
    await m.reconciler.reconcile('shop/app', signal);
    expect(m.reconciler.held()).toEqual({ products: 1, failing: 0, warned: 0, hoursInProgress: 0, ledgers: 0 });

    // Metered again: the hour still failing is retried 30 s on, as any first failure.
    m.put(true);
    expect((await m.reconciler.reconcile('shop/app', signal))?.requeueAfterMs).toBe(30_000);
    expect(m.reconciler.held()).toMatchObject({ failing: 1, hoursInProgress: 1, ledgers: 1 });

    m.products.remove('shop/app');
    await m.reconciler.reconcile('shop/app', signal);
    expect(m.reconciler.held()).toEqual({ products: 0, failing: 0, warned: 0, hoursInProgress: 0, ledgers: 0 });
    expect([...m.api.configMaps.keys()]).toEqual([]);
  });

  it('an hour reported leaves no record of its accepted records behind', async () => {
    const m = metering();
    m.put(true);
    await m.reconciler.reconcile('shop/app', signal);
    for (let h = 0; h < 3; h++) {
      m.advance(hourMs);
      await m.reconciler.reconcile('shop/app', signal);
    }
    expect(fake().calls('MeterUsage', 'ok').filter((c) => c.productCode === code)).toHaveLength(3);
    expect(m.reconciler.held()).toEqual({ products: 1, failing: 0, warned: 1, hoursInProgress: 0, ledgers: 1 });
  });

  it('is woken by the pod changes that can change the ledger: a pod that counts, or that the ledger holds counting; not the steps of a pod that starts', async () => {
    const m = metering();
    m.put(true);
    const starting = { metadata: { namespace: 'shop', name: 'b', uid: 'b-uid', labels: { [productLabel]: 'app' } }, spec: { containers: [{ name: 'c', image: 'c' }] } };
    // No ledger held yet: it cannot tell, so it looks.
    expect(m.reconciler.affects('shop/app', starting)).toBe(true);
    await m.reconciler.reconcile('shop/app', signal);
    expect(m.reconciler.affects('shop/app', starting)).toBe(false);
    const running = m.pods.get('shop/a');
    if (!running) throw new Error('no pod a');
    expect(m.reconciler.affects('shop/app', running)).toBe(true);
    // Pod a, counted in the ledger, finishes: its range ends.
    expect(m.reconciler.affects('shop/app', { ...running, status: { phase: 'Succeeded' } })).toBe(true);
  });
});
