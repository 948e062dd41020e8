// Hourly metering of one product (leader only), level-triggered: observe the product's pods into
// its ledger and write it (write-ahead), then report every closed hour not yet reported, oldest
// first, and come back when the current hour closes.
//
// Exactly once: a record's ClientToken is derived from the product, caller, dimension and hour,
// and a closed hour's records come from the ledger, which no longer changes for that hour; a
// retry (in this process or after a failover) sends the identical request, and AWS answers it
// with the same record. DuplicateRequestException therefore means AWS already has the record.
// Hours older than AWS's 6-hour window are never sent: they are recorded as lost.
import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { MarketplaceProduct } from '../../api/marketplace-product.js';
import { AwsCallError } from '../../aws/errors.js';
import { ApiError } from '../../kube/api.js';
import { describeError } from '../../kube/errors.js';
import { rfc3339 } from '../../kube/times.js';
import { meterUsage } from '../../aws/metering-operations.js';
import type { PodRef } from '../../aws/pod-identity.js';
import type { ProductClients } from '../../aws/product-clients.js';
import type { Clock } from '../../clock.js';
import type { EventRecorder } from '../../kube/events.js';
import type { Informer } from '../../runtime/informer.js';
import type { Outcome } from '../../runtime/workqueue.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { completeHour, dueHours, hourMs, hourOf, hourStart, newLedger, observePods, recordsOf, reportWindowHours, withinWindow, type Ledger, type UsageRecordPlan } from './ledger.js';
import type { LedgerStore } from './ledger-store.js';

/** What the product's status shows of metering. */
export interface MeteringOutcome {
  lastReportedHour?: string;
  lostHours: string[];
  condition: { status: 'True' | 'False' | 'Unknown'; reason: string; message: string };
}

/** Retries of a failing hour, in the operator's clock: 30 s, doubling, at most 5 minutes. */
const retryBaseMs = 30_000;
const retryMaxMs = 5 * 60_000;
/** Past the hour's end, so the next observation falls in the new hour. */
const hourSlackMs = 1_000;

export function clientToken(productUid: string, record: UsageRecordPlan): string {
  const caller = record.caller.kind === 'operator' ? 'operator' : record.caller.sessionName;
  return createHash('sha256').update(`${productUid}|${caller}|${record.dimension}|${record.hour}`).digest('hex');
}

function iso(hour: number): string {
  return rfc3339(hourStart(hour));
}

type HourResult = { kind: 'reported' } | { kind: 'lost'; records: number } | { kind: 'failed'; message: string };

export class MeteringReconciler {
  private readonly outcomes = new Map<string, MeteringOutcome>();
  /** Accepted record tokens of hours still being reported, so a retry resends only the rest. */
  private readonly accepted = new Map<string, Set<string>>();
  private readonly failures = new Map<string, number>();
  private readonly listeners: ((productKey: string) => void)[] = [];

