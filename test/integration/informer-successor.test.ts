// The list-watch cache against a real API server, when its watch misses a delete and create of
// one name: the relist after 410 Gone finds another uid under the name. The delete handlers must
// see the predecessor before the upsert handlers see the successor, or everything a controller
// keeps by the predecessor's uid is kept for ever, and the successor passes for it.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { ApiError, fromKubeconfigFile, KubeClient, type WatchHandler } from '../../src/kube/api.js';
import { Informer } from '../../src/runtime/informer.js';
import { createLogger } from '../../src/observability/logger.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();

/**
 * The API server, but its first watch is cut off: meanwhile `missed` runs, and when the watch
 * comes back its resourceVersion has been compacted away (410 Gone, as after an etcd compaction).
 */
class WatchCutOnce extends KubeClient {
  private cut = true;

  constructor(
    kubeconfig: string,
    private readonly missed: () => Promise<void>,
  ) {
    super(fromKubeconfigFile(kubeconfig));
  }

  override async watch(path: string, onEvent: WatchHandler, signal: AbortSignal, idleTimeoutMs?: number): Promise<void> {
    if (!this.cut) return super.watch(path, onEvent, signal, idleTimeoutMs);
    this.cut = false;
    await this.missed();
    throw new ApiError(410, 'too old resource version', '{"kind":"Status","code":410,"reason":"Expired"}', 'GET', path);
  }
}

it('a relist that finds another uid under a name runs the delete handlers with the object it replaces, then the upserts', async () => {
  const admin = controlPlane().client();
  const path = '/api/v1/namespaces/successor/configmaps';
  await admin.request('POST', '/api/v1/namespaces', { metadata: { name: 'successor' } });
  const first = await admin.request<V1ConfigMap>('POST', path, { metadata: { name: 'app', labels: { tier: 'web' } } });
  let second: V1ConfigMap | undefined;
  const client = new WatchCutOnce(controlPlane().kubeconfigPath, async () => {
    await admin.send('DELETE', `${path}/app`);
    second = await admin.request<V1ConfigMap>('POST', path, { metadata: { name: 'app', labels: { tier: 'db' } } });
  });
  const informer = new Informer<V1ConfigMap>(client, { name: 'successor', path, indexBy: (cm) => cm.metadata?.labels?.tier }, createLogger({ level: 'error' }));
  const events: string[] = [];
  informer.onUpsert((cm) => events.push(`upsert ${cm.metadata?.uid ?? ''}`));
  informer.onDelete((cm) => events.push(`delete ${cm.metadata?.uid ?? ''}`));
  await informer.start();
  try {
    await waitFor('the relist after 410 Gone', () => Promise.resolve(informer.relists >= 2 ? true : undefined), 30_000);
    const [a, b] = [first.metadata?.uid ?? '', second?.metadata?.uid ?? ''];
    expect(events).toEqual([`upsert ${a}`, `delete ${a}`, `upsert ${b}`]);
    expect(informer.get('successor/app')?.metadata?.uid).toBe(b);
    expect([informer.byIndex('web').length, informer.byIndex('db').length]).toEqual([0, 1]);
  } finally {
    await informer.stop();
    await Promise.all([client.close(), admin.close()]);
  }
});
