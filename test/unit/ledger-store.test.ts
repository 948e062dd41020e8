// The usage ledger as stored: a head and shards of pods in ConfigMaps (MemoryApi answers as the
// API server does, with resourceVersions). Large ledgers, what a write touches, a crash between
// writes, and ledgers of the earlier single-ConfigMap layout.
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { closeHours, completeHour, newLedger, pruned, type Ledger, type LedgerPod } from '../../src/controllers/metering/ledger.js';
import { encodeLedger, ledgerName, LedgerStore, shardCapacity } from '../../src/controllers/metering/ledger-store.js';
import type { ApiClient, Method } from '../../src/kube/api.js';
import { FailingApi } from '../support/failing-api.js';
import { MemoryApi } from '../support/memory.js';

const namespace = 'entitlement-operator-system';
const hour = 493_000;
const product: MarketplaceProduct = {
  metadata: { namespace: 'shop', name: 'app', uid: 'product-uid' },
  spec: { productCode: 'code', publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: 'Operator' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } },
};

const uid = (i: number): string => `8f14e45f-ceea-467f-a0e6-${String(i).padStart(12, '0')}`;
const entry = (i: number, from: number): LedgerPod => ({ name: `analytics-deployment-7c9d8f6b5d-${String(i).padStart(5, '0')}`, serviceAccount: 'default', from, usage: { vCPU: 1, MemoryGiB: 2 } });

/** The ledger after pods `from`..`to` (exclusive) are observed at `at`. */
function withPods(ledger: Ledger, from: number, to: number, at: number): Ledger {
  const pods = { ...ledger.pods };
  for (let i = from; i < to; i++) pods[uid(i)] = entry(i, at);
  return { ...ledger, observedThrough: at, pods };
}

/** The ledger once pods `from`..`to` (exclusive) ended in the hour it last observed. */
function ended(ledger: Ledger, from: number, to: number): Ledger {
  const pods = { ...ledger.pods };
  for (let i = from; i < to; i++) {
    const p = pods[uid(i)];
    if (p) pods[uid(i)] = { ...p, to: ledger.observedThrough };
  }
  return { ...ledger, pods };
}

/** As the metering reconciler saves: the ledger as it is, then pruned. */
async function save(store: LedgerStore, ledger: Ledger): Promise<Ledger> {
  await store.write(product, ledger);
  const lean = pruned(ledger);
  if (lean !== ledger) await store.write(product, lean);
  return lean;
}

const sizes = (api: MemoryApi): number[] => [...api.configMaps.values()].map((m) => JSON.stringify(m.data).length);
const shardsOf = (api: MemoryApi): string[] => [...api.configMaps.keys()].filter((k) => k.startsWith(`${namespace}/${ledgerName('product-uid')}-`));

