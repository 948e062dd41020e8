// The product status computed from pods and the latest registration outcome.
import type { V1Pod } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { desiredStatus } from '../../src/controllers/products/reconciler.js';

const gate = [{ name: 'marketplace.entitlements.io/entitlement' }];
const product = (status?: MarketplaceProduct['status'], generation = 3): MarketplaceProduct => ({
  apiVersion: 'marketplace.entitlements.io/v1alpha1',
  kind: 'MarketplaceProduct',
  metadata: { name: 'p', namespace: 'ns', generation },
  spec: { productCode: 'c', publicKeyVersion: 1, publicKey: { pem: 'x' } },
  ...(status ? { status } : {}),
});
const pod = (annotations: Record<string, string>, gated: boolean, terminating = false): V1Pod => ({
  metadata: { annotations: Object.fromEntries(Object.entries(annotations).map(([k, v]) => [`marketplace.entitlements.io/${k}`, v])), ...(terminating ? { deletionTimestamp: new Date() } : {}) },
  spec: { containers: [], ...(gated ? { schedulingGates: gate } : {}) },
});
const now = new Date('2026-11-26T12:00:00Z');

describe('desiredStatus', () => {
  it('counts entitled, blocked (gated, evicted or being evicted), pending and bypassed pods under Enforce', () => {
    const pods = [
      pod({ status: 'Entitled', 'registered-at': '2026-11-26T11:00:00.000Z' }, false),
      pod({ status: 'Entitled', 'registered-at': '2026-11-26T11:30:00.000Z' }, false),
      pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled' }, true),
      pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled' }, false, true),
      // Refused, running ungated: being evicted, and never entitled (its gate was removed by someone else).
      pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled' }, false),
      // Revoked (it was entitled): being evicted, but not a bypass.
      pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled', 'registered-at': '2026-11-26T10:00:00.000Z' }, false),
      pod({}, true),
      pod({ nonce: 'n' }, true),
      // No verdict and no gate: a bypass, pending its registration.
      pod({ nonce: 'n' }, false),
    ];
    const status = desiredStatus(product(), pods, undefined, now);
    expect(status).toMatchObject({ entitledPods: 2, blockedPods: 4, pendingPods: 3, bypassedPods: 2, observedGeneration: 3, lastRegistrationTime: '2026-11-26T11:30:00Z' });
  });

  it('under Audit a refused pod runs: neither blocked nor bypassed', () => {
    const audited = { ...product(), spec: { ...product().spec, enforcement: 'Audit' as const } };
    const pods = [pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled' }, false), pod({ nonce: 'n' }, false), pod({ status: 'NotEntitled', reason: 'CustomerNotEntitled' }, true)];
    expect(desiredStatus(audited, pods, undefined, now)).toMatchObject({ entitledPods: 0, blockedPods: 1, pendingPods: 1, bypassedPods: 0 });
  });

  it('is Unknown/AwaitingPods before any registration', () => {
    expect(desiredStatus(product(), [], undefined, now).conditions).toEqual([
      { type: 'Entitled', status: 'Unknown', reason: 'AwaitingPods', message: 'no pod of this product has been registered yet', lastTransitionTime: '2026-11-26T12:00:00Z', observedGeneration: 3 },
    ]);
  });

  it('follows the latest outcome, keeping lastTransitionTime while the status holds', () => {
    const first = desiredStatus(product(), [], { status: 'True', reason: 'SignatureVerified', message: 'ok', registeredAt: '2026-11-26T11:59:00.000Z' }, now);
    expect(first.conditions?.[0]).toMatchObject({ status: 'True', reason: 'SignatureVerified', lastTransitionTime: '2026-11-26T12:00:00Z' });
    expect(first.lastRegistrationTime).toBe('2026-11-26T11:59:00Z');
    const later = new Date('2026-11-26T13:00:00Z');
    expect(desiredStatus(product(first), [], { status: 'True', reason: 'SignatureVerified', message: 'again' }, later).conditions?.[0]?.lastTransitionTime).toBe('2026-11-26T12:00:00Z');
    const retrying = desiredStatus(product(first), [], { status: 'Unknown', reason: 'Retrying', message: 'throttled' }, later);
    expect(retrying.conditions?.[0]).toMatchObject({ status: 'Unknown', reason: 'Retrying', lastTransitionTime: '2026-11-26T13:00:00Z' });
  });

  it('after a restart (no outcome in memory) keeps the condition it had', () => {
    const before = desiredStatus(product(), [], { status: 'False', reason: 'CustomerNotEntitled', message: 'no', publicKeyRotationTimestamp: '2027-01-01T00:00:00.000Z' }, now);
    const after = desiredStatus(product(before, 4), [], undefined, new Date('2026-11-27T00:00:00Z'));
    expect(after.conditions?.[0]).toMatchObject({ status: 'False', reason: 'CustomerNotEntitled', lastTransitionTime: '2026-11-26T12:00:00Z', observedGeneration: 4 });
    expect(after).toMatchObject({ observedGeneration: 4, publicKeyRotationTimestamp: '2027-01-01T00:00:00Z' });
  });
});
