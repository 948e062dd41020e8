// The products controller: writes each product's status (reconciler.ts). A product is reconciled
// at once when its spec changes (a generation its status has not observed), and within
// statusIntervalMs of any other change of it (the echo of its own status write), of its pods or
// of what the other controllers report about it: one write a second at most however many pods
// change. (Reconciling at once on every change made each status write queue the next one: ten a
// second in a burst.)
import type { MarketplaceProduct } from '../../api/marketplace-product.js';
import { productKeyOfPod } from '../../api/pod-state.js';
import { controllerManagedBy, enqueueMapped } from '../../runtime/builder.js';
import type { Controller } from '../../runtime/controller.js';
import { objectKey } from '../../runtime/informer.js';
import type { Manager } from '../../runtime/manager.js';
import type { ControllerContext } from '../context.js';
import { ProductStatusReconciler } from './reconciler.js';

export function setupProducts(manager: Manager, context: ControllerContext): Controller {
  const { settings, products, pods, reports } = context;
  const delayMs = settings.statusIntervalMs;
  products.onDelete((product) => {
    reports.productDeleted(objectKey(product));
  });
  return controllerManagedBy(manager)
    .named('products')
    .for(products, (product) => product.status?.observedGeneration !== product.metadata.generation)
    .watches(products, enqueueMapped((product: MarketplaceProduct) => [objectKey(product)], { delayMs }))
    .watches(pods, enqueueMapped(productOf, { delayMs, deletes: true }))
    .watches(reports, enqueueMapped((productKey: string) => [productKey], { delayMs }))
    .withOptions({ concurrency: 4 })
    .complete(new ProductStatusReconciler({ client: context.leaderClient, products, pods, reports, clock: settings.clock, log: context.log }));
}

function productOf(pod: Parameters<typeof productKeyOfPod>[0]): string[] {
  const key = productKeyOfPod(pod);
  return key ? [key] : [];
}
