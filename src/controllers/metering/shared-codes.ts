// One product code, several products (a seller's product installed for two teams): in Operator
// mode they are one caller to AWS, the operator's identity, and AWS keeps one record per caller,
// dimension and hour (a second one is refused with DuplicateRequestException). So an hour of a
// shared code is summed over its products and sent once, by the first of them (by
// `namespace/name`) that was metering in that hour: its reporter. Each product's part goes with
// the record as a UsageAllocation, so the seller sees the split. Pure functions: who reports,
// and the records, from the products' ledgers.
import type { MarketplaceProduct } from '../../api/marketplace-product.js';
import { objectKey } from '../../runtime/informer.js';
import { meters, type Ledger, type SharedRecord } from './ledger.js';

/** A product's ledger, by its `namespace/name` (undefined while it has none). */
export type KeyedLedger = readonly [key: string, ledger: Ledger | undefined];

/** The metered Operator-mode products of a product code, in the order that picks the reporter. */
export function sharersOf(products: readonly MarketplaceProduct[], productCode: string): MarketplaceProduct[] {
  return products
    .filter((p) => meters(p) && (p.spec.identity?.mode ?? 'Pod') === 'Operator' && p.spec.productCode === productCode)
    .sort((a, b) => (objectKey(a) < objectKey(b) ? -1 : 1));
}

function covers(ledger: Ledger | undefined, hour: number): ledger is Ledger {
  return ledger !== undefined && ledger.startHour <= hour;
}

/** The reporter of `hour`: the first product whose ledger covers it. */
export function reporterOf(ledgers: readonly KeyedLedger[], hour: number): KeyedLedger | undefined {
  return ledgers.find(([, ledger]) => covers(ledger, hour));
}

export type SharedHour = { kind: 'records'; records: SharedRecord[] } | { kind: 'waiting'; on: string[] };

/**
 * The records of a shared code's `hour`, summed over the products whose ledgers closed it for
 * that code; waiting while some product that covers it has not closed it yet. Products that have
 * the hour done already, or closed it as another code or mode, or under an earlier release, are
 * not part of it.
 */
export function sharedHour(ledgers: readonly KeyedLedger[], productCode: string, hour: number): SharedHour {
  const records = new Map<string, SharedRecord>();
  const waiting: string[] = [];
  for (const [key, ledger] of ledgers) {
    if (!covers(ledger, hour) || ledger.nextHour > hour) continue;
    const closed = ledger.closed[hour];
    if (!closed) {
      waiting.push(key);
      continue;
    }
    if (closed.legacy || closed.mode !== 'Operator' || closed.productCode !== productCode) continue;
    closed.dimensions.forEach((dimension, i) => {
      const quantity = closed.quantities?.[i] ?? 0;
      const record = records.get(dimension.name) ?? { dimension: dimension.name, quantity: 0, allocations: [] };
      record.quantity += quantity;
      record.allocations.push({ product: key, quantity });
      records.set(dimension.name, record);
    });
  }
  return waiting.length > 0 ? { kind: 'waiting', on: waiting } : { kind: 'records', records: [...records.values()] };
}
