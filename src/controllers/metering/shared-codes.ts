// One product code, several products (a seller's product installed for two teams): in Operator
// mode they are one caller to AWS, the operator's identity, and AWS keeps one record per caller,
// dimension and hour (a second one is refused with DuplicateRequestException). So an hour of a
// shared code is summed over its products and sent once, by the first of them (by
// `namespace/name`) that takes part in that hour: its reporter. Each product's part goes with the
// record as a UsageAllocation, so the seller sees the split. Who takes part is read from how each
// ledger closed the hour (its code and mode then), not from the specs of now, which may have
// changed since. Pure functions: who reports, and the records, from the products' ledgers.
import type { MarketplaceProduct } from '../../api/marketplace-product.js';
import type { Ledger, SharedRecord } from './ledger.js';

/** A metered product's ledger (undefined while it has none), by its `namespace/name`. */
export type KeyedLedger = readonly [key: string, ledger: Ledger | undefined, product: MarketplaceProduct];

/** Whether the product, as its spec is now, meters in Operator mode under this code. */
function sharesNow(product: MarketplaceProduct, productCode: string): boolean {
  return (product.spec.identity?.mode ?? 'Pod') === 'Operator' && product.spec.productCode === productCode;
}

/**
 * What a product is to a shared code's hour: `reported` (it reported the hour as its reporter),
 * `part` (it closed the hour as that code in Operator mode), `pending` (it has not closed the
 * hour yet, and would as that code), or `none`.
 */
function roleIn([, ledger, product]: KeyedLedger, productCode: string, hour: number): 'reported' | 'part' | 'pending' | 'none' {
  if (!ledger || ledger.startHour > hour) return 'none';
  if (ledger.nextHour > hour) return ledger.sharedReported?.includes(hour) ? 'reported' : 'none';
  const closed = ledger.closed[hour];
  if (!closed) return sharesNow(product, productCode) ? 'pending' : 'none';
  return !closed.legacy && closed.mode === 'Operator' && closed.productCode === productCode ? 'part' : 'none';
}

/** The reporter of `hour`: the first product (by key) that takes part in it, and whether it has reported it. */
export function reporterOf(ledgers: readonly KeyedLedger[], productCode: string, hour: number): { key: string; ledger: Ledger | undefined; reported: boolean } | undefined {
  const sorted = [...ledgers].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const entry of sorted) {
    const role = roleIn(entry, productCode, hour);
    if (role !== 'none') return { key: entry[0], ledger: entry[1], reported: role === 'reported' };
  }
  return undefined;
}

export type SharedHour = { kind: 'records'; records: SharedRecord[] } | { kind: 'waiting'; on: string[] };

/**
 * The records of a shared code's `hour`, summed over the products that closed it as that code;
 * waiting while some product that would has not closed it yet.
 */
export function sharedHour(ledgers: readonly KeyedLedger[], productCode: string, hour: number): SharedHour {
  const records = new Map<string, SharedRecord>();
  const waiting: string[] = [];
  for (const entry of [...ledgers].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const role = roleIn(entry, productCode, hour);
    if (role === 'pending') waiting.push(entry[0]);
    const closed = entry[1]?.closed[hour];
    if (role !== 'part' || !closed) continue;
    closed.dimensions.forEach((dimension, i) => {
      const quantity = closed.quantities?.[i] ?? 0;
      const record = records.get(dimension.name) ?? { dimension: dimension.name, quantity: 0, allocations: [] };
      record.quantity += quantity;
      record.allocations.push({ product: entry[0], quantity });
      records.set(dimension.name, record);
    });
  }
  return waiting.length > 0 ? { kind: 'waiting', on: waiting } : { kind: 'records', records: [...records.values()] };
}
