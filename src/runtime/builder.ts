// Wires a controller into a manager, as controller-runtime's builder does:
//   controllerManagedBy(manager).named('pods').for(pods).watches(products, handler).withOptions({ concurrency: 32 }).complete(reconciler)
// `for` queues the key of each changed object; `watches` maps another source's events to keys.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Controller, type EventHandler, type Priority, type Reconciler, type Source } from './controller.js';
import { objectKey } from './informer.js';
import type { Manager } from './manager.js';

export function controllerManagedBy(manager: Manager): Builder {
  return new Builder(manager);
}

/**
 * A handler that queues the keys `map` gives, after `delayMs` (one reconcile for a burst of
 * events); with `deletes`, for deletions too; at `priority` (low for a fan-out to many keys, which
 * must not hold back the objects' own events).
 */
export function enqueueMapped<T>(map: (object: T) => Iterable<string>, options: { delayMs?: number; deletes?: boolean; priority?: Priority } = {}): EventHandler<T> {
  const enqueue: NonNullable<EventHandler<T>['upsert']> = (object, queue) => {
    for (const key of map(object)) {
      if (options.delayMs === undefined) queue.add(key, options.priority);
      else queue.addAfter(key, options.delayMs, options.priority);
    }
  };
  return { upsert: enqueue, ...(options.deletes ? { delete: enqueue } : {}) };
}

export class Builder {
  private name = '';
  private concurrency = 1;
  private readonly wiring: ((controller: Controller) => void)[] = [];

  constructor(private readonly manager: Manager) {}

  named(name: string): this {
    this.name = name;
    return this;
  }

  /** The objects the controller reconciles: each change queues the object's key (when `predicate` passes). */
  for<T extends KubernetesObject>(source: Source<T>, predicate: (object: T) => boolean = () => true): this {
    return this.watches(source, enqueueMapped((object) => (predicate(object) ? [objectKey(object)] : [])));
  }

  watches<T>(source: Source<T>, handler: EventHandler<T>): this {
    this.wiring.push((controller) => {
      controller.watch(source, handler);
    });
    return this;
  }

  withOptions(options: { concurrency: number }): this {
    this.concurrency = options.concurrency;
    return this;
  }

  complete(reconciler: Reconciler): Controller {
    if (!this.name) throw new Error('a controller needs a name (named())');
    const controller = new Controller(this.name, reconciler, { concurrency: this.concurrency, metrics: this.manager.controllerMetrics, log: this.manager.log });
    for (const watch of this.wiring) watch(controller);
    this.manager.addLeader(controller);
    return controller;
  }
}
