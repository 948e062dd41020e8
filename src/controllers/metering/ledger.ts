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
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { roleSessionName } from '../../aws/pod-identity.js';
import { verdictOf } from '../../api/pod-state.js';
import { podRequests, quantityOf, usageOf, type PodUsage } from '../../api/pod-usage.js';

export const hourMs = 60 * 60 * 1000;
/** AWS takes MeterUsage records up to 6 hours old (TimestampOutOfBoundsException after). */
export const reportWindowHours = 6;
/** Lost hours kept in the ledger and the status. */
const lostHoursKept = 24;

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
  /** By pod uid. */
  pods: Record<string, LedgerPod>;
}

export function newLedger(productUid: string, hour: number): Ledger {
  return { productUid, startHour: hour, observedThrough: hour, nextHour: hour, lostHours: [], pods: {} };
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
  let changed = ledger.observedThrough !== hour;
  const next: Record<string, LedgerPod> = { ...ledger.pods };
  const counting = new Set<string>();
  for (const pod of pods) {
    const uid = pod.metadata?.uid;
    if (!uid) continue;
    // A counting pod whose verdict is being checked again (its unsealed verdict started over, or
    // the operator's key replaced) still runs: its range stays open until a verdict ends it.
    const entry = next[uid];
    if (entry && entry.to === undefined && verdictOf(pod) === undefined && pod.status?.phase === 'Running') counting.add(uid);
    if (!podCounts(pod)) continue;
    counting.add(uid);
    if (entry && entry.to === undefined) continue; // counting on in its open range
    const from = registeredFrom(pod, ledger, hour);
    changed = true;
    if (entry) {
      next[uid] = reopened(entry, from);
      continue;
    }
    next[uid] = {
      name: pod.metadata?.name ?? '',
      ...(pod.spec?.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
      from,
      usage: usageOf(podRequests(pod)),
    };
  }
  for (const [uid, entry] of Object.entries(next)) {
    if (entry.to !== undefined || counting.has(uid)) continue;
    // Gone or finished: it counted at least through the last hour the ledger saw it in.
    next[uid] = { ...entry, to: ledger.observedThrough };
    changed = true;
  }
  return changed ? { ...ledger, observedThrough: hour, pods: next } : ledger;
}

/** The hour a counting pod's range starts: the hour it was registered, no earlier than the ledger and no later than now. */
function registeredFrom(pod: V1Pod, ledger: Ledger, hour: number): number {
  const registeredAt = Date.parse(pod.metadata?.annotations?.[annotations.registeredAt] ?? '');
  return Number.isFinite(registeredAt) ? Math.min(hour, Math.max(ledger.startHour, hourOf(registeredAt))) : hour;
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
}

function countsIn(entry: LedgerPod, hour: number, ledger: Ledger): boolean {
  if (entry.from <= hour && hour <= (entry.to ?? ledger.observedThrough)) return true;
  return entry.earlier?.some(([from, to]) => from <= hour && hour <= to) ?? false;
}

/**
 * The records of a closed hour. Operator mode: one per dimension, the sum over the pods (zero
 * included: the hour was metered). Pod mode: one per pod and dimension; pods that AWS sees as one
 * caller (the same role session name: a pod recreated under its old name) make one record.
 */
export function recordsOf(ledger: Ledger, product: MarketplaceProduct, hour: number): UsageRecordPlan[] {
  const dimensions = product.spec.metering?.dimensions ?? [];
  const entries = Object.entries(ledger.pods).filter(([, entry]) => countsIn(entry, hour, ledger));
  if ((product.spec.identity?.mode ?? 'Pod') === 'Operator') {
    return dimensions.map((d) => ({
      hour,
      dimension: d.name,
      quantity: entries.reduce((sum, [, entry]) => sum + quantityOf(entry.usage, d.unit), 0),
      caller: { kind: 'operator' as const },
    }));
  }
  const bySession = new Map<string, [string, LedgerPod]>();
  for (const [uid, entry] of entries) {
    const sessionName = roleSessionName({ namespace: product.metadata.namespace, name: entry.name });
    const previous = bySession.get(sessionName);
    // The same caller twice in an hour: one record, of the larger pod.
    if (!previous || larger(entry.usage, previous[1].usage)) bySession.set(sessionName, [uid, entry]);
  }
  return [...bySession].flatMap(([sessionName, [uid, entry]]) =>
    dimensions.map((d) => ({
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

/** The ledger once `hour` is reported (or lost): pods whose hours are all done leave it, and so do ranges that are done. */
export function completeHour(ledger: Ledger, hour: number, outcome: 'reported' | 'lost'): Ledger {
  const nextHour = hour + 1;
  const pods = Object.fromEntries(
    Object.entries(ledger.pods)
      .filter(([, entry]) => entry.to === undefined || entry.to >= nextHour)
      .map(([uid, entry]) => [uid, withoutDoneRanges(entry, nextHour)] as const),
  );
  return {
    ...ledger,
    nextHour,
    pods,
    ...(outcome === 'reported' ? { lastReportedHour: hour } : { lostHours: [...ledger.lostHours, hour].slice(-lostHoursKept) }),
  };
}

function withoutDoneRanges(entry: LedgerPod, nextHour: number): LedgerPod {
  if (!entry.earlier) return entry;
  const { earlier, ...rest } = entry;
  const open = earlier.filter(([, to]) => to >= nextHour);
  return open.length > 0 ? { ...rest, earlier: open } : rest;
}
