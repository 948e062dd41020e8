// PriorityGate: deferrable work narrows while urgent work is under way and a quiet time after, widens then, never stops.
import { PriorityGate } from '../../src/runtime/priority.js';

/** A task that runs until released, counting how many run at once. */
function tasks() {
  let running = 0;
  let most = 0;
  const releases: (() => void)[] = [];
  return {
    task: (): Promise<void> => {
      running++;
      most = Math.max(most, running);
      return new Promise<void>((resolve) => releases.push(() => { running--; resolve(); }));
    },
    releaseAll: (): void => { releases.splice(0).forEach((release) => { release(); }); },
    get running() { return running; },
    get most() { return most; },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

it('while urgent work runs, deferred tasks run two at a time; once it has been quiet a while, all of them', async () => {
  const gate = new PriorityGate(2, 500);
  const urgent = tasks();
  const deferred = tasks();
  const registering = gate.urgent(urgent.task);
  const metering = Array.from({ length: 6 }, () => gate.deferred(deferred.task));
  await tick();
  expect(deferred.running).toBe(2);
  deferred.releaseAll(); // two finish: two more start, still narrow
  await tick();
  expect(deferred.running).toBe(2);
  expect(deferred.most).toBe(2);
  urgent.releaseAll();
  await registering;
  await tick();
  expect(deferred.running).toBe(2); // still narrow: urgent work ended just now
  await new Promise((resolve) => setTimeout(resolve, 700));
  expect(deferred.running).toBe(4); // the two running, and the two left start at once
  deferred.releaseAll();
  await Promise.all(metering);
  // No urgent work: as wide as they come.
  const wide = Array.from({ length: 5 }, () => gate.deferred(deferred.task));
  await tick();
  expect(deferred.running).toBe(5);
  deferred.releaseAll();
  await Promise.all(wide);
});

it('a deferred task whose signal aborts while it waits is dropped, not run', async () => {
  const gate = new PriorityGate(1, 100);
  const urgent = tasks();
  const deferred = tasks();
  const registering = gate.urgent(urgent.task);
  const first = gate.deferred(deferred.task);
  const abort = new AbortController();
  const second = gate.deferred(deferred.task, abort.signal);
  await tick();
  abort.abort(new Error('leadership lost'));
  await expect(second).rejects.toThrow('leadership lost');
  deferred.releaseAll();
  urgent.releaseAll();
  await Promise.all([first, registering]);
  expect(deferred.most).toBe(1);
});
