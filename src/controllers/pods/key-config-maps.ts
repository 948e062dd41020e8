// The ConfigMaps that products name in publicKey.configMapKeyRef, each watched on its own (a
// field selector on its name: never every ConfigMap of the cluster). Registrations read the key
// from this cache instead of a GET per pod, and a changed key is noticed: such a ConfigMap lives
// in a team's namespace, so rewriting it makes pods fail with InvalidSignature (a permanent
// reason), and restoring it must heal them. A check's record keeps the key's fingerprint, so a
// pod refused under another key is checked again (rechecks.ts).
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../api/marketplace-product.js';
import { segment, type KubeClient } from '../../kube/api.js';
import { kubeConfigMapReader, type ConfigMapReader } from '../../kube/config-maps.js';
import { Informer, keyOf, objectKey } from '../../runtime/informer.js';
import type { Logger } from '../../observability/logger.js';

interface Watch {
  informer: Informer<V1ConfigMap>;
  synced: Promise<void>;
  /** A digest of the data last seen, to tell a change from a relist. */
  seen?: string;
}

const syncTimeoutMs = 10_000;
const digest = (text: string): string => createHash('sha256').update(text).digest('base64url').slice(0, 16);

export class KeyConfigMaps {
  private readonly watches = new Map<string, Watch>();
  /** The ConfigMap each product names, by product key. */
  private readonly named = new Map<string, string>();
  /** Watches that no product names any more, still stopping. */
  private readonly stopping = new Set<Promise<void>>();
  private readonly listeners: ((productKeys: string[]) => void)[] = [];
  /** A GET, for a ConfigMap no product names. */
  private readonly readOnce: ConfigMapReader;

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
  ) {
    this.readOnce = kubeConfigMapReader(client);
  }

  /** Called with the products that name a watched ConfigMap when its data changed, or it appeared or went. */
  onChange(listener: (productKeys: string[]) => void): void {
    this.listeners.push(listener);
  }

  /** Watches the ConfigMap the product names now (and stops a watch no product names any more). */
  track(product: MarketplaceProduct): void {
    const productKey = objectKey(product);
    const key = configMapOf(product);
    const before = this.named.get(productKey);
    if (before === key) return;
    if (key) this.named.set(productKey, key);
    else this.named.delete(productKey);
    if (key) this.watch(key);
    if (before) this.unwatchUnnamed(before);
  }

  /** The product is gone. */
  untrack(productKey: string): void {
    const before = this.named.get(productKey);
    this.named.delete(productKey);
    if (before) this.unwatchUnnamed(before);
  }

  /**
   * Reads a ConfigMap a product names from its watch. A watch that cannot sync (the API server
   * unreachable, a permission missing) is an error, which the registration retries, not a verdict.
   */
  readonly read: ConfigMapReader = async (namespace, name) => {
    const key = keyOf(namespace, name);
    // No product names it (any more, or not yet): read once, and start no watch nobody would stop.
    if (!this.watches.has(key) && !this.isNamed(key)) return this.readOnce(namespace, name);
    const watch = this.watch(key);
    const timeout = new AbortController();
    await Promise.race([
      watch.synced,
      sleep(syncTimeoutMs, undefined, { signal: timeout.signal }).then(() => {
        throw new Error(`ConfigMap ${key} cannot be read yet: its watch has not synced within ${syncTimeoutMs / 1000} s`);
      }),
    ]).finally(() => {
      timeout.abort();
    });
    const configMap = watch.informer.get(key);
    return configMap ? (configMap.data ?? {}) : undefined;
  };

  /**
   * The product's key as it is now, for the record of a check: a digest of the PEM its ConfigMap
   * holds, or "absent". Undefined for an inline key (the product's generation tracks it) and
   * while the ConfigMap's watch has not synced.
   */
  fingerprint(product: MarketplaceProduct): string | undefined {
    const key = configMapOf(product);
    const ref = product.spec.publicKey.configMapKeyRef;
    const watch = key ? this.watches.get(key) : undefined;
    if (!key || !ref || !watch?.informer.synced) return undefined;
    const pem = watch.informer.get(key)?.data?.[ref.key];
    return pem === undefined ? 'absent' : digest(pem);
  }

  private isNamed(key: string): boolean {
    return [...this.named.values()].includes(key);
  }

  private unwatchUnnamed(key: string): void {
    const watch = this.watches.get(key);
    if (!watch || this.isNamed(key)) return;
    this.watches.delete(key);
    const stopped = watch.informer.stop().finally(() => this.stopping.delete(stopped));
    this.stopping.add(stopped);
  }

  async stop(): Promise<void> {
    const watches = [...this.watches.values()];
    this.watches.clear();
    await Promise.all([...watches.map((watch) => watch.informer.stop()), ...this.stopping]);
  }

  private watch(key: string): Watch {
    const existing = this.watches.get(key);
    if (existing) return existing;
    const [namespace = '', name = ''] = key.split('/');
    const path = `/api/v1/namespaces/${segment(namespace)}/configmaps`;
    const fieldSelector = `metadata.name=${name}`;
    const informer = new Informer<V1ConfigMap>(
      this.client,
      { name: `key-configmap ${key}`, path, fieldSelector },
      this.log,
    );
    const watch: Watch = { informer, synced: informer.start() };
    const changed = (data: string): void => {
      if (watch.seen === data) return;
      watch.seen = data;
      const products = [...this.named].filter(([, named]) => named === key).map(([productKey]) => productKey);
      for (const listener of this.listeners) listener(products);
    };
    informer.onUpsert((configMap) => {
      changed(digest(JSON.stringify(configMap.data ?? {})));
    });
    informer.onDelete(() => {
      changed('absent');
    });
    this.watches.set(key, watch);
    return watch;
  }
}

/** "namespace/name" of the ConfigMap a product's key is in, if it names one. */
function configMapOf(product: MarketplaceProduct): string | undefined {
  const name = product.spec.publicKey.configMapKeyRef?.name;
  return name ? keyOf(product.metadata.namespace, name) : undefined;
}
