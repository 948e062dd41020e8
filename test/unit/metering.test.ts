// Metering's pure parts: a pod's usage from its requests, and the ledger (hours a pod counts
// for, records of an hour, the window, progress).
import type { V1Pod } from '@kubernetes/client-node';
import { productLabel, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { podCache } from '../../src/verdicts/pod-cache.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';
import { closeHours, completeHour, dueHours, hourMs, newLedger, observePods, pruned, recordsOf, withinWindow } from '../../src/controllers/metering/ledger.js';
import { decodeLedger, encodeLedger } from '../../src/controllers/metering/ledger-store.js';
import { clientToken } from '../../src/controllers/metering/reconciler.js';
import { parseQuantity, podRequests, usageOf } from '../../src/api/pod-usage.js';

describe('resource quantities and pod usage', () => {
  it.each([
    ['500m', 0.5],
    ['2', 2],
    ['1.5', 1.5],
    ['2Gi', 2 * 2 ** 30],
    ['128974848', 128974848],
    ['129e6', 129e6],
    ['129M', 129e6],
    ['123Mi', 123 * 2 ** 20],
    ['1k', 1000],
  ])('parses %s', (text, value) => {
    expect(parseQuantity(text)).toBeCloseTo(value, 6);
  });

  it('refuses what is not a quantity', () => {
    expect(() => parseQuantity('2 GiB')).toThrow(/not a resource quantity/);
  });

  it("rounds a pod's effective requests up to whole cores and GiB (sidecars add, plain init containers take the larger)", () => {
    const pod: V1Pod = {
      spec: {
        initContainers: [
          { name: 'migrate', resources: { requests: { cpu: '3', memory: '100Mi' } } },
          { name: 'proxy', restartPolicy: 'Always', resources: { requests: { cpu: '100m', memory: '64Mi' } } },
        ],
        containers: [
          { name: 'app', resources: { requests: { cpu: '1500m', memory: '1Gi' } } },
          { name: 'log', resources: { requests: { cpu: '250m' } } },
        ],
        overhead: { memory: '1Mi' },
      },
    };
    expect(podRequests(pod)).toEqual({ milliCpu: 3000, memoryBytes: 2 ** 30 + 65 * 2 ** 20 });
    expect(usageOf(podRequests(pod))).toEqual({ vCPU: 3, MemoryGiB: 2 });
    expect(usageOf(podRequests({ spec: { containers: [{ name: 'a' }] } }))).toEqual({ vCPU: 0, MemoryGiB: 0 });
  });

  it('the pod cache keeps the effective requests and phase, which give the same usage', () => {
    const pod: V1Pod = {
      metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { [productLabel]: 'x' } },
      spec: { containers: [{ name: 'a', resources: { requests: { cpu: '1001m', memory: '1.5Gi' } } }, { name: 'b', resources: { requests: { cpu: '1' } } }] },
      status: { phase: 'Running' },
    };
    const cached = podCache(sealer)(pod);
    expect(cached.status?.phase).toBe('Running');
    expect(usageOf(podRequests(cached))).toEqual(usageOf(podRequests(pod)));
    expect(usageOf(podRequests(cached))).toEqual({ vCPU: 3, MemoryGiB: 2 });
  });
});

const hour = 493_000; // some hour since the epoch
const at = (h: number, minutes = 0): string => new Date(h * hourMs + minutes * 60_000).toISOString();

// The pod cache believes only sealed verdicts: the pods here carry the operator's seal.
const sealer = testSealer();

/** A pod as the cache holds it; `verdict: 'none'` while its verdict is being checked again. */
function pod(name: string, options: { cpu?: string; memory?: string; registeredHour?: number; phase?: string; verdict?: 'Entitled' | 'NotEntitled' | 'none'; uid?: string } = {}): V1Pod {
  const metadata = { name, namespace: 'shop', uid: options.uid ?? `uid-${name}`, labels: { [productLabel]: 'app' } };
  const verdict = options.verdict ?? 'Entitled';
  const sealed = sealedAnnotations(sealer, { metadata }, verdict === 'none' ? {} : { status: verdict, reason: 'SignatureVerified', registeredAt: at(options.registeredHour ?? hour, 5) });
  return podCache(sealer)({
    metadata: { ...metadata, annotations: sealed },
    spec: { serviceAccountName: 'app', containers: [{ name: 'c', resources: { requests: { cpu: options.cpu ?? '500m', memory: options.memory ?? '1Gi' } } }] },
    status: { phase: options.phase ?? 'Running' },
  });
}

