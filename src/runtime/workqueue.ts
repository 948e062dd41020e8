// A work queue in the manner of client-go's: a key is queued at most once however often it is
// added, never handled by two workers at once (added again while running, it runs once more
// after), and retried after the longer of a per-key exponential backoff and an overall token
// bucket (client-go's default controller rate limiter). Only retries are rate limited: a new
// event is handled as soon as a worker is free. Keys come in two priorities, as in
// controller-runtime's priority queue: what an object's own change brings runs before what a
// fan-out or a timer brings (a product's recheck of its thousands of refused pods, periodic
// checks, the replay when leadership starts), so a new pod never waits behind those.
import { setTimeout as sleep } from 'node:timers/promises';

/** What a reconcile asks of the queue (controller-runtime's reconcile.Result). */
export interface Result {
  /** Handle the key again after this long (level-triggered re-check), without counting a failure. */
  requeueAfterMs?: number;
}

/** A failure that is expected (AWS throttling, a budget refusing an eviction): retried with backoff, not logged as an error. */
export class RetryLater extends Error {
  override name = 'RetryLater';
}

/** `low`: work that may wait behind new events (fan-outs, periodic requeues, replays). */
export type Priority = 'normal' | 'low';

export interface WorkQueueOptions {
  concurrency: number;
  /** Per-key backoff after failures: base · 2^(failures-1), capped. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall rate of retries (token bucket). */
  ratePerSecond?: number;
  burst?: number;
  onDepth?: (depth: number) => void;
  onResult?: (result: 'success' | 'error' | 'requeue', seconds: number, error?: unknown) => void;
}

export class WorkQueue {
  // One FIFO per priority. A key raised from low to normal stays in the low FIFO too, and is
  // skipped there: an entry counts only if it is the key's latest (`queued` holds its priority
  // and entry number), so no search through thousands of keys, and no older entry of a key
  // queued again lets it jump ahead.
  private readonly fifos: Record<Priority, { key: string; entry: number }[]> = { normal: [], low: [] };
  private readonly queued = new Map<string, { priority: Priority; entry: number }>();
  private entries = 0;
  private readonly running = new Set<string>();
  private readonly dirtyWhileRunning = new Map<string, Priority>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number; priority: Priority }>();
  private active = 0;
  private tokens: number;
  private lastRefill = Date.now();
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private pumping = false;

  constructor(
    private readonly handler: (key: string) => Promise<Result | undefined>,
    private readonly options: WorkQueueOptions,
  ) {
    this.tokens = options.burst ?? 100;
  }

  /** Queues the key once; added again at a higher priority, it moves up. */
  add(key: string, priority: Priority = 'normal'): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirtyWhileRunning.set(key, higher(priority, this.dirtyWhileRunning.get(key)));
      return;
    }
    const waiting = this.queued.get(key)?.priority;
    if (waiting === priority || waiting === 'normal') return;
    const entry = ++this.entries;
    this.queued.set(key, { priority, entry });
    this.fifos[priority].push({ key, entry });
    this.options.onDepth?.(this.queued.size);
    this.pump();
  }

  /** Adds the key after a delay; of two pending delays for a key, the one that ends sooner wins (at the higher priority of the two). */
  addAfter(key: string, delayMs: number, priority: Priority = 'normal'): void {
    if (this.stopped) return;
    const due = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.due <= due) {
      pending.priority = higher(priority, pending.priority);
      return;
    }
    if (pending) clearTimeout(pending.timer);
    const entry = { due, priority: higher(priority, pending?.priority), timer: setTimeout(() => {
      this.timers.delete(key);
      this.add(key, entry.priority);
    }, delayMs) };
    entry.timer.unref();
    this.timers.set(key, entry);
  }

  /** Resolves when nothing is queued, running or waiting on a timer. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops dispatching and waits up to graceMs for running handlers to finish. Resolves to the
   * number still running then (abandoned: the caller exits, and their work is redone later).
   */
  async shutdown(graceMs = 20_000): Promise<number> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.fifos.normal.length = 0;
    this.fifos.low.length = 0;
    this.queued.clear();
    const deadline = Date.now() + graceMs;
    while (this.active > 0 && Date.now() < deadline) await sleep(20);
    return this.active;
  }

  private isIdle(): boolean {
    return this.queued.size === 0 && this.active === 0 && this.timers.size === 0;
  }

  /** Reserves a token of the retry bucket; resolves to how long the retry must wait for it. */
  private reserveToken(): number {
    const rate = this.options.ratePerSecond ?? 50;
    const burst = this.options.burst ?? 100;
    const now = Date.now();
    this.tokens = Math.min(burst, this.tokens + ((now - this.lastRefill) / 1000) * rate);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / rate) * 1000);
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.stopped && this.active < this.options.concurrency) {
        const next = this.next();
        if (!next) break;
        const [key, priority] = next;
        this.queued.delete(key);
        this.options.onDepth?.(this.queued.size);
        this.running.add(key);
        this.active++;
        void this.process(key, priority);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The first key of the highest priority that has one, skipping entries that are not their key's latest. */
  private next(): [string, Priority] | undefined {
    for (const priority of ['normal', 'low'] as const) {
      const fifo = this.fifos[priority];
      for (let next = fifo.shift(); next !== undefined; next = fifo.shift()) {
        if (this.queued.get(next.key)?.entry === next.entry) return [next.key, priority];
      }
    }
    return undefined;
  }

  private async process(key: string, priority: Priority): Promise<void> {
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) {
        this.options.onResult?.('requeue', seconds());
        // A requeue the reconciler asked for is a periodic check: it waits behind new events.
        this.addAfter(key, result.requeueAfterMs, 'low');
      } else {
        this.options.onResult?.('success', seconds());
      }
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      this.options.onResult?.('error', seconds(), error);
      const base = this.options.baseDelayMs ?? 200;
      const backoff = Math.min(this.options.maxDelayMs ?? 5 * 60_000, base * 2 ** Math.min(failures - 1, 20));
      this.addAfter(key, Math.max(backoff, this.reserveToken()), priority);
    } finally {
      this.running.delete(key);
      this.active--;
      const dirty = this.dirtyWhileRunning.get(key);
      if (dirty) {
        this.dirtyWhileRunning.delete(key);
        this.add(key, dirty);
      }
      this.pump();
      if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}

function higher(a: Priority, b: Priority | undefined): Priority {
  return a === 'normal' || b === 'normal' ? 'normal' : 'low';
}
