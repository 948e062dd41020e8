// Leader election against a small Lease endpoint that behaves as the API server does
// (resourceVersion checks, 404 and 409), and can be told to hang: another replica whose clock
// is behind never loses its Lease to us while it renews, a leader whose API calls hang steps
// down before anyone else may take over and never campaigns again, and the Manager that owns the
// election stops its leader work at once when that happens.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient } from '../../src/kube/api.js';
import { LeaderElector } from '../../src/runtime/leader-election.js';
import { Manager } from '../../src/runtime/manager.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createLogger } from '../../src/observability/logger.js';
import { waitFor } from '../support/wait.js';

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}
let lease: Lease | undefined;
const holder = (): string | undefined => lease?.spec?.holderIdentity;
let version = 0;
let hang = false;
/** Apply the next write, then never answer it (the answer lost on the way back). */
let swallowNextWrite = false;
let server: http.Server;
let client: KubeClient;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      if (hang) return; // never answered
      const reply = (status: number, object: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(object));
      };
      if (req.method === 'GET') {
        if (lease) reply(200, lease);
        else reply(404, { kind: 'Status', code: 404 });
      } else if (req.method === 'POST') {
        if (lease) {
          reply(409, { kind: 'Status', code: 409 });
          return;
        }
        lease = { ...(JSON.parse(body) as Lease), metadata: { name: 'lease', namespace: 'ns', resourceVersion: String(++version) } };
        if (swallowNextWrite) {
          swallowNextWrite = false;
          return;
        }
        reply(201, lease);
      } else {
        const next = JSON.parse(body) as Lease;
        if (next.metadata.resourceVersion !== lease?.metadata.resourceVersion) {
          reply(409, { kind: 'Status', code: 409 });
          return;
        }
        lease = { ...next, metadata: { ...next.metadata, resourceVersion: String(++version) } };
        reply(200, lease);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
});
afterAll(async () => {
  // Requests left unanswered (hang) first, so the client's close does not wait for them.
  server.closeAllConnections();
  await client.close();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  lease = undefined;
  hang = false;
  swallowNextWrite = false;
});

function elector(identity: string, events: string[]): LeaderElector {
  return new LeaderElector(
    client,
    { namespace: 'ns', name: 'lease', identity, leaseDurationMs: 1_500, renewDeadlineMs: 600, retryPeriodMs: 100 },
    { onStartedLeading: () => events.push('started'), onStoppedLeading: () => events.push('stopped') },
    createLogger({ level: 'error' }),
  );
}

/** An elector of ours, started, once it leads; `events` records its callbacks. */
async function leading(): Promise<{ leader: LeaderElector; events: string[] }> {
  const events: string[] = [];
  const leader = elector('us', events);
  leader.start();
  await waitFor('the elector to lead', () => Promise.resolve(events.includes('started') ? true : undefined), 5_000, 20);
  return { leader, events };
}

it("never takes a Lease that is being renewed, whatever the renewTime the other replica's clock writes", async () => {
  // Another replica, its clock an hour behind ours, renews every 200 ms.
  lease = { metadata: { name: 'lease', namespace: 'ns', resourceVersion: String(++version) }, spec: { holderIdentity: 'other', leaseDurationSeconds: 1 } };
  const other = { renewing: true };
  const renewals = (async () => {
    while (other.renewing) {
      const renewTime = new Date(Date.now() - 3_600_000).toISOString().replace('Z', '000Z');
      lease = { metadata: { name: 'lease', namespace: 'ns', resourceVersion: String(++version) }, spec: { holderIdentity: 'other', leaseDurationSeconds: 1, renewTime } };
      await sleep(200);
    }
  })();
  const events: string[] = [];
  const candidate = elector('us', events);
  candidate.start();
  await sleep(3_000); // two lease durations of ours
  expect(events).toEqual([]);
  expect(holder()).toBe('other');

  // The other replica stops renewing: once we have seen the record unchanged for the lease
  // duration (1 s, the Lease's own), we take over.
  other.renewing = false;
  await renewals;
  await waitFor('the candidate to lead', () => Promise.resolve(events.includes('started') ? true : undefined), 5_000, 50);
  expect(holder()).toBe('us');
  await candidate.stop();
});

it('a leader whose API calls hang steps down within its renew deadline, before the Lease can expire for others', async () => {
  const { leader, events } = await leading();
  const renewedAt = Date.now();
  hang = true;
  await waitFor('the leader to step down', () => Promise.resolve(events.includes('stopped') ? true : undefined), 5_000, 20);
  // Another replica may take over once it has seen no renewal for the lease duration (1.5 s);
  // this one stopped leading before that, bounded by its renew deadline (0.6 s), not by the hang.
  expect(Date.now() - renewedAt).toBeLessThan(1_500);
  hang = false;
  await leader.stop();
});

