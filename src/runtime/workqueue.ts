// A work queue in the manner of client-go's: a key is queued at most once however often it is
// added, never handled by two workers at once (added again while running, it runs once more
// after), and retried after the longer of a per-key exponential backoff and an overall token
// bucket (client-go's default controller rate limiter). Only retries are rate limited: a new
// event is handled as soon as a worker is free.
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
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirtyWhileRunning = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
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

  add(key: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirtyWhileRunning.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.options.onDepth?.(this.queue.length);
    this.pump();
  }

  /** Adds the key after a delay; of two pending delays for a key, the one that ends sooner wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    const due = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.due <= due) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { timer, due });
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
    this.queue.length = 0;
    this.queued.clear();
    const deadline = Date.now() + graceMs;
    while (this.active > 0 && Date.now() < deadline) await sleep(20);
    return this.active;
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.active === 0 && this.timers.size === 0;
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
      while (!this.stopped && this.active < this.options.concurrency && this.queue.length > 0) {
        const key = this.queue.shift() as string;
        this.queued.delete(key);
        this.options.onDepth?.(this.queue.length);
        this.running.add(key);
        this.active++;
        void this.process(key);
      }
    } finally {
      this.pumping = false;
    }
  }

  private async process(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) {
        this.options.onResult?.('requeue', seconds());
        this.addAfter(key, result.requeueAfterMs);
      } else {
        this.options.onResult?.('success', seconds());
      }
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      this.options.onResult?.('error', seconds(), error);
      const base = this.options.baseDelayMs ?? 200;
      const backoff = Math.min(this.options.maxDelayMs ?? 5 * 60_000, base * 2 ** Math.min(failures - 1, 20));
      this.addAfter(key, Math.max(backoff, this.reserveToken()));
    } finally {
      this.running.delete(key);
      this.active--;
      if (this.dirtyWhileRunning.delete(key)) this.add(key);
      this.pump();
      if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}
