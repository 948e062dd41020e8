// When a NotEntitled pod is checked again (the pure plan).
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, type CheckRecord, type MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { readCheckRecord } from '../../src/api/pod-state.js';
import { checkBasis, planRecheck, recheckDelayMs } from '../../src/controllers/pods/rechecks.js';

const minute = 60_000;
const max = 15 * minute;
const product = (generation: number, recheck?: string): MarketplaceProduct => ({
  metadata: { name: 'p', namespace: 'ns', generation, ...(recheck ? { annotations: { [annotations.recheck]: recheck } } : {}) },
  spec: { productCode: 'c', publicKeyVersion: 1, publicKey: { pem: 'x' } },
});
const pod = (recheck?: string, checks?: CheckRecord): V1Pod => ({
  metadata: { annotations: { ...(recheck ? { [annotations.recheck]: recheck } : {}), ...(checks ? { [annotations.checks]: JSON.stringify(checks) } : {}) } },
});
const at = Date.parse('2026-11-27T12:00:00Z');
const record = (attempts: number, basis = checkBasis(product(1), pod())): CheckRecord => ({ ...basis, attempts, at: new Date(at).toISOString(), reason: 'CustomerNotEntitled' });

describe('planRecheck', () => {
  it('backs off from one minute, doubling, up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 10].map((n) => recheckDelayMs(n, max) / minute)).toEqual([1, 2, 4, 8, 15, 15, 15]);
    expect(planRecheck(record(3), 'CustomerNotEntitled', checkBasis(product(1), pod()), at + 3 * minute, max)).toEqual({ kind: 'at', time: at + 4 * minute });
    expect(planRecheck(record(3), 'CustomerNotEntitled', checkBasis(product(1), pod()), at + 4 * minute, max)).toEqual({ kind: 'now', attempts: 4, why: 'periodic' });
  });

  it('checks at once, with the backoff reset, when the product changed or someone asked on the product or the pod', () => {
    const earlier = record(5);
    expect(planRecheck(earlier, 'CustomerNotEntitled', checkBasis(product(2), pod()), at, max)).toMatchObject({ kind: 'now', attempts: 1 });
    expect(planRecheck(earlier, 'CustomerNotEntitled', checkBasis(product(1, 'now'), pod()), at, max)).toMatchObject({ kind: 'now', attempts: 1 });
    expect(planRecheck(earlier, 'CustomerNotEntitled', checkBasis(product(1), pod('please')), at, max)).toMatchObject({ kind: 'now', attempts: 1 });
    // Asked before, with the same value: already done.
    const asked = record(1, checkBasis(product(1), pod('please')));
    expect(planRecheck(asked, 'CustomerNotEntitled', checkBasis(product(1), pod('please')), at, max).kind).toBe('at');
  });

  it('checks a permanent reason at once when the key in its ConfigMap changed, not when it is unknown', () => {
    const underKey = record(1, checkBasis(product(1), pod(), 'key-a'));
    expect(planRecheck(underKey, 'InvalidSignature', checkBasis(product(1), pod(), 'key-b'), at, max)).toEqual({ kind: 'now', attempts: 1, why: 'its public key changed' });
    expect(planRecheck(underKey, 'InvalidSignature', checkBasis(product(1), pod(), 'key-a'), at, max)).toEqual({ kind: 'never' });
    // The ConfigMap's watch has not synced yet (or the key is inline): the record alone decides.
    expect(planRecheck(underKey, 'InvalidSignature', checkBasis(product(1), pod()), at, max)).toEqual({ kind: 'never' });
  });

  it('never checks a permanent reason periodically, but does when asked', () => {
    expect(planRecheck(record(1), 'InvalidSignature', checkBasis(product(1), pod()), at + 10 * max, max)).toEqual({ kind: 'never' });
    expect(planRecheck(record(1), 'InvalidSignature', checkBasis(product(1), pod('x')), at, max).kind).toBe('now');
  });

  it('a pod without a readable record is checked at once', () => {
    expect(readCheckRecord(pod(undefined, undefined))).toBeUndefined();
    expect(readCheckRecord({ metadata: { annotations: { [annotations.checks]: '{not json' } } })).toBeUndefined();
    expect(planRecheck(undefined, 'CustomerNotEntitled', checkBasis(product(1), pod()), at, max)).toMatchObject({ kind: 'now', attempts: 1 });
    expect(readCheckRecord(pod(undefined, record(2)))).toEqual(record(2));
  });
});