  constructor(
    private readonly products: Informer<MarketplaceProduct>,
    private readonly pods: Informer<V1Pod>,
    private readonly store: LedgerStore,
    private readonly clients: ProductClients,
    private readonly events: EventRecorder,
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Called with the product's key when what its status shows of metering changed. */
  onChange(listener: (productKey: string) => void): void {
    this.listeners.push(listener);
  }

  static meters(product: MarketplaceProduct | undefined): boolean {
    return (product?.spec.metering?.dimensions?.length ?? 0) > 0;
  }

  outcome(productKey: string): MeteringOutcome | undefined {
    return this.outcomes.get(productKey);
  }

  async reconcile(key: string): Promise<Outcome | undefined> {
    const product = this.products.get(key);
    const uid = product?.metadata.uid;
    if (!product || !uid || !MeteringReconciler.meters(product)) return undefined;
    const log = this.log.child({ product: key });
    const hour = hourOf(this.clock.now());
    let ledger = observePods((await this.store.read(uid)) ?? newLedger(uid, hour), this.pods.byIndex(key), hour);
    try {
      await this.store.write(product, ledger);
    } catch (error) {
      // A conflict is another replica's late write (a failover): the next try reads afresh.
      if (!(error instanceof ApiError && error.code === 409)) {
        await this.publish(key, product, ledger, { status: 'False', reason: 'LedgerWriteFailing', message: `the usage ledger cannot be written: ${describeError(error)}` });
      }
      throw error;
    }

    for (const due of dueHours(ledger, hour)) {
      const result = await this.reportHour(product, ledger, due, log);
      if (result.kind === 'failed') {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        await this.publish(key, product, ledger, { status: 'False', reason: 'ReportFailing', message: `usage of hour ${iso(due)} not reported yet: ${result.message}` });
        return { requeueAfterMs: this.clock.realMsUntil(this.clock.now() + Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failures - 1, 10))) };
      }
      ledger = completeHour(ledger, due, result.kind);
      await this.store.write(product, ledger);
      this.accepted.delete(`${uid}|${due}`);
      if (result.kind === 'lost') {
        this.metrics.meteringHoursLost.inc();
        this.metrics.meteringRecords.inc({ outcome: 'lost' }, result.records);
        log.warn('usage of an hour lost: outside the 6-hour window', { hour: iso(due), records: result.records });
        await this.events.product(product, 'Warning', 'UsageLost', 'MeterUsage', `usage of hour ${iso(due)} (${result.records} records) was not reported within AWS's ${reportWindowHours}-hour window and is lost`);
      } else {
        log.info('usage reported', { hour: iso(due) });
      }
    }
    this.failures.delete(key);
    await this.publish(key, product, ledger, conditionOf(ledger));
    return { requeueAfterMs: this.clock.realMsUntil((hour + 1) * hourMs + hourSlackMs) };
  }

  /** Deletes the ledgers of products that no longer exist (deleted while no leader ran). */
  async collectOrphans(log: Logger): Promise<void> {
    const live = new Set(this.products.list().map((p) => p.metadata.uid));
    for (const uid of await this.store.list()) {
      if (live.has(uid)) continue;
      await this.store.delete(uid);
      log.info('deleted the usage ledger of a product that no longer exists', { productUid: uid });
    }
  }

  /** The product is gone: its ledger goes with it. */
  async forget(product: MarketplaceProduct): Promise<void> {
    const key = `${product.metadata.namespace}/${product.metadata.name}`;
    this.outcomes.delete(key);
    this.failures.delete(key);
    const uid = product.metadata.uid;
    if (!uid) return;
    for (const hour of [...this.accepted.keys()].filter((k) => k.startsWith(`${uid}|`))) this.accepted.delete(hour);
    await this.store.delete(uid);
  }

  private async reportHour(product: MarketplaceProduct, ledger: Ledger, hour: number, log: Logger): Promise<HourResult> {
    const records = recordsOf(ledger, product, hour);
    if (!withinWindow(hour, this.clock.now())) return { kind: 'lost', records: records.length };
    const accepted = this.accepted.get(`${ledger.productUid}|${hour}`) ?? new Set<string>();
    this.accepted.set(`${ledger.productUid}|${hour}`, accepted);
    const results = await Promise.all(
      records.map(async (record): Promise<string | undefined> => {
        const token = clientToken(ledger.productUid, record);
        if (accepted.has(token)) return undefined;
        try {
          await this.clients.run(product, this.callerRef(product, record), 'MeterUsage', (client) =>
            meterUsage(client, { productCode: product.spec.productCode, timestamp: hourStart(hour), usageDimension: record.dimension, usageQuantity: record.quantity, clientToken: token }),
          );
          accepted.add(token);
          this.metrics.meteringRecords.inc({ outcome: 'sent' });
          return undefined;
        } catch (error) {
          if (error instanceof AwsCallError && error.code === 'DuplicateRequestException') {
            // Only ever the identical record (the ledger does not change for a closed hour).
            accepted.add(token);
            this.metrics.meteringRecords.inc({ outcome: 'duplicate' });
            return undefined;
          }
          this.metrics.meteringRecords.inc({ outcome: 'failed' });
          return error instanceof Error ? error.message : String(error);
        }
      }),
    );
    const failures = results.filter((failure) => failure !== undefined);
    if (failures.length === 0) return { kind: 'reported' };
    // AWS says the hour is past its window (our clock may differ a little from AWS's): lost.
    if (failures.some((failure) => failure.includes('TimestampOutOfBoundsException')) && !withinWindow(hour, this.clock.now() + hourSlackMs)) {
      return { kind: 'lost', records: records.length - accepted.size };
    }
    log.warn('usage report failed; will retry', { hour: iso(hour), failed: failures.length, error: failures[0] });
    return { kind: 'failed', message: `${failures.length} of ${records.length} records failed: ${failures[0] ?? ''}` };
  }

  private callerRef(product: MarketplaceProduct, record: UsageRecordPlan): PodRef {
    const namespace = product.metadata.namespace;
    if (record.caller.kind === 'operator') return { namespace, name: '', uid: '' };
    const { name, uid, serviceAccount } = record.caller;
    const live = this.pods.get(`${namespace}/${name}`);
    return { namespace, name, uid, ...(serviceAccount ? { serviceAccountName: serviceAccount } : {}), ...(live?.metadata?.uid === uid ? {} : { ended: true }) };
  }

  private async publish(key: string, product: MarketplaceProduct, ledger: Ledger, condition: MeteringOutcome['condition']): Promise<void> {
    const previous = this.outcomes.get(key);
    const next: MeteringOutcome = {
      ...(ledger.lastReportedHour !== undefined ? { lastReportedHour: iso(ledger.lastReportedHour) } : {}),
      lostHours: ledger.lostHours.map(iso),
      condition,
    };
    this.outcomes.set(key, next);
    if (JSON.stringify(previous) !== JSON.stringify(next)) for (const listener of this.listeners) listener(key);
    if (condition.reason === 'ReportFailing' && previous?.condition.reason !== 'ReportFailing') {
      await this.events.product(product, 'Warning', 'MeteringFailed', 'MeterUsage', condition.message);
    }
  }
}

function conditionOf(ledger: Ledger): MeteringOutcome['condition'] {
  const lastDone = ledger.nextHour - 1;
  if (ledger.lastReportedHour === undefined && ledger.lostHours.length === 0) {
    return { status: 'Unknown', reason: 'AwaitingFirstHour', message: `the first metered hour (${iso(ledger.startHour)}) is reported once it closes` };
  }
  if (ledger.lostHours.at(-1) === lastDone) return { status: 'False', reason: 'UsageLost', message: `usage of hour ${iso(lastDone)} is lost: it could not be reported within AWS's ${reportWindowHours}-hour window` };
  return { status: 'True', reason: 'UsageReported', message: `usage through hour ${iso(lastDone)} reported` };
}