describe('the usage ledger store', () => {
  it('holds 50,000 pods in shards far below the object limit, reads them back, and a new pod rewrites only its shard', async () => {
    const api = new MemoryApi();
    const store = new LedgerStore(api, namespace);
    let ledger = withPods(newLedger('product-uid', hour), 0, 50_000, hour);
    await store.write(product, ledger);
    expect(shardsOf(api)).toHaveLength(50_000 / shardCapacity);
    expect(Math.max(...sizes(api))).toBeLessThan(150 * 1024);
    expect(await new LedgerStore(api, namespace).read('product-uid')).toEqual(ledger);

    const before = api.requests.length;
    ledger = withPods(ended(ledger, 10, 11), 50_000, 50_002, hour);
    await store.write(product, ledger);
    const writes = api.requests.slice(before);
    // The shard of the pod that ended and the one with room for the new pods; the head did not change.
    expect(writes.map((r) => `${r.method} ${r.path.split('/').pop() ?? ''}`)).toEqual([`PUT ${ledgerName('product-uid')}-0`, `POST configmaps`]);
    expect(await new LedgerStore(api, namespace).read('product-uid')).toEqual(ledger);
  });

  it('10% churn an hour over 12 hours: every ConfigMap stays small, pods no hour needs leave, scaled down the shards go', async () => {
    const api = new MemoryApi();
    const store = new LedgerStore(api, namespace);
    let ledger = withPods(newLedger('product-uid', hour), 0, 50_000, hour);
    await store.write(product, ledger);
    let next = 50_000;
    for (let h = 1; h <= 12; h++) {
      const oldest = next - 50_000;
      ledger = withPods(ended(ledger, oldest, oldest + 5_000), next, next + 5_000, hour + h);
      next += 5_000;
      ledger = await save(store, closeHours(ledger, product, hour + h));
      ledger = await save(store, completeHour(ledger, hour + h - 1, 'reported'));
      expect(Object.keys(ledger.pods)).toHaveLength(50_000);
      expect(Math.max(...sizes(api))).toBeLessThan(150 * 1024);
    }
    expect(shardsOf(api).length).toBeLessThanOrEqual(50_000 / shardCapacity + 1);
    expect(await new LedgerStore(api, namespace).read('product-uid')).toEqual(ledger);

    // Scaled down to 100 pods: what no hour needs goes, and so do the emptied shards.
    ledger = ended(ledger, 0, next - 100);
    ledger = await save(store, closeHours({ ...ledger, observedThrough: hour + 13 }, product, hour + 13));
    expect(Object.keys(ledger.pods)).toHaveLength(100);
    expect(shardsOf(api).length).toBeLessThanOrEqual(2);
  });

  it('a crash between the writes loses nothing: pods leave their shard only once a written head no longer needs them', async () => {
    const api = new MemoryApi();
    let ledger = withPods(newLedger('product-uid', hour), 0, 10, hour);
    await new LedgerStore(api, namespace).write(product, ledger);
    // Hour +1: five pods ended in the hour before (first seen so now); it closes with their sums, and they are no longer needed.
    ledger = closeHours(withPods(ended(ledger, 0, 5), 10, 12, hour + 1), product, hour + 1);
    expect(Object.keys(pruned(ledger).pods)).toHaveLength(7);
    // The head's write fails: a new leader reads the old head and shards with the five ended in them, and the hour closes the same.
    const failing = new LedgerStore(new FailingApi(api, (method, path) => method === 'PUT' && path.endsWith(ledgerName('product-uid'))), namespace);
    await failing.read('product-uid');
    await expect(save(failing, ledger)).rejects.toThrow('the API server went away');
    const read = await new LedgerStore(api, namespace).read('product-uid');
    expect(read?.closed).toEqual({});
    expect(closeHours({ ...(read as Ledger), observedThrough: hour + 1 }, product, hour + 1).closed[hour]?.quantities).toEqual([10]);
    // The pruning write fails: the new head, and the five still in their shards, ended, counting in no open hour.
    let puts = 0;
    const pruning = new LedgerStore(new FailingApi(api, (method) => method === 'PUT' && ++puts > 2), namespace);
    await pruning.read('product-uid');
    await expect(save(pruning, ledger)).rejects.toThrow('the API server went away');
    const after = (await new LedgerStore(api, namespace).read('product-uid')) as Ledger;
    expect(after.closed[hour]?.quantities).toEqual([10]);
    expect(Object.keys(after.pods)).toHaveLength(12);
    expect(Object.values(after.pods).filter((p) => p.to === undefined)).toHaveLength(7);
  });

  it('a ledger of the earlier layout (one ConfigMap, pods in it) is read, and moved into shards by its next write', async () => {
    const api = new MemoryApi();
    const old = withPods(newLedger('product-uid', hour), 0, 3, hour);
    const written = JSON.parse(encodeLedger(old)) as Record<string, unknown>;
    delete written.closed;
    await api.request('POST', `/api/v1/namespaces/${namespace}/configmaps`, { metadata: { name: ledgerName('product-uid'), namespace }, data: { 'ledger.json': JSON.stringify(written) } } satisfies V1ConfigMap);
    const store = new LedgerStore(api, namespace);
    const read = await store.read('product-uid');
    expect(Object.keys(read?.pods ?? {})).toHaveLength(3);
    await store.write(product, withPods(read as Ledger, 3, 4, hour));
    const head = api.configMaps.get(`${namespace}/${ledgerName('product-uid')}`);
    expect(JSON.parse(head?.data?.['ledger.json'] ?? '{}')).toMatchObject({ pods: {} });
    expect(Object.keys((await new LedgerStore(api, namespace).read('product-uid'))?.pods ?? {})).toHaveLength(4);
  });

  it('shards a first write left without a head are taken over; a product deleted takes head and shards with it', async () => {
    const api = new MemoryApi();
    const ledger = withPods(newLedger('product-uid', hour), 0, 3, hour);
    const failing = new FailingApi(api, (method, path) => method === 'POST' && api.configMaps.size > 0 && !path.includes('?'));
    await expect(new LedgerStore(failing, namespace).write(product, ledger)).rejects.toThrow('the API server went away');
    expect(shardsOf(api)).toHaveLength(1);
    const store = new LedgerStore(api, namespace);
    expect(await store.read('product-uid')).toBeUndefined();
    await store.write(product, ledger);
    expect(await new LedgerStore(api, namespace).read('product-uid')).toEqual(ledger);
    expect(await store.list()).toEqual(['product-uid']);
    await store.delete('product-uid');
    expect(api.configMaps.size).toBe(0);
  });

  /** A store whose first read has `deletedUid`'s ledger deleted between its GET of the head and its list of the shards. */
  function storeDeletingMidRead(api: MemoryApi, deletedUid: string): LedgerStore {
    const reading: { store?: LedgerStore } = {};
    let deleted = false;
    const deletingMidRead: ApiClient = {
      request: async <T>(method: Method, path: string, body?: unknown): Promise<T> => {
        if (method === 'GET' && path.includes('labelSelector') && !deleted) {
          deleted = true;
          await reading.store?.delete(deletedUid);
        }
        return api.request<T>(method, path, body);
      },
      send: (method, path, body) => api.send(method, path, body),
    };
    return (reading.store = new LedgerStore(deletingMidRead, namespace));
  }

  it('a ledger deleted while another product\'s reconcile reads it (a shared code\'s hour) is not kept in memory after the read', async () => {
    const api = new MemoryApi();
    await new LedgerStore(api, namespace).write(product, withPods(newLedger('product-uid', hour), 0, 10, hour));
    const store = storeDeletingMidRead(api, 'product-uid');
    await store.read('product-uid');
    expect(store.held).toBe(0);
    expect(await store.read('product-uid')).toBeUndefined();
  });

  it("another product's ledger deleted while this one is read does not cost this one what it read (its next write changes only what changed)", async () => {
    const api = new MemoryApi();
    const other = { ...product, metadata: { ...product.metadata, uid: 'other-uid', name: 'other' } };
    await new LedgerStore(api, namespace).write(product, withPods(newLedger('product-uid', hour), 0, 10, hour));
    await new LedgerStore(api, namespace).write(other, withPods(newLedger('other-uid', hour), 0, 10, hour));
    const store = storeDeletingMidRead(api, 'other-uid');
    const read = await store.read('product-uid');
    expect(store.held).toBe(1);
    expect(store.cached('product-uid')).toBe(read);
  });
});
