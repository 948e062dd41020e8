// A list-watch cache that keeps itself alive. @kubernetes/client-node's informer has known gaps
// (no relist on 410 Gone, hangs after silent stalls); this one lists, then watches from the
// list's resourceVersion, and:
// - relists when the server says 410 Gone (the resourceVersion is too old);
// - restarts the watch when it ends, errors, or stalls (the server closes every watch after a
//   short timeoutSeconds, and client-node aborts a watch silent for 30 s);
// - backs off exponentially while the API server is unreachable.
import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observability/logger.js';
import { describeError } from './errors.js';

export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export interface InformerOptions<T> {
  name: string;
  /** API path to watch, for example /api/v1/pods. */
  path: string;
  list: () => Promise<ListResult<T>>;
  labelSelector?: string;
}

type Handler<T> = (object: T) => void;

class GoneError extends Error {}

export function objectKey(object: KubernetesObject): string {
  const { namespace, name } = object.metadata ?? {};
  return namespace ? `${namespace}/${name ?? ''}` : (name ?? '');
}

export class Informer<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
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
    private readonly kc: KubeConfig,
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

  private isStopped(): boolean {
    return this.stopped;
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Starts the loop; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    let markSynced: () => void = () => undefined;
    const synced = new Promise<void>((resolve) => (markSynced = resolve));
    this.loop = this.run(markSynced);
    await synced;
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

  private async relist(): Promise<void> {
    const result = await this.options.list();
    this.relists++;
    const seen = new Set<string>();
    for (const item of result.items) {
      const key = objectKey(item);
      seen.add(key);
      this.store(item);
    }
    for (const [key, object] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        for (const handler of this.deletes) handler(object);
      }
    }
    this.resourceVersion = result.metadata?.resourceVersion ?? '';
    this.syncedOnce = true;
  }

  private store(object: T): void {
    this.cache.set(objectKey(object), object);
    for (const handler of this.upserts) handler(object);
  }

  private watchOnce(): Promise<void> {
    return new Promise((resolve, reject) => {
      let gone = false;
      const params = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        // Below client-node's 30 s inactivity abort: the server ends quiet watches first.
        timeoutSeconds: 20 + Math.floor(Math.random() * 8),
        labelSelector: this.options.labelSelector,
      };
      new Watch(this.kc)
        .watch(
          this.options.path,
          params,
          (type: string, object: T & { code?: number }) => {
            if (type === 'ERROR') {
              if (object.code === 410) gone = true;
              return;
            }
            const version = object.metadata?.resourceVersion;
            if (version) this.resourceVersion = version;
            if (type === 'ADDED' || type === 'MODIFIED') this.store(object);
            else if (type === 'DELETED') {
              this.cache.delete(objectKey(object));
              for (const handler of this.deletes) handler(object);
            }
          },
          (error: unknown) => {
            this.abort = undefined;
            if (gone || (error as { statusCode?: number } | null)?.statusCode === 410) reject(new GoneError());
            else if (error && !this.stopped) reject(error instanceof Error ? error : new Error(describeError(error)));
            else resolve();
          },
        )
        .then(
          (abort) => {
            this.abort = abort;
            if (this.stopped) abort.abort();
          },
          reject,
        );
    });
  }
}
