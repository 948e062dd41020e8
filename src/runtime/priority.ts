// Two kinds of work on one event loop, one of them first: while urgent work is under way, and
// for `quietMs` after the last of it, deferrable tasks run at most `narrow` at a time (the others
// wait); once urgent work has been quiet that long, they run as wide as their own limits let
// them. The quiet time covers what follows an urgent task on the loop (a registration's verdict
// patch and Event come after its AWS call). Deferrable work is slowed, never stopped: `narrow` of
// it always goes on.
import { waitTurn } from './turn.js';

export class PriorityGate {
  private urgentRunning = 0;
  private lastUrgentEnd = Number.NEGATIVE_INFINITY;
  private deferredRunning = 0;
  private waiters: (() => void)[] = [];
  private quietTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly narrow: number,
    private readonly quietMs: number,
  ) {}

  async urgent<T>(task: () => Promise<T>): Promise<T> {
    this.urgentRunning++;
    try {
      return await task();
    } finally {
      this.urgentRunning--;
      this.lastUrgentEnd = performance.now();
      if (this.urgentRunning === 0) this.wakeWhenQuiet();
    }
  }

  /** Runs `task` when it may; rejects without running it when `signal` aborts first. */
  async deferred<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    while (this.narrowed() && this.deferredRunning >= this.narrow) await this.turn(signal);
    this.deferredRunning++;
    try {
      return await task();
    } finally {
      this.deferredRunning--;
      this.wake();
    }
  }

  private narrowed(): boolean {
    return this.urgentRunning > 0 || performance.now() - this.lastUrgentEnd < this.quietMs;
  }

  /** Wakes the waiters once urgent work has been quiet for quietMs (a timer may fire a little early: then again). */
  private wakeWhenQuiet(): void {
    clearTimeout(this.quietTimer);
    const left = this.quietMs - (performance.now() - this.lastUrgentEnd);
    this.quietTimer = setTimeout(() => {
      this.quietTimer = undefined;
      if (this.urgentRunning > 0) return;
      if (this.narrowed()) this.wakeWhenQuiet();
      else this.wake();
    }, Math.max(0, Math.ceil(left)) + 1);
    this.quietTimer.unref();
  }

  private turn(signal: AbortSignal | undefined): Promise<void> {
    return waitTurn(signal, (start) => {
      this.waiters.push(start);
      return () => {
        this.waiters = this.waiters.filter((w) => w !== start);
      };
    });
  }

  /** Every waiter looks again (one that still may not start waits anew). */
  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
