// What the controllers report about a product is kept only while the product exists: a report
// that comes in after the product's delete handler ran (a registration AWS answered meanwhile)
// queues the product's reconcile, which finds it gone and drops the report.
import type { V1Pod } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { ProductReports } from '../../src/controllers/product-reports.js';
import { ProductStatusReconciler } from '../../src/controllers/products/reconciler.js';
import { createLogger } from '../../src/observability/logger.js';
import { MemoryApi, MemoryCache } from '../support/memory.js';

it("a report about a deleted product is dropped by the product's reconcile it queues", async () => {
  const products = new MemoryCache<MarketplaceProduct>();
  const pods = new MemoryCache<V1Pod>();
  const reports = new ProductReports();
  const queued: string[] = [];
  reports.onUpsert((key) => queued.push(key));
  products.onDelete((product) => {
    reports.productDeleted(`${product.metadata.namespace}/${product.metadata.name}`);
  });
  const api = new MemoryApi({ pods, products });
  api.putProduct({ apiVersion: 'marketplace.entitlements.io/v1alpha1', kind: 'MarketplaceProduct', metadata: { namespace: 'shop', name: 'app', uid: 'app-uid', generation: 1 }, spec: { productCode: 'app-code', publicKeyVersion: 1, publicKey: { pem: 'x' } } });
  products.remove('shop/app');
  reports.reportRegistration('shop/app', { status: 'True', reason: 'SignatureVerified', message: 'verified', registeredAt: new Date().toISOString() });
  reports.reportMetering('shop/app', { lostHours: [], condition: { status: 'True', reason: 'Reported', message: 'reported' } });
  expect(queued).toEqual(['shop/app', 'shop/app']);

  const reconciler = new ProductStatusReconciler({ client: api, products, pods, reports, clock: { now: () => Date.now(), realMsUntil: () => 0 }, log: createLogger({ level: 'error' }) });
  await reconciler.reconcile('shop/app');
  expect([reports.registration('shop/app'), reports.metering('shop/app')]).toEqual([undefined, undefined]);
  expect(api.requests).toEqual([]);
});
