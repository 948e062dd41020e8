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

describe('WorkQueue priorities', () => {
  /** A queue of one worker that records the order keys ran in; the first key holds the worker until released. */
  function recording() {
    const order: string[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const queue = new WorkQueue(async (key) => {
      order.push(key);
      if (key === 'hold') await held;
      return undefined;
    }, { concurrency: 1 });
    queue.add('hold');
    return { queue, order, release };
  }

  it('runs a normal key before low keys queued earlier (a new pod before a product fan-out)', async () => {
    const { queue, order, release } = recording();
    for (let i = 0; i < 1000; i++) queue.add(`recheck-${i}`, 'low');
    queue.add('new-pod');
    release();
    await queue.idle();
    expect(order.slice(0, 3)).toEqual(['hold', 'new-pod', 'recheck-0']);
    expect(order).toHaveLength(1002);
  });

  it('a low key added again at normal priority moves up and runs once', async () => {
    const { queue, order, release } = recording();
    queue.add('a', 'low');
    queue.add('b', 'low');
    queue.add('b');
    queue.add('b', 'low'); // never moves down
    release();
    await queue.idle();
    expect(order).toEqual(['hold', 'b', 'a']);
  });

  it('a key added while it runs runs once more afterwards at the higher of the priorities it was added with', async () => {
    const { queue, order, release } = recording();
    queue.add('first', 'low');
    queue.add('hold', 'low');
    queue.add('hold');
    release();
    await queue.idle();
    expect(order).toEqual(['hold', 'hold', 'first']);
  });

  it('a key added only at low while it runs runs once more afterwards behind low keys queued before it', async () => {
    const { queue, order, release } = recording();
    queue.add('first', 'low');
    queue.add('hold', 'low');
    release();
    await queue.idle();
    expect(order).toEqual(['hold', 'first', 'hold']);
  });

  it('a key raised, run, then queued low again waits its new turn, not the place of its old entry', async () => {
    const order: string[] = [];
    const releases = new Map<string, () => void>();
    const queue = new WorkQueue(async (key) => {
      order.push(key);
      if (key === 'hold' || key === 'x') await new Promise<void>((resolve) => releases.set(key, resolve));
      return undefined;
    }, { concurrency: 1 });
    const released = async (key: string) => {
      while (!releases.has(key)) await new Promise((resolve) => setImmediate(resolve));
      releases.get(key)?.();
    };
    queue.add('hold');
    queue.add('x', 'low');
    queue.add('k', 'low'); // an entry behind x in the low queue
    queue.add('k'); // raised: runs first
    queue.add('a', 'low');
    await released('hold');
    while (!releases.has('x')) await new Promise((resolve) => setImmediate(resolve)); // k ran, x runs
    queue.add('k', 'low'); // queued again, after a
    await released('x');
    await queue.idle();
    expect(order).toEqual(['hold', 'k', 'x', 'a', 'k']);
  });

  it("a requeue the reconciler asks for comes back at low priority, a retry after a failure at the key's own", async () => {
    const order: string[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const queue = new WorkQueue(async (key) => {
      const runs = order.push(key) && order.filter((k) => k === key).length;
      if (key === 'hold') await held;
      if (key === 'periodic' && runs === 1) return { requeueAfterMs: 1 };
      if (key === 'failing' && runs === 1) throw new Error('once');
      return undefined;
    }, { concurrency: 1, baseDelayMs: 1 });
    queue.add('periodic');
    queue.add('failing');
    queue.add('hold');
    await sleep(30); // both timers fired while 'hold' runs: the requeue waits at low, the retry at normal
    queue.add('earlier-low', 'low');
    queue.add('new');
    release();
    await queue.idle();
    expect(order).toEqual(['periodic', 'failing', 'hold', 'failing', 'new', 'periodic', 'earlier-low']);
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
