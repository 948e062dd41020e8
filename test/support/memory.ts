// In-memory stand-ins for a cache and the API server, for unit tests that construct a reconciler
// directly. MemoryApi answers the requests the reconcilers make as the API server does (merge
// patches of annotations, the gate's removal, uid preconditions, evictions, status and ConfigMap
// writes with resourceVersions), and shows each change in the caches, as a watch would.
import type { KubernetesObject, V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import { schedulingGate, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { ApiError, type ApiClient, type Method } from '../../src/kube/api.js';
import type { Source } from '../../src/runtime/controller.js';
import { objectKey, type Cache } from '../../src/runtime/informer.js';
import { labelledPod } from './pods.js';

export class MemoryCache<T extends KubernetesObject, Stored extends T = T> implements Cache<Stored>, Source<Stored> {
  private readonly objects = new Map<string, Stored>();
  private readonly upserts: ((object: Stored) => void)[] = [];
  private readonly deletes: ((object: Stored) => void)[] = [];

  constructor(private readonly options: { transform?: (object: T) => Stored; indexBy?: (object: Stored) => string | undefined } = {}) {}

  set(object: T): Stored {
    const stored = this.options.transform ? this.options.transform(clone(object)) : (clone(object) as Stored);
    this.objects.set(objectKey(object), stored);
    for (const handler of this.upserts) handler(stored);
    return stored;
  }

  remove(key: string): void {
    const object = this.objects.get(key);
    if (!object) return;
    this.objects.delete(key);
    for (const handler of this.deletes) handler(object);
  }

  get(key: string): Stored | undefined {
    return this.objects.get(key);
  }

  list(): Stored[] {
    return [...this.objects.values()];
  }

  byIndex(value: string): Stored[] {
    return this.list().filter((object) => this.options.indexBy?.(object) === value);
  }

  onUpsert(handler: (object: Stored) => void): void {
    this.upserts.push(handler);
  }

  onDelete(handler: (object: Stored) => void): void {
    this.deletes.push(handler);
  }
}

export interface Request {
  method: Method;
  path: string;
  body: unknown;
}

interface PatchBody {
  metadata?: { uid?: string; annotations?: Record<string, string | null> };
  spec?: { schedulingGates?: { $patch?: string; name: string }[] };
}

const podPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)(\/eviction)?$/;
const productPath = /^\/apis\/marketplace\.entitlements\.io\/v1alpha1\/namespaces\/([^/]+)\/marketplaceproducts\/([^/]+)(\/status)?$/;
const configMapPath = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/?]+))?/;

export class MemoryApi implements ApiClient {
  readonly requests: Request[] = [];
  readonly pods = new Map<string, V1Pod>();
  readonly products = new Map<string, MarketplaceProduct>();
  readonly configMaps = new Map<string, V1ConfigMap>();
  /** The answer to evictions, when not 201 (429: a budget refuses). */
  evictionRefusal: number | undefined;
  private version = 1;

  constructor(private readonly caches: { pods?: MemoryCache<V1Pod, V1Pod>; products?: MemoryCache<MarketplaceProduct> } = {}) {}

  /** Creates or replaces an object as a user would, and shows it in its cache. */
  putPod(pod: V1Pod): V1Pod {
    const stored = { ...clone(pod), metadata: { ...pod.metadata, resourceVersion: String(++this.version) } };
    this.pods.set(objectKey(stored), stored);
    this.caches.pods?.set(stored);
    return stored;
  }

  putProduct(product: MarketplaceProduct): MarketplaceProduct {
    const stored = { ...clone(product), metadata: { ...product.metadata, resourceVersion: String(++this.version) } };
    this.products.set(objectKey(stored), stored);
    this.caches.products?.set(stored);
    return stored;
  }

  /** Requests of a method to paths that match. */
  made(method: Method, path: RegExp | string): Request[] {
    return this.requests.filter((r) => r.method === method && (typeof path === 'string' ? r.path === path : path.test(r.path)));
  }

  async request<T>(method: Method, path: string, body?: unknown): Promise<T> {
    return JSON.parse(await this.send(method, path, body)) as T;
  }

