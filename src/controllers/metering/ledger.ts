// A product's usage ledger: which pods counted in which hours, and how far reporting has got.
// Kept in the cluster (see ledger-store.ts), so a restart or a failover neither loses nor repeats
// an hour. Pure functions here: observing pods, the records of an hour, progress.
//
// A pod counts for an hour when it was entitled and running at any time in it. The hours it counts
// for are a range: `from` (the hour it was first seen counting) to `to` (the last), or, while it
// still counts, to the ledger's `observedThrough`; a pod that stops counting and counts again
// (revoked, then entitled again) keeps its earlier ranges beside the new one. An hour is written
// here as soon as it is seen, before the pod can end: what a deleted pod contributed is already
// recorded when it goes.
//
// An hour is closed (closeHours) the first time the ledger is looked at after it ended: what it
// bills (product code, identity mode, dimensions and, in Operator mode, the quantities) is fixed
// then, before any record of it is sent, so a resend after a spec change or a failover is the same
// request. A pod first seen after an hour closed never counts in it.
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { roleSessionName } from '../../aws/pod-identity.js';
import { verdictOf } from '../../api/pod-state.js';
import { podRequests, quantityOf, usageOf, type PodUsage, type UsageUnit } from '../../api/pod-usage.js';

export const hourMs = 60 * 60 * 1000;
/** AWS takes MeterUsage records up to 6 hours old (TimestampOutOfBoundsException after). */
export const reportWindowHours = 6;
/** Hours kept in the ledger's lists: the lost ones (shown in the status too), and those reported for a shared code. */
const hoursKept = 24;

/** Hours are counted from the epoch: hour h starts at h · 1 h. */
export function hourOf(timeMs: number): number {
  return Math.floor(timeMs / hourMs);
}

export function hourStart(hour: number): Date {
  return new Date(hour * hourMs);
}

export interface LedgerPod {
  name: string;
  serviceAccount?: string;
  from: number;
  /** The last hour it counted for; absent while it still counts. */
  to?: number;
  /** Ranges [from, to] it counted for before `from`, oldest first: it stopped counting and counted again. */
  earlier?: [number, number][];
  usage: PodUsage;
}

export interface MeteredDimension {
  name: string;
  unit: UsageUnit;
}

/** What a closed hour bills, fixed when it closed. */
export interface ClosedHour {
  productCode: string;
  mode: 'Operator' | 'Pod';
  dimensions: MeteredDimension[];
  /** Operator mode: the product's quantity of each dimension (in the order of `dimensions`); its pods' part in the hour is no longer kept. */
  quantities?: number[];
  /**
   * Operator mode, kept by the product that reports for every product of its product code: the
   * records it sends, summed over them, fixed before the first is sent.
   */
  shared?: SharedRecord[];
  /** Closed by a release before shared product codes: reported as that release did (the product's own sums and ClientTokens). */
  legacy?: true;
}

/** One dimension of a shared product code's hour: the sum, and each product's part of it. */
export interface SharedRecord {
  dimension: string;
  quantity: number;
  /** By product (`namespace/name`), in that order. */
  allocations: { product: string; quantity: number }[];
}

export interface Ledger {
  productUid: string;
  /** The first hour metered: the hour metering began for this product. */
  startHour: number;
  /** The newest hour in which the pods still open in `pods` were seen counting. */
  observedThrough: number;
  /** The first hour not yet reported nor lost. */
  nextHour: number;
  lastReportedHour?: number;
  lostHours: number[];
  /** Hours from `nextHour` on that have closed, by hour. */
  closed: Record<number, ClosedHour>;
  /** Hours through this one were closed by an earlier release (see ClosedHour.legacy). */
  legacyThrough?: number;
  /** The newest hours this product reported as the reporter of a shared product code (shared-codes.ts). */
  sharedReported?: number[];
  /** The newest hour reported without some pods' records, given up: what the Metered condition says for AWS's window of hours after it. */
  rejected?: { hour: number; message: string };
  /** By pod uid. */
  pods: Record<string, LedgerPod>;
}

