// The Manager starts its groups in order and stops them in reverse; a failure or an abort during
// start-up stops what had started and starts nothing more. Leader work starts after every group;
// a graceful stop gives it its grace period, a lost Lease aborts it at once.
import { setTimeout as sleep } from 'node:timers/promises';
import { Manager, StartAborted, type LeaderRunnable, type Runnable } from '../../src/runtime/manager.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';

function recorder(): { log: string[]; runnable: (name: string, start?: (signal: AbortSignal) => Promise<void>) => Runnable } {
  const log: string[] = [];
  return {
    log,
    runnable: (name, start) => ({
      name,
      start: async (signal: AbortSignal) => {
        log.push(`start ${name}`);
        await start?.(signal);
      },
      stop: () => {
        log.push(`stop ${name}`);
        return Promise.resolve();
      },
    }),
  };
}

/** Leader work that runs until its signal aborts or it is stopped, recording what it saw. */
function leaderWork(log: string[]): LeaderRunnable & { signal?: AbortSignal; graceGiven?: number } {
  const work: LeaderRunnable & { signal?: AbortSignal; graceGiven?: number } = {
    name: 'controllers',
    start: (signal) => {
      work.signal = signal;
      log.push('start controllers');
    },
    stop: (graceMs) => {
      work.graceGiven = graceMs;
      log.push(`stop controllers (grace ${graceMs} ms, aborted ${String(work.signal?.aborted)})`);
      return Promise.resolve(0);
    },
  };
  return work;
}

const quiet = createLogger({ level: 'error' });
const manager = (): Manager => new Manager({ log: quiet, controllerMetrics: new Metrics(), shutdownGraceMs: 5_000 });

it('starts groups in order (whatever order they were added in), leader work last, and stops in reverse', async () => {
  const { log, runnable } = recorder();
  const work = leaderWork(log);
  const m = manager().add('caches', runnable('caches')).addLeader(work).add('servers', runnable('health'), runnable('metrics')).add('webhooks', runnable('webhook'));
  await m.start(new AbortController().signal);
  await m.stop();
  expect(log).toEqual([
    'start health',
    'start metrics',
    'start webhook',
    'start caches',
    'start controllers',
    'stop controllers (grace 5000 ms, aborted false)',
    'stop caches',
    'stop webhook',
    'stop metrics',
    'stop health',
  ]);
  // Once stopped, the leader signal aborts: a write still in flight past the grace period gives up.
  expect(work.signal?.aborted).toBe(true);
  expect(m.leaderSignal.aborted).toBe(true);
});

it('a runnable that cannot start: the ones before it stop, the ones after never start, the cause is kept', async () => {
  const { log, runnable } = recorder();
  const cause = new Error('no certificate');
  const m = manager()
    .add('servers', runnable('servers'))
    .add('webhooks', runnable('webhook', () => Promise.reject(cause)))
    .add('caches', runnable('caches'))
    .addLeader(leaderWork(log));
  await expect(m.start(new AbortController().signal)).rejects.toBe(cause);
  expect(log).toEqual(['start servers', 'start webhook', 'stop servers']);
});

it('an abort while a runnable starts: StartAborted, what started is stopped, nothing more starts', async () => {
  const { log, runnable } = recorder();
  const abort = new AbortController();
  const slow = (signal: AbortSignal): Promise<void> => sleep(10_000, undefined, { signal }).catch(() => undefined);
  const m = manager().add('servers', runnable('servers')).add('caches', runnable('caches', slow)).addLeader(leaderWork(log));
  const starting = m.start(abort.signal);
  await sleep(20);
  abort.abort();
  await expect(starting).rejects.toBeInstanceOf(StartAborted);
  expect(log).toEqual(['start servers', 'start caches', 'stop caches', 'stop servers']);
});
