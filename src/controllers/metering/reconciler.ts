// Hourly metering of one product (leader only), level-triggered: observe the product's pods into
// its ledger, close the hours that ended, and write it (write-ahead), then report every closed
// hour not yet reported, oldest first, and come back when the current hour closes.
//
// Exactly once: a record's ClientToken is derived from the product (or, for a shared product
// code, the code), caller, dimension and hour, and a closed hour's records are fixed in the
// ledger; a retry (in this process or after a failover) sends the identical request, and AWS
// answers it with the same record. DuplicateRequestException therefore means AWS already has the
// record. Hours older than AWS's 6-hour window are never sent: they are recorded as lost. In Pod
// mode, a pod whose records AWS or the API server refuse for good is reported and does not hold
// back the others; a failure that may pass holds the hour, and the hours after it, for a retry.
import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { UsageAllocation } from '@aws-sdk/client-marketplace-metering';
import { productSubject, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { AwsCallError } from '../../aws/errors.js';
import { describeError, isConflict } from '../../kube/errors.js';
import { rfc3339 } from '../../kube/times.js';
import { meterUsage } from '../../aws/metering-operations.js';
import { IdentityUnavailableError, type PodRef } from '../../aws/pod-identity.js';
import type { ProductClients } from '../../aws/product-clients.js';
import type { Clock } from '../../clock.js';
import type { EventRecorder } from '../../kube/events.js';
import { type Cache, keyOf, objectKey } from '../../runtime/informer.js';
import { mapPooled } from '../../runtime/pool.js';
import type { Result } from '../../runtime/workqueue.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { closeHours, completeHour, dueHours, hourMs, hourOf, hourStart, meters, newLedger, observePods, podCounts, pruned, recordsOf, reportWindowHours, withinWindow, type HourReported, type Ledger, type UsageRecordPlan } from './ledger.js';
import type { LedgerStore } from './ledger-store.js';
import { reporterOf, sharedHour, type KeyedLedger } from './shared-codes.js';
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
  /** Whether the cluster is Amazon EKS (eksProbe). */
  onEks: () => Promise<boolean>;
}

/** Retries of a failing hour, in the operator's clock: 30 s, doubling, at most 5 minutes. */
const retryBaseMs = 30_000;
const retryMaxMs = 5 * 60_000;
/** Past the hour's end, so the next observation falls in the new hour. */
const hourSlackMs = 1_000;
const pressingAfterMs = 2 * hourMs;
/** Records of an hour on their way to the AWS lane at once. */
const sendWidth = 32;
/** How often a product of a shared code looks again while it waits for the others. */
const sharedWaitMs = 2_000;
/** A wait for the other products of a shared code this long past the hour shows in the status. */
const sharedWaitShownMs = 60_000;

/** `scope`: the product's uid, or `shared:` and the product code for a shared code's records. */
export function clientToken(scope: string, record: UsageRecordPlan): string {
  const caller = record.caller.kind === 'operator' ? 'operator' : record.caller.sessionName;
  return createHash('sha256').update(`${scope}|${caller}|${record.dimension}|${record.hour}`).digest('hex');
}

function iso(hour: number): string {
  return rfc3339(hourStart(hour));
}

/** What reporting an hour came to. */
type HourResult = ({ kind: 'reported' } & HourReported) | { kind: 'lost'; records: number } | { kind: 'failed'; message: string } | { kind: 'waiting'; message: string };

/** The records of a closed hour, and the scope of their ClientTokens. */
interface HourRecords {
  scope: string;
  records: UsageRecordPlan[];
}

export class MeteringReconciler {
  /**
   * By product uid, then hour, then record token: the records of hours still being reported that
   * are settled, so a retry resends only the rest: accepted by AWS (undefined), or given up (why).
   */
  private readonly settled = new Map<string, Map<number, Map<string, string | undefined>>>();
  /** Failed tries of the failing hour in a row, by product key: the retry's backoff. */
  private readonly failures = new Map<string, number>();
  /** The uid of each product metered, by key: whose ledger to delete once it is gone. */
  private readonly uids = new Map<string, string>();
  /** Products told that AWS does not accept their identity mode here (once per leader). */
  private readonly warned = new Set<string>();

  constructor(private readonly deps: MeteringDeps) {}

