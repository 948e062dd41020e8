// A controller from the builder: it handles events only while it runs, replays its caches when it
// starts, maps another source's events to keys, hands its reconciles the leader signal, and counts
// every reconcile by result.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { controllerManagedBy, enqueueMapped } from '../../src/runtime/builder.js';
import { Manager } from '../../src/runtime/manager.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { MemoryCache } from '../support/memory.js';

const configMap = (namespace: string, name: string, owner?: string): V1ConfigMap => ({ metadata: { namespace, name, ...(owner ? { labels: { owner } } : {}) } });

function setup() {
  const metrics = new Metrics();
  const manager = new Manager({ log: createLogger({ level: 'error' }), controllerMetrics: metrics });
  const owners = new MemoryCache<V1ConfigMap>();
  const owned = new MemoryCache<V1ConfigMap>();
  const seen: { key: string; signal: AbortSignal }[] = [];
  const controller = controllerManagedBy(manager)
    .named('owners')
    .for(owners, (object) => object.metadata?.name !== 'ignored')
    .watches(owned, enqueueMapped((object) => [`${object.metadata?.namespace ?? ''}/${object.metadata?.labels?.owner ?? ''}`], { deletes: true }))
    .withOptions({ concurrency: 2 })
    .complete({
      reconcile: (key, signal) => {
        seen.push({ key, signal });
        return key === 'ns/failing' ? Promise.reject(new Error('boom')) : Promise.resolve(undefined);
      },
    });
  return { manager, metrics, owners, owned, seen, controller };
}

it('handles nothing before it starts, replays its caches when it does, then follows events; the signal is the leader signal', async () => {
  const { manager, owners, owned, seen, controller } = setup();
  owners.set(configMap('ns', 'a'));
  owners.set(configMap('ns', 'ignored'));
  owned.set(configMap('ns', 'child', 'b'));
  await controller.idle();
  expect(seen).toEqual([]);

  await manager.start(new AbortController().signal);
  await controller.idle();
  expect(seen.map((s) => s.key).sort()).toEqual(['ns/a', 'ns/b']);
  expect(seen.every((s) => s.signal === manager.leaderSignal)).toBe(true);

  seen.length = 0;
  owned.remove('ns/child');
  owners.set(configMap('ns', 'c'));
  await controller.idle();
  expect(seen.map((s) => s.key).sort()).toEqual(['ns/b', 'ns/c']);

  await manager.stop();
  seen.length = 0;
  owners.set(configMap('ns', 'd'));
  await controller.idle();
  expect(seen).toEqual([]);
  expect(manager.leaderSignal.aborted).toBe(true);
});

it('counts reconciles by result, under its own name', async () => {
  const { manager, metrics, owners, controller } = setup();
  await manager.start(new AbortController().signal);
  owners.set(configMap('ns', 'fine'));
  owners.set(configMap('ns', 'failing'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/entitlement_reconciles_total\{controller="owners",result="success"\} 1/);
  expect(text).toMatch(/entitlement_reconciles_total\{controller="owners",result="error"\} [1-9]/);
  await manager.stop();
  await controller.idle();
});
