// The products controller: writes each product's status (reconciler.ts). A product is reconciled
// when it changes, and within statusIntervalMs of a change of its pods or of what the other
// controllers report about it: one write however many pods changed.
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
    .for(products)
    .watches(pods, enqueueMapped(productOf, { delayMs, deletes: true }))
    .watches(reports, enqueueMapped((productKey: string) => [productKey], { delayMs }))
    .withOptions({ concurrency: 4 })
    .complete(new ProductStatusReconciler({ client: context.leaderClient, products, pods, reports, clock: settings.clock, log: context.log }));
}

function productOf(pod: Parameters<typeof productKeyOfPod>[0]): string[] {
  const key = productKeyOfPod(pod);
  return key ? [key] : [];
}
