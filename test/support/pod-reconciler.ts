// The pod reconciler constructed directly, for unit tests: an in-memory cache and API server,
// and the real Registrar and AWS SDK clients against the local fake AWS, wired as setupPods wires
// them (the caches' delete handlers tell it of deleted pods and products).
import type { V1Pod } from '@kubernetes/client-node';
import type { MarketplaceProduct, MarketplaceProductSpec } from '../../src/api/marketplace-product.js';
import { productKeyOfPod } from '../../src/api/pod-state.js';
import { Evictions } from '../../src/controllers/pods/evictions.js';
import { PodReconciler } from '../../src/controllers/pods/reconciler.js';
import { Registrar } from '../../src/controllers/pods/registration.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import type { ApiClient } from '../../src/kube/api.js';
import { kubeConfigMapReader } from '../../src/kube/config-maps.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { podCache, type CachedPod } from '../../src/verdicts/pod-cache.js';
import type { FakeAws } from '../fake-aws/server.js';
import { testClock } from './clock.js';
import { fakeProductClients } from './fake-aws.js';
import { MemoryApi, MemoryCache } from './memory.js';
import { testSealer } from './seals.js';

export interface PodReconcilerHarnessOptions<C extends ApiClient> {
  /** The client the reconciler writes through; by default the in-memory API server itself. */
  client?: (api: MemoryApi) => C;
}

export function podReconcilerHarness<C extends ApiClient = MemoryApi>(fake: FakeAws, options: PodReconcilerHarnessOptions<C> = {}) {
  const sealer = testSealer();
  const pods = new MemoryCache<V1Pod, CachedPod>({ transform: podCache(sealer), indexBy: productKeyOfPod });
  const products = new MemoryCache<MarketplaceProduct>();
  const api = new MemoryApi({ pods, products });
  const client = options.client ? options.client(api) : (api as unknown as C);
  const metrics = new Metrics();
  const log = createLogger({ level: 'error' });
  const clock = testClock();
  const events = new EventRecorder(api, { controller: 'test', instance: 'test-0' }, log);
  const reports = new ProductReports();
  const requeued: string[] = [];
  const deps: ConstructorParameters<typeof PodReconciler>[0] = {
    client,
    pods,
    products,
    registrar: new Registrar(fakeProductClients(fake, api, metrics), kubeConfigMapReader(api), clock),
    sealer,
    keyFingerprint: () => undefined,
    evictions: new Evictions({ client, events, metrics, graceMs: 60_000 }),
    reports,
    events,
    metrics,
    clock,
    maxRecheckMs: 15 * 60_000,
    requeue: (key) => requeued.push(key),
    log,
  };
  let reconciler = new PodReconciler(deps);
  pods.onDelete((pod) => {
    reconciler.podDeleted(pod);
  });
  products.onDelete((product) => {
    reconciler.productDeleted(`${product.metadata.namespace}/${product.metadata.name}`);
  });
  const product = (name: string, spec: Partial<MarketplaceProductSpec> = {}): MarketplaceProduct =>
    api.putProduct({
      apiVersion: 'marketplace.entitlements.io/v1alpha1',
      kind: 'MarketplaceProduct',
      metadata: { namespace: 'shop', name, uid: `${name}-uid`, generation: 1 },
      spec: { productCode: `${name}-code`, publicKeyVersion: 1, publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, ...spec },
    });
  const deleteProduct = (name: string): void => {
    api.products.delete(`shop/${name}`);
    products.remove(`shop/${name}`);
  };
  const signal = new AbortController().signal;
  return {
    api,
    client,
    pods,
    productCache: products,
    sealer,
    reports,
    metrics,
    clock,
    requeued,
    product,
    deleteProduct,
    get reconciler(): PodReconciler {
      return reconciler;
    },
    reconcile: (key: string, abort: AbortSignal = signal) => reconciler.reconcile(key, abort),
    /** A new process: the same cluster, key and AWS, nothing remembered. */
    restart: (): void => {
      reconciler = new PodReconciler(deps);
    },
  };
}
