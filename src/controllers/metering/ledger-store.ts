// Keeps each product's usage ledger in ConfigMaps of the operator's own namespace: a head named
// after the product's uid (progress and closed hours) and the pods in shards of at most
// `shardCapacity` (`<head>-<n>`), so a product of 50,000 pods stays far from the 1 MiB limit of
// one object, and a pod that starts or ends rewrites only its own shard. Writes are
// compare-and-swap (resourceVersion): a replica that lost the Lease but still writes gets a
// conflict, never overwrites its successor. The leader keeps what it last read or wrote, so it
// reads the ConfigMaps only when it starts or after a conflict.
//
// The order of writes makes a crash at any point safe: the shards first, then the head, so a head
// never counts on a shard write that has not happened; and the metering reconciler prunes a
// ledger only after writing it as it was (ledger.ts, pruned), so pods leave a shard only once a
// head that no longer needs them is written.
import { ledgerPrefix } from '../../api/names.js';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { group, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { segment, type ApiClient } from '../../kube/api.js';
import type { Ledger, LedgerPod } from './ledger.js';
import { isConflict, isNotFound } from '../../kube/errors.js';
import { objectKey } from '../../runtime/informer.js';

const headKey = 'ledger.json';
const shardKey = 'pods.json';
/** About 100 bytes a pod: a shard of 1,000 stays near 100 KiB. */
export const shardCapacity = 1_000;
const appLabel = { 'app.kubernetes.io/name': 'entitlement-operator' };
const headComponent = 'usage-ledger';
const shardComponent = 'usage-ledger-shard';
/** On a shard: the uid of the product whose ledger it is part of. */
export const ledgerLabel = `${group}/ledger`;

/**
 * A pod as stored: [from, to or null, vCPU, MemoryGiB, name, serviceAccount?, earlier ranges?]
 * (the earlier ranges flat: from, to, from, to, ...).
 */
type StoredPod = [number, number | null, number, number, string, string?, number[]?];
type StoredLedger = Omit<Ledger, 'pods' | 'closed'> & { pods?: Record<string, StoredPod>; closed?: Ledger['closed'] };

function encodePod(p: LedgerPod): StoredPod {
  const stored: StoredPod = [p.from, p.to ?? null, p.usage.vCPU, p.usage.MemoryGiB, p.name];
  if ((p.serviceAccount && p.serviceAccount !== 'default') || p.earlier) stored.push(p.serviceAccount ?? 'default');
  if (p.earlier) stored.push(p.earlier.flat());
  return stored;
}

function decodePod([from, to, vCPU, MemoryGiB, name, serviceAccount, earlier]: StoredPod): LedgerPod {
  const ranges = earlier && earlier.length > 0 ? { earlier: pairs(earlier) } : {};
  return { name, serviceAccount: serviceAccount ?? 'default', from, ...(to === null ? {} : { to }), ...ranges, usage: { vCPU, MemoryGiB } };
}

function encodePods(pods: Iterable<[string, LedgerPod]>): string {
  const stored: Record<string, StoredPod> = {};
  for (const [uid, p] of pods) stored[uid] = encodePod(p);
  return JSON.stringify(stored);
}

/** The whole ledger as one text (the head holds it without its pods). */
export function encodeLedger(ledger: Ledger): string {
  const pods: Record<string, StoredPod> = {};
  for (const [uid, p] of Object.entries(ledger.pods)) pods[uid] = encodePod(p);
  return JSON.stringify({ ...ledger, pods } satisfies StoredLedger);
}

export function decodeLedger(text: string): Ledger | undefined {
  const stored = JSON.parse(text) as StoredLedger | null;
  if (!stored || typeof stored.productUid !== 'string') return undefined;
  const pods: Record<string, LedgerPod> = {};
  for (const [uid, p] of Object.entries(stored.pods ?? {})) pods[uid] = decodePod(p);
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

function shardName(productUid: string, shard: number): string {
  return `${ledgerName(productUid)}-${shard}`;
}

/** A shard as last written (its pods the very objects of the ledger's, so what did not change since is seen as such). */
interface Shard {
  resourceVersion?: string;
  pods: Map<string, LedgerPod>;
}

/**
 * The ledger that a head and its shards hold (what `LedgerStore.read` returns), and the shards
 * by number. A pod in a shard wins over the same pod kept in the head by an earlier release.
 */
export function ledgerFromConfigMaps(head: V1ConfigMap, shards: readonly V1ConfigMap[]): { ledger: Ledger; shards: Map<number, Shard> } | undefined {
  const ledger = decodeLedger(head.data?.[headKey] ?? 'null');
  if (!ledger) return undefined;
  const byShard = new Map<number, Shard>();
  const pods = { ...ledger.pods };
  for (const map of shards) {
    const entries = new Map(Object.entries(JSON.parse(map.data?.[shardKey] ?? '{}') as Record<string, StoredPod>).map(([uid, p]) => [uid, decodePod(p)] as const));
    for (const [uid, entry] of entries) pods[uid] = entry;
    const resourceVersion = map.metadata?.resourceVersion;
    byShard.set(shardNumber(ledger.productUid, map), { ...(resourceVersion ? { resourceVersion } : {}), pods: entries });
  }
  return { ledger: { ...ledger, pods }, shards: byShard };
}

/** What the leader knows of a product's ledger: as last read or written. */
interface Known {
  ledger?: Ledger;
  headVersion?: string;
  headText?: string;
  shards: Map<number, Shard>;
  shardOf: Map<string, number>;
}

export class LedgerStore {
  private readonly known = new Map<string, Known>();
  /**
   * Reads in flight by product, and whether its ledger was forgotten (deleted or released) while
   * one was: such a read does not keep what it read. By product: another ledger's deletion must
   * not cost this one its state (its next write would take over every shard again).
   */
  private readonly reading = new Map<string, { reads: number; forgotten: boolean }>();

  constructor(
    private readonly client: ApiClient,
    private readonly namespace: string,
  ) {}

  /** The product's ledger, or undefined when it has none yet. */
  async read(productUid: string): Promise<Ledger | undefined> {
    const known = this.known.get(productUid);
    if (known?.ledger) return known.ledger;
    const flight = this.reading.get(productUid) ?? { reads: 0, forgotten: false };
    this.reading.set(productUid, flight);
    flight.reads++;
    try {
      const state = await this.readState(productUid);
      // A write of this ledger begun meanwhile (another product's reconcile reads it) keeps its own state;
      // a ledger deleted meanwhile (its product gone) is not kept, else it would stay for good.
      if (state && !this.known.has(productUid) && !flight.forgotten) this.known.set(productUid, state);
      return state?.ledger;
    } finally {
      if (--flight.reads === 0) this.reading.delete(productUid);
    }
  }

  private async readState(productUid: string): Promise<Known | undefined> {
    let head: V1ConfigMap;
    try {
      head = await this.client.request<V1ConfigMap>('GET', this.path(ledgerName(productUid)));
    } catch (error) {
      // Shards without a head are what the first write of a ledger left, if it did not finish: the next write takes them over.
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const shards = await this.listShards(productUid);
    const read = ledgerFromConfigMaps(head, shards);
    if (!read || read.ledger.productUid !== productUid) throw new Error(`ConfigMap ${this.namespace}/${ledgerName(productUid)} holds no ledger of product ${productUid}`);
    const state: Known = { ledger: read.ledger, ...(head.metadata?.resourceVersion ? { headVersion: head.metadata.resourceVersion } : {}), headText: head.data?.[headKey] ?? '', shards: read.shards, shardOf: new Map() };
    for (const [shard, { pods }] of read.shards) for (const uid of pods.keys()) state.shardOf.set(uid, shard);
    return state;
  }

  /** Writes what changed since the ledger was last read or written. A conflict drops what this replica knew. */
  async write(product: MarketplaceProduct, ledger: Ledger): Promise<void> {
    const uid = ledger.productUid;
    const state = this.known.get(uid) ?? { shards: new Map<number, Shard>(), shardOf: new Map<string, number>() };
    if (state.ledger === ledger) return;
    this.known.set(uid, state);
    try {
      const target = this.assign(state, ledger);
      for (const [shard, pods] of target) await this.writeShard(product, state, uid, shard, pods);
      await this.writeHead(product, state, ledger);
      for (const podUid of [...state.shardOf.keys()]) if (!(podUid in ledger.pods)) state.shardOf.delete(podUid);
      state.ledger = ledger;
    } catch (error) {
      if (isConflict(error) || isNotFound(error)) this.known.delete(uid);
      throw error;
    }
  }

  /** The product uids of every ledger in the namespace (heads and shards). */
  async list(): Promise<string[]> {
    const maps = await this.listMaps(`${labelSelector(appLabel)},app.kubernetes.io/component in (${headComponent},${shardComponent})`);
    const uids = maps.map((m) => m.metadata?.labels?.[ledgerLabel] ?? m.metadata?.name?.slice(ledgerPrefix.length) ?? '');
    return [...new Set(uids.filter((u) => u !== ''))];
  }

  /** The ledger as this replica last read or wrote it, without reading it (undefined: it holds none). */
  cached(productUid: string): Ledger | undefined {
    return this.known.get(productUid)?.ledger;
  }

  /** How many products' ledgers this replica holds in memory. */
  get held(): number {
    return this.known.size;
  }

  /** Forgets what this replica holds of the ledger (it stays in the cluster; a later read reads it again). */
  release(productUid: string): void {
    this.known.delete(productUid);
    const flight = this.reading.get(productUid);
    if (flight) flight.forgotten = true;
  }

  async delete(productUid: string): Promise<void> {
    this.release(productUid);
    for (const shard of await this.listShards(productUid)) await this.deleteMap(shard.metadata?.name ?? '');
    await this.deleteMap(ledgerName(productUid));
  }

  /** The pods of each shard as the ledger has them: pods kept where they are, new ones where there is room. */
  private assign(state: Known, ledger: Ledger): Map<number, Map<string, LedgerPod>> {
    const target = new Map<number, Map<string, LedgerPod>>([...state.shards.keys()].map((shard) => [shard, new Map()]));
    const fresh: [string, LedgerPod][] = [];
    for (const [uid, entry] of Object.entries(ledger.pods)) {
      const shard = state.shardOf.get(uid);
      if (shard === undefined) fresh.push([uid, entry]);
      else (target.get(shard) ?? target.set(shard, new Map()).get(shard))?.set(uid, entry);
    }
    for (const [uid, entry] of fresh) {
      const shard = withRoom(target);
      target.get(shard)?.set(uid, entry);
      state.shardOf.set(uid, shard);
    }
    return target;
  }

  /** Writes a shard that changed; one left empty goes. */
  private async writeShard(product: MarketplaceProduct, state: Known, productUid: string, shard: number, pods: Map<string, LedgerPod>): Promise<void> {
    const written = state.shards.get(shard);
    if (written ? sameEntries(written.pods, pods) : pods.size === 0) return;
    const name = shardName(productUid, shard);
    if (pods.size === 0) {
      await this.deleteMap(name, written?.resourceVersion);
      state.shards.delete(shard);
      return;
    }
    const labels = { ...appLabel, 'app.kubernetes.io/component': shardComponent, [ledgerLabel]: productUid };
    const map = await this.put(product, name, labels, written?.resourceVersion, { [shardKey]: encodePods(pods) });
    state.shards.set(shard, { ...(map.metadata?.resourceVersion ? { resourceVersion: map.metadata.resourceVersion } : {}), pods });
  }

  private async writeHead(product: MarketplaceProduct, state: Known, ledger: Ledger): Promise<void> {
    const text = encodeLedger({ ...ledger, pods: {} });
    if (text === state.headText) return;
    const map = await this.put(product, ledgerName(ledger.productUid), { ...appLabel, 'app.kubernetes.io/component': headComponent }, state.headVersion, { [headKey]: text });
    state.headText = text;
    if (map.metadata?.resourceVersion) state.headVersion = map.metadata.resourceVersion;
  }

  /**
   * Replaces the version last seen of the ConfigMap, or creates it. A shard that exists though
   * this replica never saw it was left by a first write that did not finish: it is taken over.
   */
  private async put(product: MarketplaceProduct, name: string, labels: Record<string, string>, resourceVersion: string | undefined, data: Record<string, string>): Promise<V1ConfigMap> {
    const body = (version: string | undefined): V1ConfigMap => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: this.namespace, labels, annotations: { [`${group}/product`]: objectKey(product) }, ...(version ? { resourceVersion: version } : {}) },
      data,
    });
    if (resourceVersion) return this.client.request<V1ConfigMap>('PUT', this.path(name), body(resourceVersion));
    try {
      return await this.client.request<V1ConfigMap>('POST', `/api/v1/namespaces/${segment(this.namespace)}/configmaps`, body(undefined));
    } catch (error) {
      if (!isConflict(error) || labels['app.kubernetes.io/component'] !== shardComponent) throw error;
      const existing = await this.client.request<V1ConfigMap>('GET', this.path(name));
      return this.client.request<V1ConfigMap>('PUT', this.path(name), body(existing.metadata?.resourceVersion));
    }
  }

  private listShards(productUid: string): Promise<V1ConfigMap[]> {
    return this.listMaps(`${labelSelector(appLabel)},app.kubernetes.io/component=${shardComponent},${ledgerLabel}=${productUid}`);
  }

  private async listMaps(selector: string): Promise<V1ConfigMap[]> {
    return (await this.client.request<{ items: V1ConfigMap[] }>('GET', `/api/v1/namespaces/${segment(this.namespace)}/configmaps?labelSelector=${encodeURIComponent(selector)}`)).items;
  }

  /** Deletes the ConfigMap (only the version last seen of it, when given). */
  private async deleteMap(name: string, resourceVersion?: string): Promise<void> {
    try {
      await this.client.send('DELETE', this.path(name), resourceVersion ? { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion } } : undefined);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  private path(name: string): string {
    return `/api/v1/namespaces/${segment(this.namespace)}/configmaps/${segment(name)}`;
  }
}

function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
}

/** The first shard with room, or a new one: new pods of a moment go to few shards, and holes fill. */
function withRoom(target: Map<number, Map<string, LedgerPod>>): number {
  let shard = 0;
  while ((target.get(shard)?.size ?? 0) >= shardCapacity) shard++;
  if (!target.has(shard)) target.set(shard, new Map());
  return shard;
}

function shardNumber(productUid: string, map: V1ConfigMap): number {
  return Number(map.metadata?.name?.slice(ledgerName(productUid).length + 1));
}

function sameEntries(a: ReadonlyMap<string, LedgerPod>, b: ReadonlyMap<string, LedgerPod>): boolean {
  if (a.size !== b.size) return false;
  for (const [uid, entry] of a) if (b.get(uid) !== entry) return false;
  return true;
}
