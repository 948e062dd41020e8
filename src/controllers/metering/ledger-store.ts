// Keeps each product's usage ledger in a ConfigMap of the operator's own namespace, named after
// the product's uid. Writes are compare-and-swap (resourceVersion): a replica that lost the
// Lease but still writes gets a conflict, never overwrites its successor. The leader keeps the
// last version it read or wrote, so it reads the ConfigMap only when it starts or after a
// conflict.
import { ledgerPrefix } from '../../api/names.js';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { group, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { segment, type ApiClient } from '../../kube/api.js';
import type { Ledger, LedgerPod } from './ledger.js';
import { isConflict, isNotFound } from '../../kube/errors.js';
import { objectKey } from '../../runtime/informer.js';

const dataKey = 'ledger.json';
const labels = { 'app.kubernetes.io/name': 'entitlement-operator', 'app.kubernetes.io/component': 'usage-ledger' };

/**
 * A pod as stored: [from, to or null, vCPU, MemoryGiB, name, serviceAccount?, earlier ranges?]
 * (the earlier ranges flat: from, to, from, to, ...). About 100 bytes with its uid and a
 * Deployment pod's name, so a ConfigMap (1 MiB) holds some 10,000 pods of one product.
 */
type StoredPod = [number, number | null, number, number, string, string?, number[]?];
type StoredLedger = Omit<Ledger, 'pods' | 'closed'> & { pods: Record<string, StoredPod>; closed?: Ledger['closed'] };

export function encodeLedger(ledger: Ledger): string {
  const pods: Record<string, StoredPod> = {};
  for (const [uid, p] of Object.entries(ledger.pods)) {
    const stored: StoredPod = [p.from, p.to ?? null, p.usage.vCPU, p.usage.MemoryGiB, p.name];
    if ((p.serviceAccount && p.serviceAccount !== 'default') || p.earlier) stored.push(p.serviceAccount ?? 'default');
    if (p.earlier) stored.push(p.earlier.flat());
    pods[uid] = stored;
  }
  return JSON.stringify({ ...ledger, pods } satisfies StoredLedger);
}

export function decodeLedger(text: string): Ledger | undefined {
  const stored = JSON.parse(text) as StoredLedger | null;
  if (!stored || typeof stored.productUid !== 'string' || typeof stored.pods !== 'object') return undefined;
  const pods: Record<string, LedgerPod> = {};
  for (const [uid, [from, to, vCPU, MemoryGiB, name, serviceAccount, earlier]] of Object.entries(stored.pods)) {
    const ranges = earlier && earlier.length > 0 ? { earlier: pairs(earlier) } : {};
    pods[uid] = { name, serviceAccount: serviceAccount ?? 'default', from, ...(to === null ? {} : { to }), ...ranges, usage: { vCPU, MemoryGiB } };
  }
  // Written by a release that did not close hours: the hours it may have sent are reported as it did.
  const legacy = stored.closed === undefined && stored.nextHour < stored.observedThrough ? { legacyThrough: stored.observedThrough - 1 } : {};
  return { ...stored, ...legacy, closed: stored.closed ?? {}, pods };
}

function pairs(flat: readonly number[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) ranges.push([flat[i] ?? 0, flat[i + 1] ?? 0]);
  return ranges;
}

export function ledgerName(productUid: string): string {
  return `${ledgerPrefix}${productUid}`;
}

interface Stored {
  ledger: Ledger;
  resourceVersion?: string;
}

export class LedgerStore {
  private readonly known = new Map<string, Stored>();

  constructor(
    private readonly client: ApiClient,
    private readonly namespace: string,
  ) {}

  /** The product's ledger, or undefined when it has none yet. */
  async read(productUid: string): Promise<Ledger | undefined> {
    const known = this.known.get(productUid);
    if (known) return known.ledger;
    try {
      const map = await this.client.request<V1ConfigMap>('GET', this.path(productUid));
      const ledger = decodeLedger(map.data?.[dataKey] ?? 'null');
      if (!ledger || ledger.productUid !== productUid) throw new Error(`ConfigMap ${this.namespace}/${ledgerName(productUid)} holds no ledger of product ${productUid}`);
      this.known.set(productUid, { ledger, ...(map.metadata?.resourceVersion ? { resourceVersion: map.metadata.resourceVersion } : {}) });
      return ledger;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Writes the ledger if it changed since it was read. A conflict drops what this replica knew. */
  async write(product: MarketplaceProduct, ledger: Ledger): Promise<void> {
    const uid = ledger.productUid;
    const known = this.known.get(uid);
    if (known?.ledger === ledger) return;
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: ledgerName(uid),
        namespace: this.namespace,
        labels,
        annotations: { [`${group}/product`]: objectKey(product) },
        ...(known?.resourceVersion ? { resourceVersion: known.resourceVersion } : {}),
      },
      data: { [dataKey]: encodeLedger(ledger) },
    };
    try {
      const written = known
        ? await this.client.request<V1ConfigMap>('PUT', this.path(uid), body)
        : await this.client.request<V1ConfigMap>('POST', `/api/v1/namespaces/${segment(this.namespace)}/configmaps`, body);
      this.known.set(uid, { ledger, ...(written.metadata?.resourceVersion ? { resourceVersion: written.metadata.resourceVersion } : {}) });
    } catch (error) {
      if (isConflict(error) || isNotFound(error)) this.known.delete(uid);
      throw error;
    }
  }

  /** The product uids of every ledger in the namespace. */
  async list(): Promise<string[]> {
    const selector = encodeURIComponent(Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(','));
    const maps = await this.client.request<{ items: V1ConfigMap[] }>('GET', `/api/v1/namespaces/${segment(this.namespace)}/configmaps?labelSelector=${selector}`);
    return maps.items.map((m) => m.metadata?.name ?? '').filter((name) => name.startsWith(ledgerPrefix)).map((name) => name.slice(ledgerPrefix.length));
  }

  async delete(productUid: string): Promise<void> {
    this.known.delete(productUid);
    try {
      await this.client.send('DELETE', this.path(productUid));
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  private path(productUid: string): string {
    return `/api/v1/namespaces/${segment(this.namespace)}/configmaps/${segment(ledgerName(productUid))}`;
  }
}
