// The metering controller: hourly usage of each metered product (reconciler.ts). A product is
// reconciled when it changes, within statusIntervalMs of a change of its pods that can change its
// ledger (observed into it), and when its current hour closes (the reconciler's requeue). Deleted, it is reconciled
// once more and its ledger goes; on each start, the ledgers of products deleted while no leader
// ran go too.
import { productKeyOfPod } from '../../api/pod-state.js';
import { eksProbe } from '../../kube/cluster.js';
import { describeError } from '../../kube/errors.js';
import { controllerManagedBy, enqueueMapped } from '../../runtime/builder.js';
import type { Controller } from '../../runtime/controller.js';
import { objectKey } from '../../runtime/informer.js';
import type { Manager } from '../../runtime/manager.js';
import type { ControllerContext } from '../context.js';
import { LedgerStore } from './ledger-store.js';
import { meters } from './ledger.js';
import { MeteringReconciler } from './reconciler.js';

export function setupMetering(manager: Manager, context: ControllerContext): Controller {
  const { settings, products, pods, log } = context;
  const reconciler = new MeteringReconciler({
    products,
    pods,
    store: new LedgerStore(context.leaderClient, settings.namespace),
    clients: context.awsClients,
    reports: context.reports,
    events: context.events,
    metrics: context.metrics,
    clock: settings.clock,
    log,
    onEks: eksProbe(context.client),
  });
  // Only changes that can change the ledger: a pod that starts, not yet running, does not.
  const meteredProductOf = (pod: Parameters<typeof productKeyOfPod>[0]): string[] => {
    const key = productKeyOfPod(pod);
    return key && meters(products.get(key)) && reconciler.affects(key, pod) ? [key] : [];
  };
  const controller = controllerManagedBy(manager)
    .named('metering')
    .for(products, meters)
    .watches(pods, enqueueMapped(meteredProductOf, { delayMs: settings.statusIntervalMs, deletes: true }))
    // Deleted, a product is reconciled once more, and its ledger goes (in the queue: never beside a reconcile of it).
    .watches(products, {
      delete: (product, queue) => {
        queue.add(objectKey(product));
      },
    })
    .withOptions({ concurrency: 4 })
    .complete(reconciler);
  controller.onStart(() => {
    reconciler.collectOrphans().catch((error: unknown) => {
      log.warn('could not collect the usage ledgers of deleted products', { error: describeError(error) });
    });
  });
  return controller;
}
