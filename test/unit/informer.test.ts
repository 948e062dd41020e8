// The list-watch cache against a scripted API server: relist on 410 Gone, restart after a watch
// ends or fails, handlers for every change.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { KubeClient } from '../../src/kube/api.js';
import { Informer, type ListResult } from '../../src/runtime/informer.js';
import { createLogger } from '../../src/observability/logger.js';
import { waitFor } from '../support/wait.js';

const pod = (name: string, rv: string): V1Pod => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });

describe('Informer', () => {
  let server: http.Server;
  let client: KubeClient;
  const watches: string[] = [];
  // Each watch request takes the next script: events to send, then close (or hold open).
  const scripts: { events: object[]; hold?: boolean; status?: number }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      watches.push(url.searchParams.get('resourceVersion') ?? '');
      const script = scripts.shift() ?? { events: [], hold: true };
      if (script.status) {
        res.writeHead(script.status).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      for (const event of script.events) res.write(`${JSON.stringify(event)}\n`);
      if (!script.hold) res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('relists on 410 Gone, restarts ended and failed watches, and keeps the cache right', async () => {
    const lists: ListResult<V1Pod>[] = [
      { items: [pod('a', '10'), pod('b', '10')], metadata: { resourceVersion: '10' } },
      { items: [pod('a', '30'), pod('c', '30')], metadata: { resourceVersion: '30' } },
    ];
    scripts.push(
      { events: [{ type: 'ADDED', object: pod('d', '11') }] }, // ends normally: resume from 11
      { events: [], status: 500 }, // fails: retry from 11
      { events: [{ type: 'MODIFIED', object: pod('a', '12') }, { type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }] }, // gone: relist
      { events: [{ type: 'DELETED', object: pod('c', '31') }], hold: true },
    );
    const upserts: string[] = [];
    const deletes: string[] = [];
    const informer = new Informer<V1Pod>(client, { name: 'test', path: '/api/v1/pods', list: () => Promise.resolve(lists.shift() ?? { items: [] }) }, createLogger({ level: 'error' }));
    informer.onUpsert((p) => upserts.push(p.metadata?.name ?? ''));
    informer.onDelete((p) => deletes.push(p.metadata?.name ?? ''));
    await informer.start();
    expect(informer.synced).toBe(true);

    await waitFor('the second list and the delete after it', () => Promise.resolve(deletes.includes('c') ? true : undefined), 20_000);
    expect(watches).toEqual(['10', '11', '11', '30']);
    expect(informer.relists).toBe(2);
    // The relist dropped b and d (gone from the server) and added c, which the watch then deleted.
    expect(deletes.sort()).toEqual(['b', 'c', 'd']);
    expect(informer.list().map((p) => p.metadata?.name)).toEqual(['a']);
    expect(informer.get('ns/a')?.metadata?.resourceVersion).toBe('30');
    expect(upserts).toEqual(['a', 'b', 'd', 'a', 'a', 'c']);
    await informer.stop();
  }, 30_000);
});