  async reconcile(key: string, signal: AbortSignal): Promise<Result | undefined> {
    const product = this.deps.products.get(key);
    const uid = product?.metadata.uid;
    // Gone (or made again under its name): its ledger goes with it, here, where no reconcile of it can still be writing.
    const metered = this.uids.get(key);
    if (metered !== undefined && metered !== uid) await this.forget(key, metered);
    if (!product || !uid || !meters(product)) {
      // No longer metered: what this replica held for it goes; its ledger stays, in the cluster, until the product does.
      if (metered !== undefined) this.release(key, metered);
      this.showDeadline(key, undefined);
      return undefined;
    }
    this.uids.set(key, uid);
    const log = this.deps.log.child({ product: key });
    const hour = hourOf(this.deps.clock.now());
    let ledger = await this.observe(key, product, uid, hour);
    await this.warnIfNotAccepted(product, uid, log);
    for (const due of dueHours(ledger, hour)) {
      this.showDeadline(key, due);
      const reported = await this.reportHour(product, ledger, due, signal, log);
      ledger = reported.ledger;
      const { result } = reported;
      if (result.kind === 'waiting') return this.awaitOthers(key, product, ledger, due, result.message);
      if (result.kind === 'failed') return this.retryLater(key, product, ledger, due, result.message);
      ledger = await this.save(product, completeHour(ledger, due, result.kind, result.kind === 'reported' ? result : {}));
      this.settled.get(uid)?.delete(due);
      await this.hourDone(product, due, result, log);
    }
    this.showDeadline(key, undefined);
    this.failures.delete(key);
    await this.publish(key, product, ledger, conditionOf(ledger));
    return { requeueAfterMs: this.deps.clock.realMsUntil((hour + 1) * hourMs + hourSlackMs) };
  }

