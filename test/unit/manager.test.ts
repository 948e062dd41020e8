// The Manager starts parts in order and stops them in reverse; a failure or an abort during
// start-up stops what had started and starts nothing more.
import { setTimeout as sleep } from 'node:timers/promises';
import { Manager, StartAborted, type Part } from '../../src/runtime/manager.js';
import { createLogger } from '../../src/observability/logger.js';

function recorder(): { log: string[]; part: (name: string, start?: (signal: AbortSignal) => Promise<void>) => Part } {
  const log: string[] = [];
  return {
    log,
    part: (name, start) => ({
      name,
      start: async (signal) => {
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

const quiet = createLogger({ level: 'error' });

it('starts parts in order and stops them in reverse', async () => {
  const { log, part } = recorder();
  const manager = new Manager(quiet).add(part('servers'), part('caches'), part('controllers'));
  await manager.start(new AbortController().signal);
  await manager.stop();
  expect(log).toEqual(['start servers', 'start caches', 'start controllers', 'stop controllers', 'stop caches', 'stop servers']);
});

it('a part that cannot start: the ones before it stop, the ones after never start, the cause is kept', async () => {
  const { log, part } = recorder();
  const cause = new Error('no certificate');
  const manager = new Manager(quiet).add(part('servers'), part('webhook', () => Promise.reject(cause)), part('caches'));
  await expect(manager.start(new AbortController().signal)).rejects.toBe(cause);
  expect(log).toEqual(['start servers', 'start webhook', 'stop servers']);
});

it('an abort while a part starts: StartAborted, what started is stopped, nothing more starts', async () => {
  const { log, part } = recorder();
  const abort = new AbortController();
  const slow = (signal: AbortSignal): Promise<void> => sleep(10_000, undefined, { signal }).catch(() => undefined);
  const manager = new Manager(quiet).add(part('servers'), part('caches', slow), part('controllers'));
  const starting = manager.start(abort.signal);
  await sleep(20);
  abort.abort();
  await expect(starting).rejects.toBeInstanceOf(StartAborted);
  expect(log).toEqual(['start servers', 'start caches', 'stop caches', 'stop servers']);
});
