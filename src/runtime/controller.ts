// A controller as controller-runtime's (pkg/internal/controller): one reconciler, the queue its
// keys wait in, its workers, its metrics and one rule for errors. It handles events only while it
// runs (in a leader-elected manager: while this replica leads); when it starts, it replays the
// caches it watches, so an object seen before it led is reconciled once it does. Reconciles get
// the signal of its run: when leadership is lost it aborts, and whatever a reconcile still has in
// flight gives up.
import type { Logger } from '../observability/logger.js';
import { describeError } from '../kube/errors.js';
import { RetryLater, WorkQueue, type Priority, type Result } from './workqueue.js';

export type { Priority, Result } from './workqueue.js';

export interface Reconciler {
  reconcile(key: string, signal: AbortSignal): Promise<Result | undefined>;
}

/** Where the events of a watch come from: an informer, or a channel such as product-reports.ts. */
export interface Source<T> {
  onUpsert(handler: (object: T) => void): void;
  onDelete?(handler: (object: T) => void): void;
  /** What the source holds now, replayed when the controller starts; a channel has nothing. */
  list?(): readonly T[];
}

export interface Queue {
  add(key: string, priority?: Priority): void;
  addAfter(key: string, delayMs: number, priority?: Priority): void;
}

/** What a watch does with an event (controller-runtime's handler.Funcs). */
export interface EventHandler<T> {
  upsert?(object: T, queue: Queue): void;
  delete?(object: T, queue: Queue): void;
}

/** The metrics every controller keeps, labelled with its name (prom-client's types fit). */
export interface ControllerMetrics {
  queueDepth: { set(labels: { controller: string }, value: number): void };
  reconciles: { inc(labels: { controller: string; result: string }): void };
  reconcileDuration: { observe(labels: { controller: string }, value: number): void };
}

export interface ControllerOptions {
  concurrency: number;
  metrics: ControllerMetrics;
  log: Logger;
}

export class Controller {
  private readonly queue: WorkQueue;
  private readonly replays: (() => void)[] = [];
  private readonly startHooks: ((signal: AbortSignal) => void)[] = [];
  private running = false;
  private signal: AbortSignal = AbortSignal.abort();

  constructor(
    readonly name: string,
    reconciler: Reconciler,
    options: ControllerOptions,
  ) {
    const { metrics, log } = options;
    this.queue = new WorkQueue((key) => reconciler.reconcile(key, this.signal), {
      concurrency: options.concurrency,
      ratePerSecond: 200,
      burst: 400,
      onDepth: (depth) => {
        metrics.queueDepth.set({ controller: name }, depth);
      },
      onResult: (result, seconds, error) => {
        metrics.reconciles.inc({ controller: name, result });
        metrics.reconcileDuration.observe({ controller: name }, seconds);
        // The one error rule: expected failures (RetryLater) and work aborted with its run are retried or dropped quietly.
        if (error instanceof Error && !(error instanceof RetryLater) && !this.signal.aborted) log.warn('reconcile failed', { controller: name, error: describeError(error) });
      },
    });
  }

  /** Events of `source` reach `handler` while the controller runs. */
  watch<T>(source: Source<T>, handler: EventHandler<T>): void {
    if (handler.upsert) {
      const upsert = handler.upsert.bind(handler);
      source.onUpsert((object) => {
        if (this.running) upsert(object, this.queue);
      });
      if (source.list) {
        // The replay when leadership starts queues everything known at low priority: an event
        // after it (a pod created or changed) goes before thousands of pods already running.
        // Pods that came while no replica led are in the replay, among the rest.
        const low: Queue = {
          add: (key) => {
            this.queue.add(key, 'low');
          },
          addAfter: (key, delayMs) => {
            this.queue.addAfter(key, delayMs, 'low');
          },
        };
        this.replays.push(() => {
          for (const object of source.list?.() ?? []) upsert(object, low);
        });
      }
    }
    if (handler.delete && source.onDelete) {
      const remove = handler.delete.bind(handler);
      source.onDelete((object) => {
        if (this.running) remove(object, this.queue);
      });
    }
  }

  /** Queues a key (a reconciler asking for another object's reconcile); ignored unless running. */
  enqueue(key: string, priority?: Priority): void {
    if (this.running) this.queue.add(key, priority);
  }

  /** Work to do each time the controller starts, before the replay (a sweep of what no event will bring). */
  onStart(hook: (signal: AbortSignal) => void): void {
    this.startHooks.push(hook);
  }

  start(signal: AbortSignal): void {
    if (this.running || signal.aborted) return;
    this.signal = signal;
    this.running = true;
    for (const hook of this.startHooks) hook(signal);
    for (const replay of this.replays) replay();
  }

  /** Closes the queue and waits up to graceMs for running reconciles; resolves to how many were left running. */
  async stop(graceMs: number): Promise<number> {
    this.running = false;
    return this.queue.shutdown(graceMs);
  }

  /** Resolves when nothing is queued or running (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }
}