  send(method: Method, path: string, body?: unknown): Promise<string> {
    this.requests.push({ method, path, body: clone(body) });
    try {
      return Promise.resolve(JSON.stringify(this.answer(method, path, body)));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private answer(method: Method, path: string, body: unknown): unknown {
    if (path.includes('/events')) return {};
    const pod = podPath.exec(path);
    if (pod) return this.podRequest(method, `${pod[1] ?? ''}/${pod[2] ?? ''}`, pod[3] !== undefined, body, path);
    const product = productPath.exec(path);
    if (product) return this.productRequest(method, `${product[1] ?? ''}/${product[2] ?? ''}`, body as MarketplaceProduct, path);
    const configMap = configMapPath.exec(path);
    if (configMap) return this.configMapRequest(method, configMap[1] ?? '', configMap[2], body as V1ConfigMap, path);
    throw new Error(`MemoryApi: no answer for ${method} ${path}`);
  }

  private podRequest(method: Method, key: string, eviction: boolean, body: unknown, path: string): unknown {
    const pod = this.pods.get(key);
    if (!pod) throw fail(404, `pods "${key}" not found`, path);
    if (method === 'PATCH') return this.patchPod(pod, body as PatchBody, path);
    const uid = eviction ? (body as { deleteOptions?: { preconditions?: { uid?: string } } }).deleteOptions?.preconditions?.uid : (body as { preconditions?: { uid?: string } } | undefined)?.preconditions?.uid;
    if (uid !== undefined && uid !== pod.metadata?.uid) throw fail(409, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${pod.metadata?.uid ?? ''}`, path);
    if (eviction && this.evictionRefusal) throw fail(this.evictionRefusal, 'Cannot evict pod as it would violate the pod\'s disruption budget.', path);
    if (method === 'POST' || method === 'DELETE') {
      this.pods.delete(key);
      this.caches.pods?.remove(key);
      return {};
    }
    return pod;
  }

  private patchPod(pod: V1Pod, patch: PatchBody, path: string): V1Pod {
    if (patch.metadata?.uid !== undefined && patch.metadata.uid !== pod.metadata?.uid) {
      throw fail(422, 'metadata.uid: field is immutable', path, { details: { causes: [{ field: 'metadata.uid' }] } });
    }
    const merged = { ...pod.metadata?.annotations, ...patch.metadata?.annotations };
    const annotations = Object.fromEntries(Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== null));
    const removed = new Set((patch.spec?.schedulingGates ?? []).filter((g) => g.$patch === 'delete').map((g) => g.name));
    const gates = (pod.spec?.schedulingGates ?? []).filter((g) => !removed.has(g.name));
    const next: V1Pod = { ...pod, metadata: { ...pod.metadata, annotations }, spec: { containers: [], ...pod.spec, schedulingGates: gates } };
    return this.putPod(next);
  }

  private productRequest(method: Method, key: string, body: MarketplaceProduct, path: string): unknown {
    const product = this.products.get(key);
    if (!product) throw fail(404, `marketplaceproducts "${key}" not found`, path);
    if (method === 'GET') return product;
    if (body.metadata.resourceVersion !== product.metadata.resourceVersion) throw fail(409, 'the object has been modified; please apply your changes to the latest version and try again', path);
    return this.putProduct({ ...product, ...(body.status ? { status: body.status } : {}) });
  }

  private configMapRequest(method: Method, namespace: string, name: string | undefined, body: V1ConfigMap, path: string): unknown {
    if (name === undefined && method === 'GET') {
      const selector = new URL(path, 'http://memory').searchParams.get('labelSelector') ?? '';
      return { items: [...this.configMaps.values()].filter((m) => m.metadata?.namespace === namespace && selects(selector, m.metadata.labels ?? {})) };
    }
    const key = `${namespace}/${name ?? body.metadata?.name ?? ''}`;
    const existing = this.configMaps.get(key);
    if (method === 'GET') {
      if (!existing) throw fail(404, `configmaps "${key}" not found`, path);
      return existing;
    }
    if (method === 'DELETE') {
      if (!existing) throw fail(404, `configmaps "${key}" not found`, path);
      this.configMaps.delete(key);
      return {};
    }
    if (method === 'POST' && existing) throw fail(409, `configmaps "${key}" already exists`, path);
    if (method === 'PUT' && existing?.metadata?.resourceVersion !== body.metadata?.resourceVersion) throw fail(409, 'the object has been modified', path);
    const stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++this.version) } };
    this.configMaps.set(key, stored);
    return stored;
  }
}

/** Whether a label selector of `k=v` and `k in (a,b)` terms, comma-separated, selects these labels. */
function selects(selector: string, labels: Record<string, string>): boolean {
  const terms = selector.match(/[^,(]+(?:\([^)]*\))?/g) ?? [];
  return terms.every((term) => {
    const set = /^\s*(\S+)\s+in\s+\(([^)]*)\)\s*$/.exec(term);
    if (set) return set[2]?.split(',').map((v) => v.trim()).includes(labels[set[1] ?? ''] ?? '\u0000') ?? false;
    const [key = '', value] = term.split('=');
    return labels[key.trim()] === value?.trim();
  });
}

/** A deep copy made in this realm (structuredClone's objects come from Node's own, which jest's isolation tells apart). */
function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function fail(code: number, message: string, path: string, extra: object = {}): ApiError {
  return new ApiError(code, message, JSON.stringify({ kind: 'Status', code, message, ...extra }), '', path);
}

/** A labelled pod as the webhook admits it (gated), with the uid the API server gives it. */
export function gatedPod(namespace: string, name: string, product: string, extra: { uid?: string; annotations?: Record<string, string> } = {}): V1Pod {
  const pod = labelledPod(name, product, { schedulingGates: [{ name: schedulingGate }], serviceAccountName: 'default' });
  return { ...pod, metadata: { ...pod.metadata, namespace, uid: extra.uid ?? `${name}-uid`, annotations: { ...extra.annotations } } };
}
