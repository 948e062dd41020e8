// The list-watch cache against a real API server: a list of many pages (the API server's
// `metadata.continue`) fills the whole cache before the informer reports synced; a stopped
// watch leaves its client safe to close.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { Informer, type ListResult } from '../../src/runtime/informer.js';
import { createLogger } from '../../src/observability/logger.js';
import { controlPlaneForSuite } from '../support/control-plane.js';

const controlPlane = controlPlaneForSuite();

it('lists every page before it reports synced', async () => {
  const client = controlPlane().client();
  await client.request('POST', '/api/v1/namespaces', { metadata: { name: 'paged' } });
  const names = Array.from({ length: 7 }, (_, i) => `cm-${i}`);
  for (const name of names) await client.request('POST', '/api/v1/namespaces/paged/configmaps', { metadata: { name }, data: {} });
  const pages: number[] = [];
  const informer = new Informer<V1ConfigMap>(
    client,
    {
      name: 'configmaps',
      path: '/api/v1/namespaces/paged/configmaps',
      // Pages of 2, so 7 objects take 4 pages.
      list: async (continueToken) => {
        const page = await client.request<ListResult<V1ConfigMap>>('GET', `/api/v1/namespaces/paged/configmaps?limit=2${continueToken ? `&continue=${encodeURIComponent(continueToken)}` : ''}`);
        pages.push(page.items.length);
        return page;
      },
    },
    createLogger({ level: 'error' }),
  );
  await informer.start();
  try {
    expect(pages).toEqual([2, 2, 2, 1]);
    expect(informer.list().map((cm) => cm.metadata?.name).sort()).toEqual(names);
  } finally {
    await informer.stop();
    await client.close();
  }
});

it('a watch stopped well before its client closes leaves nothing behind that could end the process', async () => {
  // On HTTP/2 (undici 8.13) an abandoned watch stream stayed on the session without an error
  // listener, and closing the client a moment later destroyed it with an unhandled error: jest
  // fails this suite with it (as the error ended the operator at shutdown).
  const client = controlPlane().client();
  const watch = (name: string) =>
    new Informer<V1ConfigMap>(
      client,
      { name, path: '/api/v1/namespaces/default/configmaps', fieldSelector: `metadata.name=${name}`, list: () => client.request<ListResult<V1ConfigMap>>('GET', `/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3D${name}`) },
      createLogger({ level: 'error' }),
    );
  const first = watch('first');
  await first.start();
  await first.stop();
  const second = watch('second');
  await second.start();
  await sleep(1_000);
  await second.stop();
  await client.request('GET', '/api/v1/namespaces/default/configmaps');
  await client.close();
  await sleep(500);
  expect(first.synced && second.synced).toBe(true);
});
