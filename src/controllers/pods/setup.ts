// The pods controller: registers each labelled pod and records its verdict (reconciler.ts). It
// reconciles a pod when the pod changes, when its product changes in a way that can change a
// verdict (its generation, or its recheck annotation), and when the key ConfigMap its product
// names changes; a revocation queues the other pods it affects. How long pods wait at the gate
// is timed from the same watch (gate-waits.ts).
import { annotations, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { enqueueMapped, controllerManagedBy } from '../../runtime/builder.js';
import type { Controller, EventHandler, Source } from '../../runtime/controller.js';
import { objectKey, type Cache } from '../../runtime/informer.js';
import type { Manager } from '../../runtime/manager.js';
import type { CachedPod } from '../../verdicts/pod-cache.js';
import type { ControllerContext } from '../context.js';
import { Evictions } from './evictions.js';
import { GateWaits } from './gate-waits.js';
import { KeyConfigMaps } from './key-config-maps.js';
import { PodReconciler } from './reconciler.js';
import { Registrar } from './registration.js';

export function setupPods(manager: Manager, context: ControllerContext): Controller {
  const { settings, leaderClient, pods, products, events, metrics, log } = context;
  // The ConfigMaps products take their keys from, each watched on its own.
  const keyConfigMaps = new KeyConfigMaps(context.client, log);
  manager.add('caches', { name: 'key-configmaps', start: () => Promise.resolve(), stop: () => keyConfigMaps.stop() });
  const reconciler = new PodReconciler({
    client: leaderClient,
    pods,
    products,
    registrar: new Registrar(context.awsClients, keyConfigMaps.read, settings.clock),
    sealer: context.operatorKey,
    keyFingerprint: (product) => keyConfigMaps.fingerprint(product),
    evictions: new Evictions({ client: leaderClient, events, metrics, graceMs: settings.evictionGraceMs }),
    reports: context.reports,
    events,
    metrics,
    clock: settings.clock,
    maxRecheckMs: settings.recheckMaxIntervalMs,
    // Only ever called from a reconcile, so once the controller exists. A fan-out: low priority.
    requeue: (key) => {
      controller.enqueue(key, 'low');
    },
    log,
  });
  // On the caches, not through the controller: a record written while this replica leads must go
  // whenever its pod or product does.
  pods.onDelete((pod) => {
    reconciler.podDeleted(pod);
  });
  products.onDelete((product) => {
    reconciler.productDeleted(objectKey(product));
  });
  const gateWaits = new GateWaits((verdict, seconds) => {
    metrics.gateWait.observe({ verdict }, seconds);
  });
  metrics.watchGate(() => gateWaits.waiting());
  const controller = controllerManagedBy(manager)
    .named('pods')
    .for(pods)
    .watches(pods, gateWaits.handler())
    .watches(products, productChanges(pods, keyConfigMaps))
    .watches(keyChanges(keyConfigMaps), enqueueMapped((productKey) => podKeysOf(pods, productKey), { priority: 'low' }))
    .withOptions({ concurrency: settings.workers })
    .complete(reconciler);
  return controller;
}

/**
 * A new or changed product, or one asking for a check: its pods may be waiting for it
 * (ProductNotFound) or due for a check again (NotEntitled). Its key ConfigMap is watched while it
 * names one.
 */
function productChanges(pods: Cache<CachedPod>, keyConfigMaps: KeyConfigMaps): EventHandler<MarketplaceProduct> {
  const seen = new Map<string, string>();
  return {
    upsert: (product, queue) => {
      keyConfigMaps.track(product);
      const key = objectKey(product);
      const version = `${product.metadata.generation ?? 0}/${product.metadata.annotations?.[annotations.recheck] ?? ''}`;
      if (seen.get(key) === version) return;
      seen.set(key, version);
      // All its pods at once, behind the pods' own events: one product's checks must not hold
      // back another's new pods.
      for (const podKey of podKeysOf(pods, key)) queue.add(podKey, 'low');
    },
    delete: (product) => {
      seen.delete(objectKey(product));
      keyConfigMaps.untrack(objectKey(product));
    },
  };
}

/** The products whose key ConfigMap changed: their pods refused under the old key are checked again. */
function keyChanges(keyConfigMaps: KeyConfigMaps): Source<string> {
  return {
    onUpsert: (handler) => {
      keyConfigMaps.onChange((productKeys) => {
        for (const key of productKeys) handler(key);
      });
    },
  };
}

function podKeysOf(pods: Cache<CachedPod>, productKey: string): string[] {
  return pods.byIndex(productKey).map((pod) => objectKey(pod));
}