  /**
   * Whether a change of this pod of the product can change its ledger: the pod counts now, or the
   * ledger holds it counting (or is not held, so that cannot be told). A pod that starts, gated
   * then registered, changes nothing until it runs, and observing thousands of pods for it did.
   */
  affects(key: string, pod: V1Pod): boolean {
    if (podCounts(pod)) return true;
    const uid = this.uids.get(key);
    const ledger = uid === undefined ? undefined : this.deps.store.cached(uid);
    if (!ledger) return true;
    const entry = ledger.pods[pod.metadata?.uid ?? ''];
    return entry !== undefined && entry.to === undefined;
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

  /** The metric of when `hour`, the product's oldest unreported hour, is lost (none: every closed hour is reported). */
  private showDeadline(key: string, hour: number | undefined): void {
    if (hour === undefined) this.deps.metrics.meteringDeadline.remove({ product: key });
    else this.deps.metrics.meteringDeadline.set({ product: key }, ((hour + reportWindowHours) * hourMs) / 1000);
  }

  /** How many products, hours and ledgers this replica holds something of, by what it holds (its memory, kept bounded). */
  held(): { products: number; failing: number; warned: number; hoursInProgress: number; ledgers: number } {
    const hoursInProgress = [...this.settled.values()].reduce((sum, hours) => sum + hours.size, 0);
    return { products: this.uids.size, failing: this.failures.size, warned: this.warned.size, hoursInProgress, ledgers: this.deps.store.held };
  }

  /** Drops what this replica holds for the product in memory (not its ledger in the cluster). */
  private release(key: string, uid: string): void {
    this.failures.delete(key);
    this.warned.delete(uid);
    this.settled.delete(uid);
    this.deps.store.release(uid);
  }

  /** The product is gone: its ledger goes with it. */
  private async forget(key: string, uid: string): Promise<void> {
    this.release(key, uid);
    await this.deps.store.delete(uid);
    this.uids.delete(key);
    this.showDeadline(key, undefined);
    this.deps.log.info('deleted the usage ledger of a deleted product', { product: key, productUid: uid });
  }

  /** Writes the ledger as it is, then without what no hour needs any more (ledger-store.ts: why in that order); returns what it holds now. */
  private async save(product: MarketplaceProduct, ledger: Ledger): Promise<Ledger> {
    await this.deps.store.write(product, ledger);
    const lean = pruned(ledger);
    if (lean !== ledger) await this.deps.store.write(product, lean);
    return lean;
  }

  /** The ledger with the product's pods of now and the hours that ended closed, written. */
  private async observe(key: string, product: MarketplaceProduct, uid: string, hour: number): Promise<Ledger> {
    const ledger = closeHours(observePods((await this.deps.store.read(uid)) ?? newLedger(uid, hour), this.deps.pods.byIndex(key), hour), product, hour);
    // Before the write: a ledger that cannot be written holds its hours back too.
    this.showDeadline(key, dueHours(ledger, hour)[0]);
    try {
      return await this.save(product, ledger);
    } catch (error) {
      // A conflict is another replica's late write (a failover): the next try reads afresh.
      if (!isConflict(error)) {
        await this.publish(key, product, ledger, { status: 'False', reason: 'LedgerWriteFailing', message: `the usage ledger cannot be written: ${describeError(error)}` });
      }
      throw error;
    }
  }

  /** Operator mode on EKS: AWS takes MeterUsage there only signed with the pod's IRSA credentials (its seller guide). */
  private async warnIfNotAccepted(product: MarketplaceProduct, uid: string, log: Logger): Promise<void> {
    if ((product.spec.identity?.mode ?? 'Pod') !== 'Operator' || this.warned.has(uid)) return;
    if (!(await this.deps.onEks().catch(() => false))) return;
    this.warned.add(uid);
    const message =
      "on Amazon EKS, AWS accepts the MeterUsage (and RegisterUsage) calls of container products only when signed with the pod's IRSA credentials; identity.mode: Operator signs them with the operator's identity. Use identity.mode: Pod";
    log.warn('the product\'s identity mode is not one AWS accepts on EKS', { mode: 'Operator' });
    await this.deps.events.record(productSubject(product), 'Warning', 'IdentityNotAccepted', 'MeterUsage', message);
  }

  private async retryLater(key: string, product: MarketplaceProduct, ledger: Ledger, hour: number, message: string): Promise<Result> {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    await this.publish(key, product, ledger, { status: 'False', reason: 'ReportFailing', message: `usage of hour ${iso(hour)} not reported yet: ${message}` });
    return { requeueAfterMs: this.deps.clock.realMsUntil(this.deps.clock.now() + Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failures - 1, 10))) };
  }

  /** Another product of the code reports the hour, or is still to close it: look again shortly, and say so once the wait is long. */
  private async awaitOthers(key: string, product: MarketplaceProduct, ledger: Ledger, hour: number, message: string): Promise<Result> {
    if (this.deps.clock.now() - (hour + 1) * hourMs > sharedWaitShownMs) {
      await this.publish(key, product, ledger, { status: 'Unknown', reason: 'AwaitingSharedReport', message });
    }
    return { requeueAfterMs: this.deps.clock.realMsUntil(this.deps.clock.now() + sharedWaitMs) };
  }

  private async hourDone(product: MarketplaceProduct, hour: number, result: HourResult, log: Logger): Promise<void> {
    if (result.kind !== 'lost') {
      log.info('usage reported', { hour: iso(hour) });
      return;
    }
    this.deps.metrics.meteringHoursLost.inc();
    this.deps.metrics.meteringRecords.inc({ outcome: 'lost' }, result.records);
    log.warn('usage of an hour lost: outside the 6-hour window', { hour: iso(hour), records: result.records });
    await this.deps.events.record(productSubject(product), 'Warning', 'UsageLost', 'MeterUsage', `usage of hour ${iso(hour)} (${result.records} records) was not reported within AWS's ${reportWindowHours}-hour window and is lost`);
  }

  private async reportHour(product: MarketplaceProduct, ledger: Ledger, hour: number, signal: AbortSignal, log: Logger): Promise<{ result: HourResult; ledger: Ledger }> {
    if (!withinWindow(hour, this.deps.clock.now())) return { result: { kind: 'lost', records: recordsOf(ledger, product, hour).length }, ledger };
    const closed = ledger.closed[hour];
    if (closed?.mode === 'Operator' && !closed.legacy) {
      const shared = await this.sharedRecords(product, ledger, hour);
      if (shared.kind !== 'send') return { result: shared, ledger };
      const result = await this.send(product, shared.ledger, hour, shared.records, signal, log);
      return { result: result.kind === 'reported' ? { ...result, asReporter: true } : result, ledger: shared.ledger };
    }
    return { result: await this.send(product, ledger, hour, { scope: ledger.productUid, records: recordsOf(ledger, product, hour) }, signal, log), ledger };
  }

  /**
   * An Operator-mode hour, sent with every product of its product code: by this product, when it
   * is the hour's reporter, the records summed over them (fixed in its ledger before the first
   * is sent); otherwise reported once the reporter has it done.
   */
  private async sharedRecords(product: MarketplaceProduct, ledger: Ledger, hour: number): Promise<{ kind: 'send'; ledger: Ledger; records: HourRecords } | HourResult> {
    const closed = ledger.closed[hour];
    if (!closed) throw new Error(`hour ${iso(hour)} is not closed`);
    const code = closed.productCode;
    // Every metered product: how each closed the hour says who takes part, whatever its spec says now.
    const others = this.deps.products.list().filter((p) => meters(p) && p.metadata.uid && p.metadata.uid !== ledger.productUid);
    const ledgers: KeyedLedger[] = await Promise.all(others.map(async (p): Promise<KeyedLedger> => [objectKey(p), await this.deps.store.read(p.metadata.uid ?? ''), p]));
    ledgers.push([objectKey(product), ledger, product]);
    const reporter = reporterOf(ledgers, code, hour);
    if (reporter?.ledger !== ledger) {
      if (reporter?.reported) return { kind: 'reported' };
      return { kind: 'waiting', message: `usage of hour ${iso(hour)} is reported by ${reporter?.key ?? '?'}, for every product of product code ${code}` };
    }
    let shared = closed.shared;
    let next = ledger;
    if (!shared) {
      const summed = sharedHour(ledgers, code, hour);
      if (summed.kind === 'waiting') return { kind: 'waiting', message: `usage of hour ${iso(hour)} waits for the usage ledgers of ${summed.on.join(', ')}, which share product code ${code}` };
      shared = summed.records;
      next = await this.save(product, { ...ledger, closed: { ...ledger.closed, [hour]: { ...closed, shared } } });
    }
    const records = shared.map((r): UsageRecordPlan => ({ hour, dimension: r.dimension, quantity: r.quantity, caller: { kind: 'operator' }, allocations: r.allocations }));
    return { kind: 'send', ledger: next, records: { scope: `shared:${code}`, records } };
  }

  private async send(product: MarketplaceProduct, ledger: Ledger, hour: number, { scope, records }: HourRecords, signal: AbortSignal, log: Logger): Promise<HourResult> {
    const hours = this.settled.get(ledger.productUid) ?? new Map<number, Map<string, string | undefined>>();
    this.settled.set(ledger.productUid, hours);
    const settled = hours.get(hour) ?? new Map<string, string | undefined>();
    hours.set(hour, settled);
    const closed = ledger.closed[hour];
    // As the hour closed: its product code and identity mode, whatever the spec says now.
    const billed: MarketplaceProduct = closed ? { ...product, spec: { ...product.spec, productCode: closed.productCode, identity: { ...product.spec.identity, mode: closed.mode } } } : product;
    const pressing = this.deps.clock.now() > (hour + 1) * hourMs + pressingAfterMs;
    const conflicts: UsageRecordPlan[] = [];
    const tokened = records.map((record) => ({ record, token: clientToken(scope, record) }));
    // Wider than the AWS lane, so it stays full; not one call per record at once (a Pod-mode hour has thousands).
    const results = await mapPooled(
      tokened,
      sendWidth,
      async ({ record, token }): Promise<string | undefined> => {
        if (settled.has(token)) return undefined;
        const outcome = await this.sendRecord(billed, record, token, pressing, signal);
        if (outcome.kind === 'failed') return outcome.message;
        settled.set(token, outcome.kind === 'rejected' ? outcome.message : undefined);
        if (outcome.kind === 'conflict') conflicts.push(record);
        return undefined;
      },
    );
    // Leadership lost: no verdict on the hour (the next leader reports it), and no ReportFailing.
    signal.throwIfAborted();
    await this.reportConflicts(product, hour, conflicts, log);
    const rejected = tokened.flatMap(({ record, token }): Rejected[] => {
      const why = settled.get(token);
      return why === undefined ? [] : [{ record, token, why }];
    });
    if (rejected.length > 0 && rejected.length === records.length && !pressing) {
      // Every record refused: more likely the product's trouble than each pod's (its role, its customer). The hour is held, and retried, for two hours.
      for (const { token } of rejected) settled.delete(token);
      return { kind: 'failed', message: `every record was refused: ${rejected[0]?.why ?? ''}` };
    }
    const failures = results.filter((failure) => failure !== undefined);
    if (failures.length === 0) {
      const refused = await this.reportRejected(product, hour, rejected, log);
      return { kind: 'reported', ...(refused !== undefined ? { rejected: refused } : {}) };
    }
    // AWS says the hour is past its window (our clock may differ a little from AWS's): lost.
    if (failures.some((failure) => failure.includes('TimestampOutOfBoundsException')) && !withinWindow(hour, this.deps.clock.now() + hourSlackMs)) {
      return { kind: 'lost', records: records.length - (settled.size - rejected.length) };
    }
    log.warn('usage report failed; will retry', { hour: iso(hour), failed: failures.length, error: failures[0] });
    return { kind: 'failed', message: `${failures.length} of ${records.length} records failed: ${failures[0] ?? ''}` };
  }

  /** One MeterUsage call, and what it came to (a record AWS holds already is accepted). */
  private async sendRecord(product: MarketplaceProduct, record: UsageRecordPlan, token: string, pressing: boolean, signal: AbortSignal): Promise<RecordOutcome> {
    try {
      const input = {
        productCode: product.spec.productCode,
        timestamp: hourStart(record.hour),
        usageDimension: record.dimension,
        usageQuantity: record.quantity,
        clientToken: token,
        ...(record.allocations ? { usageAllocations: record.allocations.map(allocation) } : {}),
      };
      // Two hours past its end, an hour's records no longer yield to registrations: four are left of AWS's window.
      const urgency = pressing ? 'pressing' : 'deferrable';
      const send = (caller: PodRef) => this.deps.clients.run(product, caller, 'MeterUsage', (client) => meterUsage(client, input, signal), signal, urgency);
      const caller = this.callerRef(product, record);
      await send(caller).catch((error: unknown) => {
        // The pod ended (or was replaced under its name) before the cache showed it: its token can be bound to it no more.
        if (!caller.ended && error instanceof IdentityUnavailableError && (error.httpStatus === 404 || error.httpStatus === 409)) return send({ ...caller, ended: true });
        throw error;
      });
      this.deps.metrics.meteringRecords.inc({ outcome: 'sent' });
      return { kind: 'accepted' };
    } catch (error) {
      const outcome = recordOutcome(record, error, pressing);
      this.deps.metrics.meteringRecords.inc({ outcome: outcome.kind === 'accepted' ? 'duplicate' : outcome.kind });
      return outcome;
    }
  }

  /** One Warning Event per hour whose records AWS already held with other quantities (none when there were no conflicts). */
  private async reportConflicts(product: MarketplaceProduct, hour: number, conflicts: readonly UsageRecordPlan[], log: Logger): Promise<void> {
    const [first] = conflicts;
    if (!first) return;
    const which = `${conflicts.length} record${conflicts.length === 1 ? '' : 's'} of hour ${iso(hour)} (first: ${first.dimension} = ${first.quantity})`;
    log.error('AWS holds other usage under these records\' ClientTokens; it bills what it holds', { hour: iso(hour), records: conflicts.length });
    await this.deps.events.record(productSubject(product), 'Warning', 'UsageConflict', 'MeterUsage', `${which}: AWS answered IdempotencyConflictException, it already holds a record under the same ClientToken with other parameters and bills that one; the hour is not sent again`);
  }

  /** One Warning Event per hour for the pods whose records were refused for good (none when there were none); returns what it said. */
  private async reportRejected(product: MarketplaceProduct, hour: number, rejected: readonly Rejected[], log: Logger): Promise<string | undefined> {
    const [first] = rejected;
    if (!first) return undefined;
    const callers = new Set(rejected.map(({ record }) => (record.caller.kind === 'pod' ? record.caller.name : 'operator')));
    const { record, why: message } = first;
    const firstCaller = record.caller.kind === 'pod' ? `pod ${record.caller.name}` : 'the operator';
    log.error('usage records refused for good; the other callers\' records of the hour are reported', { hour: iso(hour), records: rejected.length, callers: callers.size, error: message });
    const note = `${rejected.length} record${rejected.length === 1 ? '' : 's'} of hour ${iso(hour)} from ${callers.size} pod${callers.size === 1 ? '' : 's'} cannot be sent and are not billed (first, ${firstCaller}: ${message}); the other pods' records are reported`;
    await this.deps.events.record(productSubject(product), 'Warning', 'UsageRejected', 'MeterUsage', note);
    return note;
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
    // Once when it starts failing: a ledger that cannot be written holds every hour back, as AWS failing does.
    if ((condition.reason === 'ReportFailing' || condition.reason === 'LedgerWriteFailing') && previous?.condition.reason !== condition.reason) {
      await this.deps.events.record(productSubject(product), 'Warning', 'MeteringFailed', 'MeterUsage', condition.message);
    }
  }
}

