// The semaphore that bounds the AWS calls (by count) and the admission bodies parsed at once (by
// bytes): first come, first served, a task heavier than the limit alone, an aborted waiter dropped.
import { Semaphore } from '../../src/runtime/semaphore.js';

/** A task that runs until `release` is called, and records that it started. */
function held(started: string[], name: string): { task: () => Promise<void>; release: () => void } {
  let release = (): void => undefined;
  const done = new Promise<void>((resolve) => (release = resolve));
  return {
    task: async () => {
      started.push(name);
      await done;
    },
    release,
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

it('runs tasks whose weights fit together, the rest in arrival order, and a heavier one alone', async () => {
  const semaphore = new Semaphore(4);
  const started: string[] = [];
  const [a, b, heavy, c] = [held(started, 'a'), held(started, 'b'), held(started, 'heavy'), held(started, 'c')];
  const runs = [semaphore.run(a.task, { weight: 3 }), semaphore.run(b.task, { weight: 2 }), semaphore.run(heavy.task, { weight: 9 }), semaphore.run(c.task, { weight: 1 })];
  await tick();
  expect(started).toEqual(['a']); // b does not fit beside a; c waits behind b and heavy
  a.release();
  await tick();
  expect(started).toEqual(['a', 'b']);
  b.release();
  await tick();
  expect(started).toEqual(['a', 'b', 'heavy']); // alone
  heavy.release();
  await tick();
  expect(started).toEqual(['a', 'b', 'heavy', 'c']);
  c.release();
  await Promise.all(runs);
});

it('counts one per task by default', async () => {
  const semaphore = new Semaphore(2);
  const started: string[] = [];
  const tasks = ['a', 'b', 'c'].map((name) => held(started, name));
  const runs = tasks.map((t) => semaphore.run(t.task));
  await tick();
  expect(started).toEqual(['a', 'b']);
  for (const t of tasks) t.release();
  await Promise.all(runs);
  expect(started).toEqual(['a', 'b', 'c']);
});

it('drops a waiter whose signal aborts, without running it, and starts the one behind it', async () => {
  const semaphore = new Semaphore(4);
  const started: string[] = [];
  const [first, dropped, next] = [held(started, 'first'), held(started, 'dropped'), held(started, 'next')];
  const gone = new AbortController();
  const running = semaphore.run(first.task, { weight: 3 });
  const waiting = semaphore.run(dropped.task, { weight: 3, signal: gone.signal });
  const behind = semaphore.run(next.task, { weight: 1 });
  await tick();
  expect(started).toEqual(['first']);
  gone.abort(new Error('client went away'));
  await expect(waiting).rejects.toThrow('client went away');
  await tick();
  expect(started).toEqual(['first', 'next']); // 3 + 1 fit once the dropped waiter is gone
  first.release();
  next.release();
  await Promise.all([running, behind]);
  expect(started).not.toContain('dropped');
});
