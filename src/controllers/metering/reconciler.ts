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
import { productSubject, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { AwsCallError } from '../../aws/errors.js';
import { describeError, isConflict } from '../../kube/errors.js';
import { rfc3339 } from '../../kube/times.js';
import { meterUsage } from '../../aws/metering-operations.js';
import type { PodRef } from '../../aws/pod-identity.js';
import type { ProductClients } from '../../aws/product-clients.js';
import type { Clock } from '../../clock.js';
import type { EventRecorder } from '../../kube/events.js';
import { type Cache, keyOf, objectKey } from '../../runtime/informer.js';
import type { Result } from '../../runtime/workqueue.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { completeHour, dueHours, hourMs, hourOf, hourStart, newLedger, observePods, recordsOf, reportWindowHours, withinWindow, type Ledger, type UsageRecordPlan } from './ledger.js';
import type { LedgerStore } from './ledger-store.js';
import type { Condition, MeteringReport, ProductReports } from '../product-reports.js';

export interface MeteringDeps {
  products: Cache<MarketplaceProduct>;
  /** Indexed by product (productKeyOfPod). */
  pods: Cache<V1Pod>;
  /** Writes through a client guarded by the leader signal. */
  store: LedgerStore;
  clients: ProductClients;
  reports: ProductReports;
  events: EventRecorder;
  metrics: Metrics;
  clock: Clock;
  log: Logger;
}

/** Whether the product is metered at all: it has dimensions. */
export function meters(product: MarketplaceProduct | undefined): boolean {
  return (product?.spec.metering?.dimensions?.length ?? 0) > 0;
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
  /** Accepted record tokens of hours still being reported, so a retry resends only the rest. */
  private readonly accepted = new Map<string, Set<string>>();
  private readonly failures = new Map<string, number>();

  constructor(private readonly deps: MeteringDeps) {}

  async reconcile(key: string, signal: AbortSignal): Promise<Result | undefined> {
    const product = this.deps.products.get(key);
    const uid = product?.metadata.uid;
    if (!product || !uid || !meters(product)) return undefined;
    const log = this.deps.log.child({ product: key });
    const hour = hourOf(this.deps.clock.now());
    let ledger = observePods((await this.deps.store.read(uid)) ?? newLedger(uid, hour), this.deps.pods.byIndex(key), hour);
    try {
      await this.deps.store.write(product, ledger);
    } catch (error) {
      // A conflict is another replica's late write (a failover): the next try reads afresh.
      if (!isConflict(error)) {
        await this.publish(key, product, ledger, { status: 'False', reason: 'LedgerWriteFailing', message: `the usage ledger cannot be written: ${describeError(error)}` });
      }
      throw error;
    }

    for (const due of dueHours(ledger, hour)) {
      const result = await this.reportHour(product, ledger, due, signal, log);
      if (result.kind === 'failed') {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        await this.publish(key, product, ledger, { status: 'False', reason: 'ReportFailing', message: `usage of hour ${iso(due)} not reported yet: ${result.message}` });
        return { requeueAfterMs: this.deps.clock.realMsUntil(this.deps.clock.now() + Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failures - 1, 10))) };
      }
      ledger = completeHour(ledger, due, result.kind);
      await this.deps.store.write(product, ledger);
      this.accepted.delete(`${uid}|${due}`);
      if (result.kind === 'lost') {
        this.deps.metrics.meteringHoursLost.inc();
        this.deps.metrics.meteringRecords.inc({ outcome: 'lost' }, result.records);
        log.warn('usage of an hour lost: outside the 6-hour window', { hour: iso(due), records: result.records });
        await this.deps.events.record(productSubject(product), 'Warning', 'UsageLost', 'MeterUsage', `usage of hour ${iso(due)} (${result.records} records) was not reported within AWS's ${reportWindowHours}-hour window and is lost`);
      } else {
        log.info('usage reported', { hour: iso(due) });
      }
    }
    this.failures.delete(key);
    await this.publish(key, product, ledger, conditionOf(ledger));
    return { requeueAfterMs: this.deps.clock.realMsUntil((hour + 1) * hourMs + hourSlackMs) };
  }

  /** Deletes the ledgers of products that no longer exist (deleted while no leader ran). */
  async collectOrphans(): Promise<void> {
    const live = new Set(this.deps.products.list().map((p) => p.metadata.uid));
    for (const uid of await this.deps.store.list()) {
      if (live.has(uid)) continue;
      await this.deps.store.delete(uid);
      this.deps.log.info('deleted the usage ledger of a product that no longer exists', { productUid: uid });
    }
  }

  /** The product is gone: its ledger goes with it. */
  async productDeleted(product: MarketplaceProduct): Promise<void> {
    this.failures.delete(objectKey(product));
    const uid = product.metadata.uid;
    if (!uid) return;
    for (const hour of [...this.accepted.keys()].filter((k) => k.startsWith(`${uid}|`))) this.accepted.delete(hour);
    await this.deps.store.delete(uid);
  }

  private async reportHour(product: MarketplaceProduct, ledger: Ledger, hour: number, signal: AbortSignal, log: Logger): Promise<HourResult> {
    const records = recordsOf(ledger, product, hour);
    if (!withinWindow(hour, this.deps.clock.now())) return { kind: 'lost', records: records.length };
    const accepted = this.accepted.get(`${ledger.productUid}|${hour}`) ?? new Set<string>();
    this.accepted.set(`${ledger.productUid}|${hour}`, accepted);
    const conflicts: UsageRecordPlan[] = [];
    const results = await Promise.all(
      records.map(async (record): Promise<string | undefined> => {
        const token = clientToken(ledger.productUid, record);
        if (accepted.has(token)) return undefined;
        try {
          await this.deps.clients.run(
            product,
            this.callerRef(product, record),
            'MeterUsage',
            (client) => meterUsage(client, { productCode: product.spec.productCode, timestamp: hourStart(hour), usageDimension: record.dimension, usageQuantity: record.quantity, clientToken: token }, signal),
            signal,
          );
          accepted.add(token);
          this.deps.metrics.meteringRecords.inc({ outcome: 'sent' });
          return undefined;
        } catch (error) {
          if (error instanceof AwsCallError && error.code === 'DuplicateRequestException') {
            // Only ever the identical record (the ledger does not change for a closed hour).
            accepted.add(token);
            this.deps.metrics.meteringRecords.inc({ outcome: 'duplicate' });
            return undefined;
          }
          if (error instanceof AwsCallError && error.code === 'IdempotencyConflictException') {
            // AWS holds a record under this token with other parameters, and bills that one: no
            // resend can change it, so the record is done, and the difference is reported.
            accepted.add(token);
            conflicts.push(record);
            this.deps.metrics.meteringRecords.inc({ outcome: 'conflict' });
            return undefined;
          }
          this.deps.metrics.meteringRecords.inc({ outcome: 'failed' });
          return error instanceof Error ? error.message : String(error);
        }
      }),
    );
    // Leadership lost: no verdict on the hour (the next leader reports it), and no ReportFailing.
    signal.throwIfAborted();
    await this.reportConflicts(product, hour, conflicts, log);
    const failures = results.filter((failure) => failure !== undefined);
    if (failures.length === 0) return { kind: 'reported' };
    // AWS says the hour is past its window (our clock may differ a little from AWS's): lost.
    if (failures.some((failure) => failure.includes('TimestampOutOfBoundsException')) && !withinWindow(hour, this.deps.clock.now() + hourSlackMs)) {
      return { kind: 'lost', records: records.length - accepted.size };
    }
    log.warn('usage report failed; will retry', { hour: iso(hour), failed: failures.length, error: failures[0] });
    return { kind: 'failed', message: `${failures.length} of ${records.length} records failed: ${failures[0] ?? ''}` };
  }

  /** One Warning Event per hour whose records AWS already held with other quantities (none when there were no conflicts). */
  private async reportConflicts(product: MarketplaceProduct, hour: number, conflicts: readonly UsageRecordPlan[], log: Logger): Promise<void> {
    const [first] = conflicts;
    if (!first) return;
    const which = `${conflicts.length} record${conflicts.length === 1 ? '' : 's'} of hour ${iso(hour)} (first: ${first.dimension} = ${first.quantity})`;
    log.error('AWS holds other usage under these records\' ClientTokens; it bills what it holds', { hour: iso(hour), records: conflicts.length });
    await this.deps.events.record(productSubject(product), 'Warning', 'UsageConflict', 'MeterUsage', `${which}: AWS answered IdempotencyConflictException, it already holds a record under the same ClientToken with other parameters and bills that one; the hour is not sent again`);
  }

  private callerRef(product: MarketplaceProduct, record: UsageRecordPlan): PodRef {
    const namespace = product.metadata.namespace;
    if (record.caller.kind === 'operator') return { namespace, name: '', uid: '' };
    const { name, uid, serviceAccount } = record.caller;
    const live = this.deps.pods.get(keyOf(namespace, name));
    return { namespace, name, uid, ...(serviceAccount ? { serviceAccountName: serviceAccount } : {}), ...(live?.metadata?.uid === uid ? {} : { ended: true }) };
  }

  private async publish(key: string, product: MarketplaceProduct, ledger: Ledger, condition: Condition): Promise<void> {
    const next: MeteringReport = {
      ...(ledger.lastReportedHour !== undefined ? { lastReportedHour: iso(ledger.lastReportedHour) } : {}),
      lostHours: ledger.lostHours.map(iso),
      condition,
    };
    const previous = this.deps.reports.reportMetering(key, next);
    if (condition.reason === 'ReportFailing' && previous?.condition.reason !== 'ReportFailing') {
      await this.deps.events.record(productSubject(product), 'Warning', 'MeteringFailed', 'MeterUsage', condition.message);
    }
  }
}

function conditionOf(ledger: Ledger): Condition {
  const lastDone = ledger.nextHour - 1;
  if (ledger.lastReportedHour === undefined && ledger.lostHours.length === 0) {
    return { status: 'Unknown', reason: 'AwaitingFirstHour', message: `the first metered hour (${iso(ledger.startHour)}) is reported once it closes` };
  }
  if (ledger.lostHours.at(-1) === lastDone) return { status: 'False', reason: 'UsageLost', message: `usage of hour ${iso(lastDone)} is lost: it could not be reported within AWS's ${reportWindowHours}-hour window` };
  return { status: 'True', reason: 'UsageReported', message: `usage through hour ${iso(lastDone)} reported` };
}