/** A record of the hour given up, and why. */
interface Rejected {
  record: UsageRecordPlan;
  token: string;
  why: string;
}

/** What sending one record came to: accepted (sent now, or held by AWS already), or not. */
type RecordOutcome = { kind: 'accepted' } | { kind: 'conflict' } | { kind: 'rejected'; message: string } | { kind: 'failed'; message: string };

function recordOutcome(record: UsageRecordPlan, error: unknown, pressing: boolean): RecordOutcome {
  const message = error instanceof Error ? error.message : String(error);
  // Only ever the identical record: a closed hour's records are fixed.
  if (error instanceof AwsCallError && error.code === 'DuplicateRequestException') return { kind: 'accepted' };
  // AWS holds a record under this token with other parameters, and bills that one: no resend can change it.
  if (error instanceof AwsCallError && error.code === 'IdempotencyConflictException') return { kind: 'conflict' };
  // A pod's own record that can never go (its customer not entitled, its ServiceAccount gone): it must not hold back the others.
  if (record.caller.kind === 'pod' && (refusedForGood(error) || (pressing && noIdentity(error)))) return { kind: 'rejected', message };
  return { kind: 'failed', message };
}

/**
 * A refusal of this pod's own that no retry changes: its customer not entitled, or its identity
 * gone (its ServiceAccount deleted). Refusals that may be the product's or the cluster's (a role's
 * trust policy, a region, throttling, the operator's own permissions: IdentityRetryError, an
 * unknown error) are retried, as are the operator's own.
 */
