// A product of 50,000 pods with 10% of them replaced every hour, over five accelerated hours:
// the metering reconciler as the operator builds it, its ledger in real ConfigMaps of a real API
// server (as the bundle's ServiceAccount, so its RBAC and the 1 MiB object limit hold) and
// MeterUsage through the real SDK to the fake AWS. The pods come from an in-memory cache, as the
// operator's informer would hand them over: 50,000 real pods (and their registrations) are more
// than this 2-core machine creates in a test's time. A failover reads the whole ledger back, and
// a spell of failing ledger writes holds the hours back, says so, and loses nothing.
import type { V1Pod } from '@kubernetes/client-node';
import { CoreV1Api, EventsV1Api } from '@kubernetes/client-node';
import { productLabel, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { productKeyOfPod } from '../../src/api/pod-state.js';
import type { Clock } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { LedgerStore } from '../../src/controllers/metering/ledger-store.js';
import { MeteringReconciler } from '../../src/controllers/metering/reconciler.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import { loadKubeClient, type KubeClient } from '../../src/kube/api.js';
import { eksProbe } from '../../src/kube/cluster.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { podCache, type CachedPod } from '../../src/verdicts/pod-cache.js';
import { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { fakeProductClients } from '../support/fake-aws.js';
import { FailingApi } from '../support/failing-api.js';
import { MemoryCache } from '../support/memory.js';
import { installBundle, serviceAccountKubeconfig } from '../support/operator.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const controlPlane = controlPlaneForSuite();
const pods = 50_000;
const churn = 5_000;
const hours = 5;
const h0 = Math.floor(Date.now() / hourMs);
// The operator's clock and the fake AWS's (its 6-hour window), moved by the test.
let now = h0 * hourMs + 60_000;
const clock: Clock = { now: () => now, realMsUntil: (t) => Math.max(0, t - now) };
const namespace = 'scale';
const log = createLogger({ level: 'error' });
const sealer = testSealer();

let fake: FakeAws;
let client: KubeClient;
let core: CoreV1Api;
beforeAll(async () => {
  const plane = controlPlane();
  await installBundle(plane);
  client = loadKubeClient(await serviceAccountKubeconfig(plane));
  core = plane.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  fake = await FakeAws.start({ clock });
}, 120_000);
afterAll(async () => {
  await client.close();
  await fake.close();
});

const podName = (i: number): string => `analytics-7c9d8f6b5d-${String(i).padStart(6, '0')}`;

function pod(i: number, registeredAt: number): V1Pod {
  const metadata = { namespace, name: podName(i), uid: `8f14e45f-ceea-467f-a0e6-${String(i).padStart(12, '0')}`, labels: { [productLabel]: 'app' } };
  const annotations = sealedAnnotations(sealer, { metadata }, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date(registeredAt).toISOString() });
  return { metadata: { ...metadata, annotations }, spec: { containers: [{ name: 'c', image: 'c', resources: { requests: { cpu: '500m', memory: '1Gi' } } }] }, status: { phase: 'Running' } };
}

it('50,000 pods, 10% replaced every hour: every hour reported with the right sums, a failover and failing ledger writes on the way', async () => {
  const podCacheOf = new MemoryCache<V1Pod, CachedPod>({ transform: podCache(sealer), indexBy: productKeyOfPod });
  const products = new MemoryCache<MarketplaceProduct>();
  products.set({
    apiVersion: 'marketplace.entitlements.io/v1alpha1',
    kind: 'MarketplaceProduct',
    metadata: { namespace, name: 'app', uid: 'c0ffee00-0000-4000-8000-000000050000', generation: 1 },
    spec: { productCode: 'scale-code', publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: 'Operator' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'memory', unit: 'MemoryGiB' }] } },
  });
  for (let i = 0; i < pods; i++) podCacheOf.set(pod(i, now));
  // The ledger's writes fail while `failing` is set (the API server refusing them, say).
  let failing = false;
  const api = new FailingApi(client, (method) => failing && method !== 'GET', 'HTTP 503: the API server is unavailable');
  const reports = new ProductReports();
  const metrics = new Metrics();
  const recorder = new EventRecorder(client, { controller: 'test', instance: 'scale-0' }, log);
  const deps = { products, pods: podCacheOf, clients: fakeProductClients(fake, client, metrics), reports, events: recorder, metrics, clock, log, onEks: eksProbe(client) };
  let reconciler = new MeteringReconciler({ ...deps, store: new LedgerStore(api, operatorNamespace) });
  const signal = new AbortController().signal;
  const reconcile = () => reconciler.reconcile(`${namespace}/app`, signal);

  let oldest = 0;
  let next = pods;
  for (let h = 0; h < hours; h++) {
    for (const minute of [1, 20, 40]) {
      now = (h0 + h) * hourMs + minute * 60_000;
      if (minute === 20) {
        // 10% of the pods go (counted for this hour: they were seen in it), as many new ones come.
        for (let i = oldest; i < oldest + churn; i++) podCacheOf.remove(`${namespace}/${podName(i)}`);
        for (let i = next; i < next + churn; i++) podCacheOf.set(pod(i, now));
        oldest += churn;
        next += churn;
      }
      if (h === 2 && minute === 20) {
        // A failover: a new leader, its own store, reads the whole ledger back.
        reconciler = new MeteringReconciler({ ...deps, store: new LedgerStore(api, operatorNamespace) });
      }
      if (h === 3 && minute === 1) {
        // Hour 2 closes while the ledger cannot be written: nothing is sent, and the status and an Event say why.
        failing = true;
        await expect(reconcile()).rejects.toThrow('HTTP 503');
        expect(reports.metering(`${namespace}/app`)?.condition.reason).toBe('LedgerWriteFailing');
        failing = false;
      }
      await reconcile();
    }
  }
  now = (h0 + hours) * hourMs + 60_000;
  await reconcile();

  expect(reports.metering(`${namespace}/app`)?.condition).toMatchObject({ status: 'True', reason: 'UsageReported' });
  // Every hour: the 50,000 seen at its start and the 5,000 that came, one record each of pods and GiB.
  for (let h = 0; h < hours; h++) {
    const records = fake.records().filter((r) => r.productCode === 'scale-code' && r.hour === (h0 + h) * hourMs);
    expect([h, records.map((r) => [r.dimension, r.quantity]).sort()]).toEqual([h, [['memory', pods + churn], ['pods', pods + churn]]]);
  }
  expect(fake.calls('MeterUsage').filter((c) => c.productCode === 'scale-code' && c.errorCode !== undefined)).toEqual([]);
  // The ledger's ConfigMaps: far below the 1 MiB object limit each, about a shard per 1,000 pods.
  const maps = (await core.listNamespacedConfigMap({ namespace: operatorNamespace, labelSelector: 'app.kubernetes.io/component in (usage-ledger,usage-ledger-shard)' })).items;
  const sizes = maps.map((m) => Object.values(m.data ?? {}).reduce((n, text) => n + text.length, 0));
  expect(Math.max(...sizes)).toBeLessThan(200 * 1024);
  expect(maps.length).toBeLessThanOrEqual(1 + Math.ceil((pods + churn) / 1_000) + 1);
  const events = (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace })).items.filter((e) => e.reason === 'MeteringFailed');
  expect(events.map((e) => e.note)).toEqual([expect.stringMatching(/the usage ledger cannot be written: .*HTTP 503/)]);
}, 600_000);
