// A list-watch cache that keeps itself alive: it lists, then watches from the list's
// resourceVersion, and:
// - relists when the server says 410 Gone (the resourceVersion is too old);
// - restarts the watch when it ends, errors, or stalls (the server closes every watch after a
//   short timeoutSeconds, and a watch silent for a minute is given up);
// - backs off exponentially while the API server is unreachable.
// It lists in pages, keeps only what `transform` leaves of each object (as controller-runtime's
// cache transforms do: thousands of whole pods do not fit a small memory limit), and can index
// objects by one key, so a controller finds a product's pods without scanning them all.
import type { KubernetesObject } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observability/logger.js';
import { ApiError, type KubeClient } from '../kube/api.js';
import { describeError } from '../kube/errors.js';

export interface ListResult<T> {
  items: T[];
  /** As the API server sends it (`continue`; client-node's models call it `_continue`). */
  metadata?: { resourceVersion?: string; continue?: string };
}

export interface InformerOptions<T> {
  name: string;
  /** API path to watch, for example /api/v1/pods. */
  path: string;
  /**
   * Lists one page; called again with the page's continue token until there is none. By default
   * a GET of `path` with the selectors, in pages of 500.
   */
  list?: (continueToken?: string) => Promise<ListResult<T>>;
  labelSelector?: string;
  /** For one named object: `metadata.name=NAME` (RBAC can then limit list and watch to that name). */
  fieldSelector?: string;
  /** What the cache keeps of each object (applied before handlers see it). */
  transform?: (object: T) => T;
  /** An index key of each object, for byIndex(). */
  indexBy?: (object: T) => string | undefined;
}

type Handler<T> = (object: T) => void;

class GoneError extends Error {}

/** The cache key of an object: "namespace/name", or the name of a cluster-scoped one. */
export function objectKey(object: KubernetesObject): string {
  return keyOf(object.metadata?.namespace, object.metadata?.name ?? '');
}

export function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** What a reconciler reads of a cache: an Informer, or a test's in-memory one. */
export interface Cache<T> {
  get(key: string): T | undefined;
  list(): T[];
  /** Objects whose index key is `value`. */
  byIndex(value: string): T[];
}