function refusedForGood(error: unknown): boolean {
  if (error instanceof AwsCallError) return error.code === 'CustomerNotEntitledException';
  if (error instanceof IdentityUnavailableError) return error.httpStatus === 404 || error.httpStatus === 410;
  return false;
}

/**
 * No identity to be had for the pod (what registration calls IdentityUnavailable) for a reason
 * someone may still mend: no role or a malformed one, or, for a pod that has ended, the
 * operator's limits refusing it a token in a namespace not labelled for it. Retried for the
 * hour's first two hours past its end, then given up, so the hours after it go out in time.
 */
function noIdentity(error: unknown): boolean {
  return error instanceof IdentityUnavailableError;
}

/** A product's part of a shared code's record, tagged with its namespace and name. */
function allocation({ product, quantity }: { product: string; quantity: number }): UsageAllocation {
  const [namespace = '', name = ''] = product.split('/');
  return { AllocatedUsageQuantity: quantity, Tags: [{ Key: 'namespace', Value: namespace }, { Key: 'product', Value: name }] };
}

function conditionOf(ledger: Ledger): Condition {
  const lastDone = ledger.nextHour - 1;
  if (ledger.lastReportedHour === undefined && ledger.lostHours.length === 0) {
    return { status: 'Unknown', reason: 'AwaitingFirstHour', message: `the first metered hour (${iso(ledger.startHour)}) is reported once it closes` };
  }
  if (ledger.lostHours.at(-1) === lastDone) return { status: 'False', reason: 'UsageLost', message: `usage of hour ${iso(lastDone)} is lost: it could not be reported within AWS's ${reportWindowHours}-hour window` };
  // For as long as AWS would still take records of the hour (the hours behind it may have gone out with it).
  if (ledger.rejected && lastDone - ledger.rejected.hour < reportWindowHours) return { status: 'False', reason: 'UsageRejected', message: ledger.rejected.message };
  return { status: 'True', reason: 'UsageReported', message: `usage through hour ${iso(lastDone)} reported` };
}
