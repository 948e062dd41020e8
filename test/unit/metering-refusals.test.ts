// Pod-mode records refused for a pod's own reason: which are given up and when, what holds the
// hour, and what the product then shows. AWS and the identities are a stub of ProductClients here
// (each pod's answer chosen by the test); the ledger store is over MemoryApi.
import type { V1Pod } from '@kubernetes/client-node';
import { productLabel, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { productKeyOfPod } from '../../src/api/pod-state.js';
import { IdentityUnavailableError, type PodRef } from '../../src/aws/pod-identity.js';
import type { ProductClients } from '../../src/aws/product-clients.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { LedgerStore } from '../../src/controllers/metering/ledger-store.js';
import { MeteringReconciler } from '../../src/controllers/metering/reconciler.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { podCache, type CachedPod } from '../../src/verdicts/pod-cache.js';
import { testClock } from '../support/clock.js';
import { MemoryApi, MemoryCache } from '../support/memory.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const log = createLogger({ level: 'error' });
const sealer = testSealer();
const signal = new AbortController().signal;
const hour = Math.floor(Date.now() / hourMs) - 4;
const iso = (h: number): string => new Date(h * hourMs).toISOString().replace('.000Z', 'Z');

/** How the stub answers a pod's MeterUsage: accepted, or with this error. */
type Answer = (pod: PodRef) => Error | undefined;

function metering(podNames: string[], answer: Answer) {
  const pods = new MemoryCache<V1Pod, CachedPod>({ transform: podCache(sealer), indexBy: productKeyOfPod });
  const products = new MemoryCache<MarketplaceProduct>();
  const api = new MemoryApi({ pods, products });
  const clock = testClock(hour * hourMs + 10 * 60_000);
  const sent: string[] = [];
  const clients = {
    run: <T>(_product: MarketplaceProduct, pod: PodRef): Promise<T> => {
      const error = answer(pod);
      if (error) return Promise.reject(error);
      sent.push(pod.name);
      return Promise.resolve(undefined as T);
    },
  } as unknown as ProductClients;
  const reports = new ProductReports();
  const reconciler = new MeteringReconciler({
    products,
    pods,
    store: new LedgerStore(api, 'entitlement-operator-system'),
    clients,
    reports,
    events: new EventRecorder(api, { controller: 'test', instance: 'test-0' }, log),
    metrics: new Metrics(),
    clock,
    log,
    onEks: () => Promise.resolve(true),
  });
  api.putProduct({
    apiVersion: 'marketplace.entitlements.io/v1alpha1',
    kind: 'MarketplaceProduct',
    metadata: { namespace: 'shop', name: 'app', uid: 'app-uid', generation: 1 },
    spec: { productCode: 'app-code', publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: 'Pod' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } },
  });
  for (const name of podNames) {
    const metadata = { namespace: 'shop', name, uid: `${name}-uid`, labels: { [productLabel]: 'app' } };
    const annotations = sealedAnnotations(sealer, { metadata }, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date(hour * hourMs + 60_000).toISOString() });
    api.putPod({ metadata: { ...metadata, annotations }, spec: { serviceAccountName: 'app', containers: [{ name: 'c', image: 'c' }] }, status: { phase: 'Running' } });
  }
  const reconcile = () => reconciler.reconcile('shop/app', signal);
  const report = () => reports.metering('shop/app');
  const condition = () => report()?.condition;
  const rejectedEvents = () => api.made('POST', /\/events$/).filter((r) => (r.body as { reason: string }).reason === 'UsageRejected');
  return { reconcile, report, condition, rejectedEvents, sent, advance: clock.advance };
}

it('a pod whose identity is gone is given up at once, and stays given up when the hour is retried for another pod', async () => {
  let bFails = true;
  let aGone = true;
  const m = metering(['a', 'b'], (pod) => {
    if (pod.name === 'a' && aGone) return new IdentityUnavailableError('cannot read ServiceAccount shop/app: not found', 404);
    if (pod.name === 'b' && bFails) return new Error('socket hang up');
    return undefined;
  });
  await m.reconcile();
  m.advance(hourMs);
  await m.reconcile();
  expect(m.condition()).toMatchObject({ reason: 'ReportFailing' });
  bFails = false;
  await m.reconcile();
  expect(m.sent).toEqual(['b']);
  expect(m.condition()).toMatchObject({ status: 'False', reason: 'UsageRejected' });
  expect(m.rejectedEvents()).toHaveLength(1);
  expect(JSON.stringify(m.rejectedEvents()[0]?.body)).toContain('1 record of hour');
  // The next hour goes out whole; what was given up is shown for the six hours after it, then no more.
  aGone = false;
  m.advance(hourMs);
  await m.reconcile();
  expect(m.sent).toEqual(['b', 'a', 'b']);
  expect(m.condition()).toMatchObject({ reason: 'UsageRejected' });
  m.advance(5 * hourMs);
  await m.reconcile();
  expect(m.condition()).toMatchObject({ status: 'True', reason: 'UsageReported' });
});

it('no identity for a reason someone may mend (the limits refuse an ended pod a token) holds the hour for two hours past its end, then is given up', async () => {
  const m = metering(['a', 'b'], (pod) => (pod.name === 'a' ? new IdentityUnavailableError('the operator may request a token bound to no pod ... only in a namespace labelled marketplace.entitlements.io/meter-ended-pods=true', 422) : undefined));
  await m.reconcile();
  m.advance(hourMs);
  await m.reconcile();
  expect(m.sent).toEqual(['b']);
  expect(m.report()).toMatchObject({ condition: { reason: 'ReportFailing' } });
  expect(m.report()?.lastReportedHour).toBeUndefined();
  m.advance(2 * hourMs);
  await m.reconcile();
  // The hour went out without a's record; the next is held for a, as the first was.
  expect(m.report()).toMatchObject({ lastReportedHour: iso(hour), lostHours: [], condition: { reason: 'ReportFailing' } });
  expect(m.rejectedEvents()).toHaveLength(1);
  expect(JSON.stringify(m.rejectedEvents()[0]?.body)).toContain('meter-ended-pods=true');
  expect(m.sent.every((name) => name === 'b')).toBe(true);
});

it("an hour whose every record is refused is held for two hours past its end (more likely the product's trouble), then given up, so the hours after it go out in AWS's window", async () => {
  const m = metering(['a'], () => new IdentityUnavailableError('cannot read ServiceAccount shop/app: not found', 404));
  await m.reconcile();
  m.advance(hourMs);
  await m.reconcile();
  expect(m.report()).toMatchObject({ condition: { reason: 'ReportFailing', message: expect.stringContaining('every record was refused') as string } });
  expect(m.rejectedEvents()).toHaveLength(0);
  m.advance(2 * hourMs);
  await m.reconcile();
  expect(m.report()).toMatchObject({ lastReportedHour: iso(hour), lostHours: [] });
  expect(m.rejectedEvents()).toHaveLength(1);
  m.advance(2 * hourMs);
  await m.reconcile();
  expect(m.report()).toMatchObject({ lastReportedHour: iso(hour + 2), lostHours: [] });
  expect(m.sent).toEqual([]);
});