function product(mode: 'Pod' | 'Operator'): MarketplaceProduct {
  return {
    metadata: { name: 'app', namespace: 'shop', uid: 'product-uid' },
    spec: {
      productCode: 'code',
      publicKeyVersion: 1,
      publicKey: { pem: 'x' },
      identity: { mode },
      metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }, { name: 'memory', unit: 'MemoryGiB' }] },
    },
  };
}

describe('usage ledger', () => {
  it('counts entitled, running pods from the hour they were registered, and ended pods through the last hour seen', () => {
    let ledger = newLedger('product-uid', hour);
    ledger = observePods(ledger, [pod('a'), pod('b', { cpu: '2500m' }), pod('pending', { phase: 'Pending' }), pod('blocked', { verdict: 'NotEntitled' })], hour);
    expect(Object.keys(ledger.pods).sort()).toEqual(['uid-a', 'uid-b']);
    expect(observePods(ledger, [pod('a'), pod('b', { cpu: '2500m' })], hour)).toBe(ledger); // nothing new: nothing to write

    // Hour +1: c starts, then b ends. Hour +2: a and c still run.
    ledger = observePods(ledger, [pod('a'), pod('b', { cpu: '2500m' }), pod('c', { registeredHour: hour + 1 })], hour + 1);
    ledger = observePods(ledger, [pod('a'), pod('c', { registeredHour: hour + 1 })], hour + 1);
    ledger = observePods(ledger, [pod('a'), pod('c', { registeredHour: hour + 1 })], hour + 2);
    const records = (h: number) => recordsOf(ledger, product('Operator'), h).map((r) => [r.dimension, r.quantity]);
    expect(records(hour)).toEqual([['pods', 2], ['cores', 4], ['memory', 2]]);
    expect(records(hour + 1)).toEqual([['pods', 3], ['cores', 5], ['memory', 3]]);
    expect(records(hour + 2)).toEqual([['pods', 2], ['cores', 2], ['memory', 2]]);
  });

  it('a running pod whose verdict is checked again (after an upgrade, a forged verdict, a new key) keeps counting; a refusal ends it', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b')], hour);
    // Hour +1: both are being checked again; neither has a verdict for a while.
    ledger = observePods(ledger, [pod('a', { verdict: 'none' }), pod('b', { verdict: 'none' })], hour + 1);
    // Hour +2: a is entitled again, b refused; hour +3: a still runs.
    ledger = observePods(ledger, [pod('a'), pod('b', { verdict: 'NotEntitled' })], hour + 2);
    ledger = observePods(ledger, [pod('a'), pod('b', { verdict: 'NotEntitled' })], hour + 3);
    const pods = (h: number) => recordsOf(ledger, product('Operator'), h)[0]?.quantity;
    expect([hour, hour + 1, hour + 2, hour + 3].map(pods)).toEqual([2, 2, 1, 1]);
    // Without a verdict and no longer running, it ends.
    ledger = observePods(ledger, [pod('a', { verdict: 'none', phase: 'Succeeded' })], hour + 4);
    expect(ledger.pods['uid-a']?.to).toBe(hour + 3);
  });

  it('after a gap (operator down), pods still running count for every hour of it, pods gone only through the last hour seen', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('stays'), pod('goes')], hour);
    ledger = observePods(ledger, [pod('stays'), pod('new', { registeredHour: hour + 2 })], hour + 4);
    const pods = (h: number) => recordsOf(ledger, product('Operator'), h)[0]?.quantity;
    expect([hour, hour + 1, hour + 2, hour + 3, hour + 4].map(pods)).toEqual([2, 1, 2, 2, 2]);
  });

  it('Pod mode: a record per pod and dimension, one caller for a pod recreated under its name', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b', { memory: '3Gi' })], hour);
    const recreated = pod('b', { memory: '5Gi', uid: 'uid-b2' });
    ledger = observePods(ledger, [pod('a'), recreated], hour);
    const records = recordsOf(ledger, product('Pod'), hour);
    expect(records.map((r) => [r.caller.kind === 'pod' ? r.caller.sessionName : '', r.dimension, r.quantity])).toEqual([
      ['shop.a', 'pods', 1],
      ['shop.a', 'cores', 1],
      ['shop.a', 'memory', 1],
      ['shop.b', 'pods', 1],
      ['shop.b', 'cores', 1],
      ['shop.b', 'memory', 5],
    ]);
    // Tokens differ by caller, dimension and hour, and are the same when computed again.
    const tokens = records.map((r) => clientToken('product-uid', r));
    expect(new Set(tokens).size).toBe(records.length);
    expect(tokens).toEqual(recordsOf(ledger, product('Pod'), hour).map((r) => clientToken('product-uid', r)));
    expect(tokens.every((t) => t.length <= 64)).toBe(true);
  });

  it('a pod that stops counting and counts again (revoked, then entitled again) is metered for each span it counted; its ranges are stored and pruned', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b'), pod('c')], hour);
    // Hour +1: b revoked, c with it; hour +2: c entitled again; hour +3: b entitled again (new registrations).
    ledger = observePods(ledger, [pod('a'), pod('b', { verdict: 'NotEntitled' }), pod('c', { verdict: 'NotEntitled' })], hour + 1);
    ledger = observePods(ledger, [pod('a'), pod('b', { verdict: 'NotEntitled' }), pod('c', { registeredHour: hour + 2 })], hour + 2);
    ledger = observePods(ledger, [pod('a'), pod('b', { registeredHour: hour + 3 }), pod('c', { registeredHour: hour + 2 })], hour + 3);
    ledger = observePods(ledger, [pod('a'), pod('b', { registeredHour: hour + 3 }), pod('c', { registeredHour: hour + 2 })], hour + 4);
    const counted = (h: number) => recordsOf(ledger, product('Operator'), h)[0]?.quantity;
    expect([0, 1, 2, 3, 4].map((i) => counted(hour + i))).toEqual([3, 1, 2, 3, 3]);
    expect(ledger.pods['uid-b']).toMatchObject({ from: hour + 3, earlier: [[hour, hour]] });
    expect(ledger.pods['uid-c']).toMatchObject({ from: hour + 2, earlier: [[hour, hour]] });
    // In Pod mode each span is b's own records.
    const ofB = (h: number) => recordsOf(ledger, product('Pod'), h).filter((r) => r.caller.kind === 'pod' && r.caller.name === 'b').length;
    expect([0, 1, 2, 3, 4].map((i) => ofB(hour + i))).toEqual([3, 0, 0, 3, 3]);
    expect(decodeLedger(encodeLedger(ledger))).toEqual(ledger);
    // Once the hour of the earlier span is done, the span goes; the pod stays for its open one.
    ledger = pruned(completeHour(ledger, hour, 'reported'));
    expect(ledger.pods['uid-b']).toEqual({ name: 'b', serviceAccount: 'app', from: hour + 3, usage: { vCPU: 1, MemoryGiB: 1 } });
  });

  it('a pod counting again in the hour after its range ended goes on in the same range', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a')], hour);
    ledger = observePods(ledger, [], hour + 1); // gone from the list for a moment (a relist), counted through hour
    ledger = observePods(ledger, [pod('a')], hour + 1);
    expect(ledger.pods['uid-a']).toEqual({ name: 'a', serviceAccount: 'app', from: hour, usage: { vCPU: 1, MemoryGiB: 1 } });
    expect([hour, hour + 1].map((h) => recordsOf(ledger, product('Operator'), h)[0]?.quantity)).toEqual([1, 1]);
  });

  it('reports closed hours in order, drops pods whose hours are done, and keeps lost hours', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b')], hour);
    ledger = observePods(ledger, [pod('a')], hour + 2);
    expect(dueHours(ledger, hour + 2)).toEqual([hour, hour + 1]);
    ledger = pruned(completeHour(ledger, hour, 'lost'));
    expect(Object.keys(ledger.pods).sort()).toEqual(['uid-a']); // b ended in the hour just done
    ledger = completeHour(ledger, hour + 1, 'reported');
    expect(ledger).toMatchObject({ nextHour: hour + 2, lastReportedHour: hour + 1, lostHours: [hour] });
    expect(dueHours(ledger, hour + 2)).toEqual([]);
  });

  it('is stored compactly and read back the same: 10,000 pods fit a ConfigMap', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b', { memory: '3Gi' })], hour);
    ledger = completeHour(observePods(ledger, [pod('a')], hour + 1), hour, 'lost');
    expect(decodeLedger(encodeLedger(ledger))).toEqual(ledger);
    const many = observePods(newLedger('product-uid', hour), Array.from({ length: 10_000 }, (_, i) => pod(`analytics-deployment-7c9d8f6b5d-${String(i).padStart(5, '0')}`, { uid: `8f14e45f-ceea-467f-a0e6-${String(i).padStart(12, '0')}` })), hour);
    expect(encodeLedger(many).length).toBeLessThan(1024 * 1024 - 4096);
  });

  it('a closed hour keeps what it bills: the spec of when it closed, its sums, no pod first seen after it closed', () => {
    let ledger = closeHours(observePods(newLedger('product-uid', hour), [pod('a'), pod('b')], hour), product('Operator'), hour);
    expect(ledger.closed).toEqual({});
    // Hour +1: b is gone; hour is closed with a and b in it, and b, no longer needed, leaves the ledger.
    ledger = pruned(closeHours(observePods(ledger, [pod('a')], hour + 1), product('Operator'), hour + 1));
    expect(ledger.closed[hour]).toEqual({ productCode: 'code', mode: 'Operator', dimensions: product('Operator').spec.metering?.dimensions, quantities: [2, 2, 2] });
    expect(Object.keys(ledger.pods)).toEqual(['uid-a']);
    // The spec changes and a pod registered in the closed hour is first seen now: the closed hour stays as it was.
    const changed = product('Operator');
    changed.spec.productCode = 'other-code';
    changed.spec.metering = { dimensions: [{ name: 'pods', unit: 'Pod' }] };
    ledger = closeHours(observePods(ledger, [pod('a'), pod('late', { registeredHour: hour })], hour + 1), changed, hour + 1);
    expect(recordsOf(ledger, changed, hour).map((r) => [r.dimension, r.quantity])).toEqual([['pods', 2], ['cores', 2], ['memory', 2]]);
    expect(ledger.pods['uid-late']?.from).toBe(hour + 1);
    expect(decodeLedger(encodeLedger(ledger))).toEqual(ledger);
    // Its terms go once it is done.
    expect(completeHour(ledger, hour, 'reported').closed).toEqual({});
  });

  it('in Pod mode a closed hour keeps its pods until it is done (its records are theirs)', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a'), pod('b')], hour);
    ledger = closeHours(observePods(ledger, [pod('a')], hour + 1), product('Pod'), hour + 1);
    expect(ledger.closed[hour]?.quantities).toBeUndefined();
    expect(recordsOf(ledger, product('Pod'), hour).filter((r) => r.dimension === 'pods')).toHaveLength(2);
    expect(Object.keys(pruned(completeHour(ledger, hour, 'reported')).pods)).toEqual(['uid-a']);
  });

  it('a ledger an earlier release wrote: the hours it may have sent are reported as it did', () => {
    let ledger = observePods(newLedger('product-uid', hour), [pod('a')], hour);
    ledger = observePods(ledger, [pod('a')], hour + 2);
    const written = JSON.parse(encodeLedger(ledger)) as Record<string, unknown>;
    delete written.closed;
    const read = decodeLedger(JSON.stringify(written));
    expect(read?.legacyThrough).toBe(hour + 1);
    const closed = closeHours(read ?? ledger, product('Operator'), hour + 3).closed;
    expect([closed[hour]?.legacy, closed[hour + 1]?.legacy, closed[hour + 2]?.legacy]).toEqual([true, true, undefined]);
    expect(completeHour(completeHour(read ?? ledger, hour, 'reported'), hour + 1, 'reported').legacyThrough).toBeUndefined();
  });

  it('an hour can be sent until 6 hours after it started', () => {
    expect(withinWindow(hour, (hour + 6) * hourMs - 1)).toBe(true);
    expect(withinWindow(hour, (hour + 6) * hourMs)).toBe(false);
  });
});
