// What the pod reconciler keeps by pod and by product is bounded by what the caches hold: a pod
// deleted while its pass is in flight (its delete handler runs before the pass writes), an
// eviction refused as the pod goes, and refused identities once their pods or product are gone.
// The reconciler constructed directly, with an in-memory cache and API server, and the real
// Registrar and AWS SDK clients against the local fake AWS.
import type { ApiClient, Method } from '../../src/kube/api.js';
import { fakeAwsForSuite } from '../support/fake-aws.js';
import { gatedPod, type MemoryApi } from '../support/memory.js';
import { podReconcilerHarness } from '../support/pod-reconciler.js';

const fake = fakeAwsForSuite({ products: { 'refused-code': { error: 'CustomerNotEntitledException' }, 'slow-refused-code': { error: 'CustomerNotEntitledException', delayMs: 500 } } });

/**
 * The API server, where a pod can go between a request's answer and its arrival: `deleteOn` says
 * which requests; the pod is deleted (and the cache shows it) after the server answered.
 */
class PodGoesMeanwhile implements ApiClient {
  deleteOn: ((method: Method, path: string) => boolean) | undefined;

  constructor(private readonly api: MemoryApi) {}

  async request<T>(method: Method, path: string, body?: unknown): Promise<T> {
    return JSON.parse(await this.send(method, path, body)) as T;
  }

  async send(method: Method, path: string, body?: unknown): Promise<string> {
    const answer = this.api.send(method, path, body);
    await answer.catch(() => undefined);
    const pod = /\/namespaces\/([^/]+)\/pods\/([^/]+)/.exec(path);
    if (pod && this.deleteOn?.(method, path)) void this.api.send('DELETE', `/api/v1/namespaces/${pod[1] ?? ''}/pods/${pod[2] ?? ''}`);
    return answer;
  }
}

function harness() {
  return podReconcilerHarness(fake(), { client: (api) => new PodGoesMeanwhile(api) });
}

it('a pod deleted after its verdict was written but before the answer came back leaves no record behind', async () => {
  const h = harness();
  h.product('app');
  h.api.putPod(gatedPod('shop', 'web-0', 'app'));
  h.client.deleteOn = (method) => method === 'PATCH';
  await h.reconcile('shop/web-0');
  expect(h.api.pods.has('shop/web-0')).toBe(false);
  expect(h.api.made('PATCH', '/api/v1/namespaces/shop/pods/web-0')).toHaveLength(1);
  expect(h.reconciler.sizes().pods).toBe(0);
});

it('a pod deleted while its eviction is refused leaves no refusal behind', async () => {
  const h = harness();
  h.product('refused');
  const pod = gatedPod('shop', 'web-0', 'refused');
  h.api.putPod({ ...pod, spec: { ...pod.spec, containers: pod.spec?.containers ?? [], schedulingGates: [] } });
  await h.reconcile('shop/web-0'); // ungated without a verdict: a fresh check id
  await h.reconcile('shop/web-0'); // refused: NotEntitled
  h.api.evictionRefusal = 429;
  h.client.deleteOn = (method, path) => method === 'POST' && path.endsWith('/eviction');
  expect(await h.reconcile('shop/web-0')).toMatchObject({ requeueAfterMs: expect.any(Number) as number });
  expect(h.api.pods.has('shop/web-0')).toBe(false);
  expect(h.reconciler.sizes()).toMatchObject({ pods: 0, evictions: 0 });
});

it("a refused identity's record goes with its last pod and with its product, and is never made for a product deleted while AWS answered", async () => {
  const h = harness();
  h.product('refused', { onRevocation: 'Evict' });
  h.api.putPod(gatedPod('shop', 'web-0', 'refused'));
  h.api.putPod(gatedPod('shop', 'web-1', 'refused'));
  await h.reconcile('shop/web-0');
  expect(h.reconciler.sizes().revokedIdentities).toBe(1);
  await h.api.send('DELETE', '/api/v1/namespaces/shop/pods/web-0');
  expect(h.reconciler.sizes().revokedIdentities).toBe(1); // web-1 has the same identity
  await h.api.send('DELETE', '/api/v1/namespaces/shop/pods/web-1');
  expect(h.reconciler.sizes().revokedIdentities).toBe(0);

  h.api.putPod(gatedPod('shop', 'web-2', 'refused'));
  await h.reconcile('shop/web-2');
  expect(h.reconciler.sizes().revokedIdentities).toBe(1);
  h.deleteProduct('refused');
  expect(h.reconciler.sizes().revokedIdentities).toBe(0);

  h.product('slow-refused', { onRevocation: 'Evict' });
  h.api.putPod(gatedPod('shop', 'db-0', 'slow-refused'));
  const running = h.reconcile('shop/db-0');
  await new Promise((resolve) => setTimeout(resolve, 200));
  h.deleteProduct('slow-refused');
  await running;
  expect(h.reconciler.sizes().revokedIdentities).toBe(0);
});