it('stopped while the answer to its acquiring write is outstanding, a candidate releases the Lease the server granted', async () => {
  swallowNextWrite = true;
  const events: string[] = [];
  const candidate = elector('us', events);
  candidate.start();
  await waitFor('the server to grant the Lease', () => Promise.resolve(holder() === 'us' ? true : undefined), 5_000, 10);
  expect(candidate.isLeader).toBe(false);
  await candidate.stop();
  expect(events).toEqual([]);
  expect(holder()).toBeUndefined();
});

it('a deposed leader never campaigns again, even once the Lease it lost expires (its process exits meanwhile)', async () => {
  const { leader, events } = await leading();
  hang = true;
  await waitFor('the leader to step down', () => Promise.resolve(events.includes('stopped') ? true : undefined), 5_000, 20);
  hang = false;
  const versionAfterLoss = version;
  await sleep(2_500); // past the lease duration (1.5 s): a campaigning replica would take it now
  expect(version).toBe(versionAfterLoss);
  expect(events).toEqual(['started', 'stopped']);
  await leader.stop();
});

it('a leader stopped while the API server answers nothing gives up releasing the Lease after its renew deadline (the process can exit)', async () => {
  const { leader } = await leading();
  hang = true;
  const outcome = await Promise.race([leader.stop().then(() => 'stopped'), sleep(5_000).then(() => 'still releasing')]);
  hang = false;
  expect(outcome).toBe('stopped');
  expect(holder()).toBe('us'); // not released: it expires for the next leader
});

describe('a Manager that owns the election', () => {
  const electing = (identity: string) => ({ client, options: { namespace: 'ns', name: 'lease', identity, leaseDurationMs: 1_500, renewDeadlineMs: 600, retryPeriodMs: 100 } });

  /** Leader work whose stop waits for the grace period or its signal, as running reconciles do. */
  function leaderWork() {
    const seen: { signal?: AbortSignal; graceMs?: number } = {};
    return {
      seen,
      runnable: {
        name: 'controllers',
        start: (signal: AbortSignal) => {
          seen.signal = signal;
        },
        stop: async (graceMs: number) => {
          seen.graceMs = graceMs;
          if (seen.signal && !seen.signal.aborted) await Promise.race([sleep(graceMs), new Promise((resolve) => seen.signal?.addEventListener('abort', resolve))]);
          return 0;
        },
      },
    };
  }

  it('losing the Lease aborts leader work at once (no grace) and fails the manager with the reason', async () => {
    const leading: boolean[] = [];
    const work = leaderWork();
    const manager = new Manager({ log: createLogger({ level: 'error' }), controllerMetrics: new Metrics(), election: electing('us'), shutdownGraceMs: 20_000, onLeading: (l) => leading.push(l) }).addLeader(work.runnable);
    await manager.start(new AbortController().signal);
    await waitFor('the manager to lead', () => Promise.resolve(work.seen.signal ? true : undefined), 5_000, 20);
    expect(work.seen.signal).toBe(manager.leaderSignal);
    hang = true;
    expect(await manager.failed).toBe('leadership lost');
    expect(manager.leaderSignal.aborted).toBe(true);
    expect(work.seen.graceMs).toBe(0);
    expect(leading).toEqual([true, false]);
    hang = false;
    const stopping = manager.stop();
    expect(manager.stop()).toBe(stopping);
    await stopping;
    expect(holder()).toBe('us'); // never released nor renewed after the loss: it expires for the next leader
  });

  it('losing the Lease during a graceful stop still aborts leader work at once, without waiting out the grace period', async () => {
    const work = leaderWork();
    const manager = new Manager({ log: createLogger({ level: 'error' }), controllerMetrics: new Metrics(), election: electing('us'), shutdownGraceMs: 20_000 }).addLeader(work.runnable);
    await manager.start(new AbortController().signal);
    await waitFor('the manager to lead', () => Promise.resolve(work.seen.signal ? true : undefined), 5_000, 20);
    const stopping = manager.stop(); // grace 20 s: work still running
    await sleep(100);
    expect(manager.leaderSignal.aborted).toBe(false);
    hang = true;
    await waitFor('leader work to be aborted', () => Promise.resolve(manager.leaderSignal.aborted ? true : undefined), 5_000, 20);
    hang = false;
    await stopping;
    expect(work.seen.graceMs).toBe(20_000);
  });
});