export class Informer<T extends KubernetesObject> implements Cache<T> {
  private readonly cache = new Map<string, T>();
  private readonly index = new Map<string, Set<string>>();
  private readonly upserts: Handler<T>[] = [];
  private readonly deletes: Handler<T>[] = [];
  private resourceVersion: string | undefined;
  private stopped = false;
  private abort: AbortController | undefined;
  // Cancels a backoff sleep, so stop() never waits out a retry delay.
  private readonly stopping = new AbortController();
  private syncedOnce = false;
  private loop: Promise<void> | undefined;
  /** Counts restarts, for tests and logs. */
  relists = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly options: InformerOptions<T>,
    private readonly log: Logger,
  ) {}

  onUpsert(handler: Handler<T>): void {
    this.upserts.push(handler);
  }

  onDelete(handler: Handler<T>): void {
    this.deletes.push(handler);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /** Objects whose indexBy key is `value`. */
  byIndex(value: string): T[] {
    const keys = this.index.get(value);
    if (!keys) return [];
    const objects: T[] = [];
    for (const key of keys) {
      const object = this.cache.get(key);
      if (object) objects.push(object);
    }
    return objects;
  }

  private isStopped(): boolean {
    return this.stopped;
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Starts the loop; resolves once the first list is in the cache (or stop() was called). */
  /** Resolves once the cache is synced. When `signal` aborts first (start-up aborted), the informer stops and this resolves. */
  async start(signal?: AbortSignal): Promise<void> {
    let markSynced: () => void = () => undefined;
    const synced = new Promise<void>((resolve) => (markSynced = resolve));
    this.loop = this.run(markSynced);
    const stopOnAbort = (): void => void this.stop();
    signal?.addEventListener('abort', stopOnAbort, { once: true });
    try {
      // The loop ends without a sync only when stop() is called first.
      await Promise.race([synced, this.loop]);
    } finally {
      signal?.removeEventListener('abort', stopOnAbort);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    this.abort?.abort();
    await this.loop;
  }

  private async run(markSynced: () => void): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === undefined) {
          await this.relist();
          markSynced();
        }
        await this.watchOnce();
        failures = 0;
      } catch (error) {
        // stop() may have been called while the watch was failing.
        if (this.isStopped()) break;
        if (error instanceof GoneError) {
          this.log.info('watch expired, relisting', { informer: this.options.name });
          this.resourceVersion = undefined;
          continue;
        }
        failures++;
        const delay = Math.min(30_000, 200 * 2 ** Math.min(failures, 8)) * (0.5 + Math.random() / 2);
        this.log.warn('watch failed, retrying', { informer: this.options.name, error: describeError(error), retryInMs: Math.round(delay) });
        await sleep(delay, undefined, { signal: this.stopping.signal }).catch(() => undefined);
      }
    }
  }

  private readonly listPage = (continueToken?: string): Promise<ListResult<T>> => {
    const query = new URLSearchParams({ limit: '500', ...(continueToken ? { continue: continueToken } : {}), ...this.selectors() });
    return this.client.request<ListResult<T>>('GET', `${this.options.path}?${query.toString()}`);
  };

  private selectors(): Record<string, string> {
    const { labelSelector, fieldSelector } = this.options;
    return { ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) };
  }

  private async relist(): Promise<void> {
    const seen = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await (this.options.list ?? this.listPage)(continueToken);
      for (const item of page.items) seen.add(this.store(item));
      continueToken = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion;
    } while (continueToken && !this.stopped);
    this.relists++;
    for (const [key, object] of this.cache) {
      if (!seen.has(key)) this.remove(key, object);
    }
    this.resourceVersion = resourceVersion ?? '';
    this.syncedOnce = true;
  }

  private kept(received: T): T {
    return this.options.transform ? this.options.transform(received) : received;
  }

  /**
   * Caches what the transform keeps of the object; returns its key. An object of another uid
   * under the key is a successor whose predecessor's deletion this informer never saw (a relist
   * after a watch that missed a delete and create of the name): its delete handlers run first,
   * so what is kept of it by uid goes, and nothing of it passes for the successor's.
   */
  private store(received: T): string {
    const object = this.kept(received);
    const key = objectKey(object);
    let previous = this.cache.get(key);
    if (previous && previous.metadata?.uid !== object.metadata?.uid) {
      this.remove(key, previous);
      previous = undefined;
    }
    this.cache.set(key, object);
    this.reindex(key, previous, object);
    for (const handler of this.upserts) handler(object);
    return key;
  }

  /** Drops the object under key; handlers see its last known state. */
  private remove(key: string, last: T): void {
    this.reindex(key, this.cache.get(key), undefined);
    this.cache.delete(key);
    for (const handler of this.deletes) handler(last);
  }

  private reindex(key: string, previous: T | undefined, next: T | undefined): void {
    const indexBy = this.options.indexBy;
    if (!indexBy) return;
    const before = previous && indexBy(previous);
    const after = next && indexBy(next);
    if (before === after) return;
    if (before !== undefined) {
      const keys = this.index.get(before);
      keys?.delete(key);
      if (keys?.size === 0) this.index.delete(before);
    }
    if (after !== undefined) {
      let keys = this.index.get(after);
      if (!keys) this.index.set(after, (keys = new Set()));
      keys.add(key);
    }
  }

  private async watchOnce(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    if (this.stopped) abort.abort();
    const seen = { gone: false };
    const query = new URLSearchParams({
      watch: '1',
      resourceVersion: this.resourceVersion ?? '',
      allowWatchBookmarks: 'true',
      // The server ends quiet watches after this; a watch silent much longer has stalled.
      timeoutSeconds: String(20 + Math.floor(Math.random() * 8)),
      ...this.selectors(),
    });
    try {
      await this.client.watch(
        `${this.options.path}?${query.toString()}`,
        (type, received) => {
          const object = received as T & { code?: number };
          if (type === 'ERROR') {
            if (object.code === 410) seen.gone = true;
            return;
          }
          const version = object.metadata?.resourceVersion;
          if (version) this.resourceVersion = version;
          if (type === 'ADDED' || type === 'MODIFIED') this.store(object);
          else if (type === 'DELETED') this.remove(objectKey(object), this.kept(object));
        },
        abort.signal,
      );
    } catch (error) {
      if (error instanceof ApiError && error.code === 410) throw new GoneError();
      throw error;
    } finally {
      this.abort = undefined;
    }
    if (seen.gone) throw new GoneError();
  }
}