export function newLedger(productUid: string, hour: number): Ledger {
  return { productUid, startHour: hour, observedThrough: hour, nextHour: hour, lostHours: [], closed: {}, pods: {} };
}

/** The first hour not closed yet: no pod first seen now counts before it. */
function firstOpenHour(ledger: Ledger): number {
  let hour = Math.max(ledger.startHour, ledger.nextHour);
  while (ledger.closed[hour]) hour++;
  return hour;
}

/** Whether the product is metered at all: it has dimensions. */
export function meters(product: MarketplaceProduct | undefined): boolean {
  return (product?.spec.metering?.dimensions?.length ?? 0) > 0;
}

/** Entitled and running: what counts for metering. */
export function podCounts(pod: V1Pod): boolean {
  return verdictOf(pod) === 'Entitled' && pod.status?.phase === 'Running';
}

/**
 * The ledger after seeing the product's pods at hour `hour`: pods that count and are new to it
 * start at the hour they were registered (no earlier than the ledger), pods open in it that no
 * longer count end at the last hour they were observed in, and everything open now counts through
 * `hour`. Returns the same object when nothing changed.
 */
export function observePods(ledger: Ledger, pods: readonly V1Pod[], hour: number): Ledger {
  // Copied on the first change only: most observations (a pod of the product that starts, not yet
  // running) change nothing, and copying thousands of pods each time was most of their cost.
  let next: Record<string, LedgerPod> | undefined;
  const set = (uid: string, entry: LedgerPod): void => {
    (next ??= { ...ledger.pods })[uid] = entry;
  };
  const counting = new Set<string>();
  for (const pod of pods) {
    const uid = pod.metadata?.uid;
    if (!uid) continue;
    // A counting pod whose verdict is being checked again (its unsealed verdict started over, or
    // the operator's key replaced) still runs: its range stays open until a verdict ends it.
    const entry = ledger.pods[uid];
    if (entry && entry.to === undefined && verdictOf(pod) === undefined && pod.status?.phase === 'Running') counting.add(uid);
    if (!podCounts(pod)) continue;
    counting.add(uid);
    if (entry && entry.to === undefined) continue; // counting on in its open range
    const from = registeredFrom(pod, ledger, hour);
    if (entry) {
      set(uid, reopened(entry, from));
      continue;
    }
    set(uid, {
      name: pod.metadata?.name ?? '',
      ...(pod.spec?.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
      from,
      usage: usageOf(podRequests(pod)),
    });
  }
  // The ledger's pods as they were: those added or reopened above count, and are passed over.
  for (const uid in ledger.pods) {
    const entry = ledger.pods[uid];
    if (!entry || entry.to !== undefined || counting.has(uid)) continue;
    // Gone or finished: it counted at least through the last hour the ledger saw it in.
    // (No earlier than its start: a pod the ledger took in after it last observed the hour.)
    set(uid, { ...entry, to: Math.max(entry.from, ledger.observedThrough) });
  }
  if (!next && ledger.observedThrough === hour) return ledger;
  return { ...ledger, observedThrough: hour, pods: next ?? ledger.pods };
}

/** The hour a counting pod's range starts: the hour it was registered, no earlier than the first open hour and no later than now. */
function registeredFrom(pod: V1Pod, ledger: Ledger, hour: number): number {
  const registeredAt = Date.parse(pod.metadata?.annotations?.[annotations.registeredAt] ?? '');
  return Number.isFinite(registeredAt) ? Math.min(hour, Math.max(firstOpenHour(ledger), hourOf(registeredAt))) : hour;
}

/**
 * A pod counting again after its range ended, from the hour it was registered again (`from`, no
 * later than now): the range goes on when that is the hour it ended in or the next; otherwise
 * it is kept as an earlier range, and a new one starts (never before the old one's end).
 */
function reopened(entry: LedgerPod, from: number): LedgerPod {
  const { to, ...open } = entry;
  if (to === undefined || from <= to + 1) return open;
  return { ...open, from, earlier: [...(entry.earlier ?? []), [entry.from, to]] };
}

/** A record of one caller, dimension and hour. */
export interface UsageRecordPlan {
  hour: number;
  dimension: string;
  quantity: number;
  /** 'operator', or the pod whose own identity sends it. */
  caller: { kind: 'operator' } | { kind: 'pod'; uid: string; name: string; serviceAccount?: string; sessionName: string };
  /** A shared product code's record: each product's part. */
  allocations?: SharedRecord['allocations'];
}

function countsIn(entry: LedgerPod, hour: number, ledger: Ledger): boolean {
  if (entry.from <= hour && hour <= (entry.to ?? ledger.observedThrough)) return true;
  return entry.earlier?.some(([from, to]) => from <= hour && hour <= to) ?? false;
}

/** What the product bills now, for an hour that closes now. */
function termsOf(product: MarketplaceProduct): ClosedHour {
  return { productCode: product.spec.productCode, mode: product.spec.identity?.mode ?? 'Pod', dimensions: (product.spec.metering?.dimensions ?? []).map(({ name, unit }) => ({ name, unit })) };
}

/** The sum over the pods that counted in `hour`, per dimension (zero included: the hour was metered). */
function quantitiesIn(ledger: Ledger, dimensions: readonly MeteredDimension[], hour: number): number[] {
  const entries = Object.values(ledger.pods).filter((entry) => countsIn(entry, hour, ledger));
  return dimensions.map((d) => entries.reduce((sum, entry) => sum + quantityOf(entry.usage, d.unit), 0));
}

/**
 * Closes every hour before `hour` not closed yet, with the product's terms of now (and, in
 * Operator mode, its sums). Hours past AWS's window are not closed: they are lost whatever they hold.
 */
export function closeHours(ledger: Ledger, product: MarketplaceProduct, hour: number): Ledger {
  const terms = termsOf(product);
  let closed: Record<number, ClosedHour> | undefined;
  for (let h = Math.max(ledger.nextHour, hour - reportWindowHours); h < hour; h++) {
    if (ledger.closed[h]) continue;
    closed ??= { ...ledger.closed };
    const legacy = ledger.legacyThrough !== undefined && h <= ledger.legacyThrough ? { legacy: true as const } : {};
    closed[h] = { ...terms, ...(terms.mode === 'Operator' ? { quantities: quantitiesIn(ledger, terms.dimensions, h) } : {}), ...legacy };
  }
  return closed ? { ...ledger, closed } : ledger;
}

/**
 * The records of `hour`: as it closed, or, while it is open, as it would close now. Operator
 * mode: one per dimension, the product's sum. Pod mode: one per pod and dimension; pods that AWS
 * sees as one caller (the same role session name: a pod recreated under its old name) make one
 * record, of the larger pod.
 */
export function recordsOf(ledger: Ledger, product: MarketplaceProduct, hour: number): UsageRecordPlan[] {
  const closed: ClosedHour = ledger.closed[hour] ?? termsOf(product);
  if (closed.mode === 'Operator') {
    const quantities = closed.quantities ?? quantitiesIn(ledger, closed.dimensions, hour);
    return closed.dimensions.map((d, i) => ({ hour, dimension: d.name, quantity: quantities[i] ?? 0, caller: { kind: 'operator' as const } }));
  }
  const bySession = new Map<string, [string, LedgerPod]>();
  for (const [uid, entry] of Object.entries(ledger.pods)) {
    if (!countsIn(entry, hour, ledger)) continue;
    const sessionName = roleSessionName({ namespace: product.metadata.namespace, name: entry.name });
    const previous = bySession.get(sessionName);
    if (!previous || larger(entry.usage, previous[1].usage)) bySession.set(sessionName, [uid, entry]);
  }
  return [...bySession].flatMap(([sessionName, [uid, entry]]) =>
    closed.dimensions.map((d) => ({
      hour,
      dimension: d.name,
      quantity: quantityOf(entry.usage, d.unit),
      caller: { kind: 'pod' as const, uid, name: entry.name, sessionName, ...(entry.serviceAccount ? { serviceAccount: entry.serviceAccount } : {}) },
    })),
  );
}

function larger(a: PodUsage, b: PodUsage): boolean {
  return a.vCPU + a.MemoryGiB > b.vCPU + b.MemoryGiB;
}

/** Hours closed at `hour` and not yet reported or lost, oldest first. */
export function dueHours(ledger: Ledger, hour: number): number[] {
  const due: number[] = [];
  for (let h = ledger.nextHour; h < hour; h++) due.push(h);
  return due;
}

/** Whether AWS still takes records of `hour` at `nowMs`. */
export function withinWindow(hour: number, nowMs: number): boolean {
  return nowMs < (hour + reportWindowHours) * hourMs;
}

/** How an hour was reported: for every product of a shared code (asReporter), without some records refused for good (rejected: why). */
export interface HourReported {
  asReporter?: boolean;
  rejected?: string;
}

/** The ledger once `hour` is reported (or lost): its terms go. */
export function completeHour(ledger: Ledger, hour: number, outcome: 'reported' | 'lost', { asReporter = false, rejected }: HourReported = {}): Ledger {
  const closed = Object.fromEntries(Object.entries(ledger.closed).filter(([h]) => Number(h) !== hour));
  const rest = ledger.legacyThrough !== undefined && ledger.legacyThrough <= hour ? without(ledger, 'legacyThrough') : ledger;
  return {
    ...rest,
    ...(outcome === 'reported' && rejected !== undefined ? { rejected: { hour, message: rejected } } : {}),
    nextHour: hour + 1,
    closed,
    ...(outcome === 'reported' ? { lastReportedHour: hour } : { lostHours: [...ledger.lostHours, hour].slice(-hoursKept) }),
    ...(asReporter ? { sharedReported: [...(ledger.sharedReported ?? []), hour].slice(-hoursKept) } : {}),
  };
}

/**
 * Without the ranges no hour needs: an hour needs the pods that counted in it until it is done,
 * unless it closed with its sums (Operator mode). Pods left with no range leave the ledger. Kept
 * apart from closing and completing hours: the ledger is written as it is first, and pruned only
 * once that write holds the hours that made the pods unneeded.
 */
export function pruned(ledger: Ledger): Ledger {
  let needsFrom = ledger.nextHour;
  while (ledger.closed[needsFrom]?.quantities) needsFrom++;
  // Looked over before anything is copied: most saves prune nothing.
  if (!Object.values(ledger.pods).some((entry) => (entry.to !== undefined && entry.to < needsFrom) || entry.earlier?.some(([, to]) => to < needsFrom))) return ledger;
  const pods: Record<string, LedgerPod> = {};
  let changed = false;
  for (const [uid, entry] of Object.entries(ledger.pods)) {
    // Its latest range is not needed: nor are the earlier ones.
    if (entry.to !== undefined && entry.to < needsFrom) {
      changed = true;
      continue;
    }
    const earlier = entry.earlier?.filter(([, to]) => to >= needsFrom);
    if (!entry.earlier || earlier?.length === entry.earlier.length) {
      pods[uid] = entry;
      continue;
    }
    changed = true;
    pods[uid] = earlier?.length ? { ...entry, earlier } : without(entry, 'earlier');
  }
  return changed ? { ...ledger, pods } : ledger;
}

function without<T extends object, K extends keyof T>(object: T, key: K): Omit<T, K> {
  return Object.fromEntries(Object.entries(object).filter(([k]) => k !== key)) as Omit<T, K>;
}
