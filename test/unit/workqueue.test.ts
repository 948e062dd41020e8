import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueue } from '../../src/runtime/workqueue.js';

describe('WorkQueue', () => {
  it('de-duplicates queued keys and never runs one key twice at once', async () => {
    const running = new Set<string>();
    const runs: string[] = [];
    let overlap = false;
    const queue = new WorkQueue(async (key) => {
      if (running.has(key)) overlap = true;
      running.add(key);
      runs.push(key);
      await sleep(20);
      running.delete(key);
      return undefined;
    }, { concurrency: 4 });
    for (let i = 0; i < 5; i++) queue.add('a');
    queue.add('b');
    await sleep(5);
    queue.add('a'); // while running: runs once more afterwards
    queue.add('a');
    await queue.idle();
    expect(overlap).toBe(false);
    expect(runs.sort()).toEqual(['a', 'a', 'b']);
  });

  it('retries a failing key with exponential backoff', async () => {
    const times: number[] = [];
    const queue = new WorkQueue(async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error('not yet');
      return Promise.resolve(undefined);
    }, { concurrency: 1, baseDelayMs: 20 });
    queue.add('k');
    await queue.idle();
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    expect(gaps).toHaveLength(3);
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
  });

  it('limits the concurrency, and handles new keys without waiting on the rate limit', async () => {
    let active = 0;
    let maxActive = 0;
    const queue = new WorkQueue(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(5);
      active--;
      return undefined;
    }, { concurrency: 3, ratePerSecond: 1, burst: 1 });
    const started = Date.now();
    for (let i = 0; i < 25; i++) queue.add(`k${i}`);
    await queue.idle();
    expect(maxActive).toBe(3);
    // 25 keys, 3 at a time, 5 ms each: the 1/s bucket is for retries only.
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("spaces retries by the overall rate limit as well as by each key's backoff", async () => {
    const failed = new Set<string>();
    const queue = new WorkQueue((key) => {
      if (failed.has(key)) return Promise.resolve(undefined);
      failed.add(key);
      return Promise.reject(new Error('first try fails'));
    }, { concurrency: 4, ratePerSecond: 100, burst: 5, baseDelayMs: 1 });
    const started = Date.now();
    for (let i = 0; i < 25; i++) queue.add(`k${i}`);
    await queue.idle();
    // 5 retries from the burst, then 20 more at 100/s: at least ~200 ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);
  });

  it('requeues after the requested delay, and shutdown waits for running work', async () => {
    let runs = 0;
    let finished = false;
    const queue = new WorkQueue(async () => {
      runs++;
      if (runs === 2) {
        await sleep(50);
        finished = true;
        return undefined;
      }
      return { requeueAfterMs: 10 };
    }, { concurrency: 1 });
    queue.add('k');
    await sleep(25);
    await queue.shutdown();
    expect(runs).toBe(2);
    expect(finished).toBe(true);
  });

  it('of two pending delays for a key, the sooner wins (a requeue an hour away does not hold back an event)', async () => {
    const runs: number[] = [];
    const started = Date.now();
    const queue = new WorkQueue(() => {
      runs.push(Date.now() - started);
      return Promise.resolve(undefined);
    }, { concurrency: 1 });
    queue.addAfter('k', 60_000);
    queue.addAfter('k', 20);
    queue.addAfter('k', 30_000); // later than the pending one: ignored
    await sleep(80);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toBeLessThan(1_000);
    await queue.shutdown();
  });
});

describe('WorkQueue shutdown', () => {
  it('abandons handlers that outlive the grace period and says how many', async () => {
    const queue = new WorkQueue(() => sleep(1_000).then(() => undefined), { concurrency: 2 });
    queue.add('a');
    queue.add('b');
    await sleep(10);
    const started = Date.now();
    expect(await queue.shutdown(50)).toBe(2);
    expect(Date.now() - started).toBeLessThan(900);
  });
});
