// Who reports a shared product code's hour, and what: read from how each ledger closed the hour,
// whatever the specs say now.
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { newLedger, type ClosedHour, type Ledger } from '../../src/controllers/metering/ledger.js';
import { reporterOf, sharedHour, type KeyedLedger } from '../../src/controllers/metering/shared-codes.js';

const hour = 493_000;
const dimensions = [{ name: 'pods', unit: 'Pod' as const }];

function product(namespace: string, spec: { productCode?: string; mode?: 'Operator' | 'Pod' } = {}): MarketplaceProduct {
  return { metadata: { namespace, name: 'app', uid: `${namespace}-uid` }, spec: { productCode: spec.productCode ?? 'X', publicKeyVersion: 1, publicKey: { pem: 'x' }, identity: { mode: spec.mode ?? 'Operator' }, metering: { dimensions } } };
}

function ledger(namespace: string, closed: ClosedHour | undefined, extra: Partial<Ledger> = {}): Ledger {
  return { ...newLedger(`${namespace}-uid`, hour - 1), observedThrough: hour + 1, ...(closed ? { closed: { [hour]: closed } } : {}), ...extra };
}

const asX = (quantity: number): ClosedHour => ({ productCode: 'X', mode: 'Operator', dimensions, quantities: [quantity] });
const entry = (namespace: string, l: Ledger | undefined, spec: Parameters<typeof product>[1] = {}): KeyedLedger => [`${namespace}/app`, l, product(namespace, spec)];

describe('shared product codes', () => {
  it('the first product that closed the hour as the code reports the sum; one still to close it is waited for', () => {
    const a = entry('team-a', ledger('team-a', asX(2)));
    const b = entry('team-b', ledger('team-b', asX(3)));
    expect(reporterOf([b, a], 'X', hour)?.key).toBe('team-a/app');
    expect(sharedHour([b, a], 'X', hour)).toEqual({ kind: 'records', records: [{ dimension: 'pods', quantity: 5, allocations: [{ product: 'team-a/app', quantity: 2 }, { product: 'team-b/app', quantity: 3 }] }] });
    const late = entry('team-c', ledger('team-c', undefined));
    expect(sharedHour([a, b, late], 'X', hour)).toEqual({ kind: 'waiting', on: ['team-c/app'] });
  });

  it('a spec changed after the hour closed changes nothing about it: the product that closed it as the code still takes part, and still reports it', () => {
    // team-a closed the hour as X, then moved to code Y: it is still the hour's reporter, with its part.
    const a = entry('team-a', ledger('team-a', asX(2)), { productCode: 'Y' });
    const b = entry('team-b', ledger('team-b', asX(3)));
    expect(reporterOf([a, b], 'X', hour)?.key).toBe('team-a/app');
    expect(sharedHour([a, b], 'X', hour)).toMatchObject({ kind: 'records', records: [{ quantity: 5 }] });
    // aa closed the hour in Pod mode, then moved to Operator mode: it takes no part in it, and reports nothing for the others.
    const aa = entry('aa', ledger('aa', { productCode: 'X', mode: 'Pod', dimensions }), { mode: 'Operator' });
    expect(reporterOf([aa, a, b], 'X', hour)?.key).toBe('team-a/app');
    // One that has not closed the hour yet takes part only if its spec of now would close it as the code.
    expect(reporterOf([entry('aa', ledger('aa', undefined), { mode: 'Pod' }), b], 'X', hour)?.key).toBe('team-b/app');
  });

  it('once the reporter has the hour done, the others see it reported; a product that had it done as no reporter is no part of it', () => {
    const done = entry('team-a', ledger('team-a', undefined, { nextHour: hour + 1, sharedReported: [hour] }));
    expect(reporterOf([done, entry('team-b', ledger('team-b', asX(3)))], 'X', hour)).toMatchObject({ key: 'team-a/app', reported: true });
    const elsewhere = entry('team-a', ledger('team-a', undefined, { nextHour: hour + 1 }));
    expect(reporterOf([elsewhere, entry('team-b', ledger('team-b', asX(3)))], 'X', hour)).toMatchObject({ key: 'team-b/app', reported: false });
  });
});
