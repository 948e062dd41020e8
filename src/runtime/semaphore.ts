// Bounds what runs at once: a number of operations (the AWS calls of the reconciler), or their
// weights (the bytes of the admission bodies being parsed). First come, first served; a task
// heavier than the whole limit runs alone. A task whose signal aborts while it waits is dropped.
import { waitTurn } from './turn.js';

interface Waiter {
  weight: number;
  start: () => void;
}

export class Semaphore {
  private used = 0;
  private readonly waiting: Waiter[] = [];

  constructor(private readonly limit: number) {}

  /** Runs `task` once its weight (default 1) fits; rejects without running it when `signal` aborts first. */
  async run<T>(task: () => Promise<T>, options: { weight?: number; signal?: AbortSignal } = {}): Promise<T> {
    const { weight = 1, signal } = options;
    signal?.throwIfAborted();
    // A waiter's weight is counted when it is started (startWaiting), before it resumes.
    if (this.waiting.length > 0 || !this.fits(weight)) await this.turn(weight, signal);
    else this.used += weight;
    try {
      return await task();
    } finally {
      this.used -= weight;
      this.startWaiting();
    }
  }

  private turn(weight: number, signal: AbortSignal | undefined): Promise<void> {
    return waitTurn(signal, (start) => {
      const waiter = { weight, start };
      this.waiting.push(waiter);
      return () => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        this.startWaiting();
      };
    });
  }

  private fits(weight: number): boolean {
    return this.used === 0 || this.used + weight <= this.limit;
  }

  private startWaiting(): void {
    for (let next = this.waiting[0]; next && this.fits(next.weight); next = this.waiting[0]) {
      this.waiting.shift();
      this.used += next.weight;
      next.start();
    }
  }
}
