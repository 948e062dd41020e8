// Reconciles one labelled pod towards its verdict. Level-triggered and idempotent: it reads the
// pod's verdict state and gate and does only what is missing, so a restart or a repeated event
// never registers a pod twice.
//   watch → queue → here → Registrar (AWS) → verdict → pod patch, Event, report to the product
// It believes only a verdict state it sealed itself (the cache drops any other, verdicts/pod-cache.ts),
// so a forged `Entitled` is a pod without a verdict, checked with AWS like a new one. Every write
// names the pod's uid, so a result computed for a pod never lands on a successor of its name.
import type { V1Pod } from '@kubernetes/client-node';
import { permanentReasons, productSubject, schedulingGate, type CheckRecord, type MarketplaceProduct } from '../../api/marketplace-product.js';
import { isBypassing, isGated, mustNotRun, productKeyOfPod, verdictStateOf, wasAllowedToRun, type VerdictState } from '../../api/pod-state.js';
import type { Clock } from '../../clock.js';
import { contentTypes, type ApiClient } from '../../kube/api.js';
import { isGoneOrReplaced } from '../../kube/errors.js';
import type { EventRecorder } from '../../kube/events.js';
import { objectKey, type Cache } from '../../runtime/informer.js';
import { RetryLater, type Result } from '../../runtime/workqueue.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { CachedPod } from '../../verdicts/pod-cache.js';
import { podPath, type Evictions } from './evictions.js';
import type { ProductReports } from '../product-reports.js';
import { checkBasis, planRecheck, recheckDelayMs, type CheckBasis } from './rechecks.js';
import type { Registrar, RegistrationAnswer } from './registration.js';
import { newCheckId } from '../../verdicts/nonce.js';
import type { Sealer } from '../../verdicts/seal.js';

export interface PodReconcilerDeps {
  /** Guarded by the leader signal (KubeClient.guardedBy). */
  client: ApiClient;
  pods: Cache<CachedPod>;
  products: Cache<MarketplaceProduct>;
  registrar: Registrar;
  /** Seals the verdicts written and makes the registrations' nonces (the operator key). */
  sealer: Sealer;
  /** The fingerprint of a product's public key when a ConfigMap holds it (key-config-maps.ts). */
  keyFingerprint: (product: MarketplaceProduct) => string | undefined;
  evictions: Evictions;
  reports: ProductReports;
  events: EventRecorder;
  metrics: Metrics;
  clock: Clock;
  /** The longest wait between periodic checks of a NotEntitled pod. */
  maxRecheckMs: number;
  /** Queues another pod ("namespace/name") for its own reconcile. */
  requeue: (podKey: string) => void;
  log: Logger;
}

/**
 * What this process knows of a pod beyond what the cache shows, by uid. Only the pod's own
 * reconcile writes it, one at a time per pod (the work queue's promise).
 */
interface PodMemory {
  /** The verdict state it wrote last: the cache lags behind its own writes, and a re-run must see them or it would register the pod twice. */
  state?: VerdictState;
  /** It removed the gate. The API server never lets a gate be added back, so it stays removed. */
  ungated?: boolean;
  /** Reported once per pod: a verdict it did not seal, a pod found running ungated. */
  reportedUnverified?: boolean;
  reportedBypass?: boolean;
  /** The resourceVersion whose unsealed verdict it started over from (until the cache shows its own write). */
  startedOverFrom?: string;
}

type Refused = Extract<RegistrationAnswer, { verdict: 'NotEntitled' }>;
type Entitled = Extract<RegistrationAnswer, { verdict: 'Entitled' }>;

export class PodReconciler {
  private readonly memory = new Map<string, PodMemory>();
  /** When AWS last refused an identity, by product and identity (callerOf), in the operator's clock: onRevocation: Evict. */
  private readonly revocations = new Map<string, Map<string, number>>();

  constructor(private readonly deps: PodReconcilerDeps) {}

  async reconcile(key: string, signal: AbortSignal): Promise<Result | undefined> {
    const pod = this.deps.pods.get(key);
    const uid = pod?.metadata?.uid;
    if (!pod || !uid || !productKeyOfPod(pod) || pod.metadata?.deletionTimestamp) return undefined;
    try {
      return await this.reconcilePod(pod, uid, signal);
    } finally {
      // Deleted (or replaced) while this pass was in flight: its delete handler may have run before
      // this pass wrote a record of it, which nothing would remove then. Its records go now.
      if (this.deps.pods.get(key)?.metadata?.uid !== uid) this.podDeleted(pod);
    }
  }

  private async reconcilePod(pod: CachedPod, uid: string, signal: AbortSignal): Promise<Result | undefined> {
    const productKey = productKeyOfPod(pod) ?? '';
    const log = this.deps.log.child({ pod: objectKey(pod), product: productKey });
    const product = this.deps.products.get(productKey);
    const memory = this.memory.get(uid) ?? {};
    const state = memory.state ?? verdictStateOf(pod);
    const gated = isGated(pod) && !memory.ungated;
    await this.reportTampering(pod, product, state, log);
    if (pod.unverifiedVerdict !== undefined && memory.startedOverFrom !== pod.metadata?.resourceVersion) return this.startOver(pod, log);
    if (pod.unsealedVerdict && !memory.state) return this.adopt(pod, product, state, log);

    if (state.status === 'Entitled') {
      if (product && this.isRevoked(product, pod, state)) return this.markRevoked(pod, product, state, log);
      // Sealed, so the operator's own, yet gated: adopted (sealed without ungating) by a process
      // that stopped before its next pass. An unsealed Entitled on a gated pod is never adopted (pod-cache.ts).
      if (gated) await this.patchPod(pod, {}, true);
      return undefined;
    }
    if (state.status === 'NotEntitled' && state.reason !== 'ProductNotFound') return product ? this.refused(pod, product, state, gated, log) : undefined;
    if (!product) return this.productNotFound(pod, state, log);
    return this.registerAndRecord(pod, product, state, gated, signal, log);
  }

  /** The pod is gone: so is what this process knows of it, of its eviction, and of its identity's refusal if no pod of it is left. */
  podDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid ?? '';
    this.memory.delete(uid);
    this.deps.evictions.podDeleted(uid);
    this.forgetRevocationOf(pod);
  }

  /** The product is gone: so are its identities' refusals. */
  productDeleted(productKey: string): void {
    this.revocations.delete(productKey);
  }

  /** How much it keeps, for tests of its bounds: records of pods (its own and its evictions') and refused identities. */
  sizes(): { pods: number; evictions: number; revokedIdentities: number } {
    let revokedIdentities = 0;
    for (const byCaller of this.revocations.values()) revokedIdentities += byCaller.size;
    return { pods: this.memory.size, evictions: this.deps.evictions.refusedPods, revokedIdentities };
  }

  /** A NotEntitled pod: checked again when due; kept from running meanwhile, or let run under Audit. */
  private async refused(pod: CachedPod, product: MarketplaceProduct, state: VerdictState, gated: boolean, log: Logger): Promise<Result | undefined> {
    const plan = planRecheck(state.checks, state.reason, this.basis(product, pod), this.deps.clock.now(), this.deps.maxRecheckMs);
    if (plan.kind === 'now') {
      await this.checkAgain(pod, product, state, plan.attempts, log.child({ why: plan.why }));
      return undefined;
    }
    const next = plan.kind === 'at' ? { requeueAfterMs: this.deps.clock.realMsUntil(plan.time) } : undefined;
    if (!gated && mustNotRun(product, state)) return sooner(await this.deps.evictions.remove(pod, wasAllowedToRun(state), state.reason ?? 'NotEntitled', log), next);
    if (gated && product.spec.enforcement === 'Audit') await this.patchPod(pod, {}, true);
    return next;
  }

  private async productNotFound(pod: CachedPod, state: VerdictState, log: Logger): Promise<undefined> {
    if (state.reason === 'ProductNotFound') return undefined;
    const productKey = productKeyOfPod(pod) ?? '';
    // The check id stays: a check again under way when the product went is the same check when it is back (never the first's nonce again).
    const next: VerdictState = { status: 'NotEntitled', reason: 'ProductNotFound', ...registeredAtOf(state), ...(state.check ? { check: state.check } : {}) };
    if (!(await this.writeState(pod, next, false))) return undefined;
    await this.deps.events.pod(pod, 'Warning', 'NotEntitled', 'CheckEntitlement', `MarketplaceProduct ${productKey} not found; the pod stays gated until it exists`);
    this.deps.metrics.verdicts.inc({ verdict: 'NotEntitled', reason: 'ProductNotFound' });
    log.info('product not found, pod stays gated');
    return undefined;
  }

  /**
   * Registers the pod and records the verdict on it, its product and in an Event. The nonce needs
   * no write ahead: it is computed from the pod's uid and check id (verdicts/nonce.ts), so a retry
   * after a crash is the same registration, never a second one.
   */
  private async registerAndRecord(pod: CachedPod, product: MarketplaceProduct, state: VerdictState, gated: boolean, signal: AbortSignal, log: Logger): Promise<undefined> {
    const uid = pod.metadata?.uid ?? '';
    const nonce = this.deps.sealer.nonces.of(uid, state.check);
    // Running ungated with no verdict and no check id: its gate, or its verdict with it, was removed
    // by someone else (the gate guard's binding deleted), and a check of it may have been answered
    // before. A fresh check id, so never a nonce AWS already answered.
    if (!gated && state.status === undefined && state.check === undefined) return this.startOver(pod, log);
    const podRef = {
      namespace: pod.metadata?.namespace ?? '',
      name: pod.metadata?.name ?? '',
      uid,
      ...(pod.spec?.serviceAccountName ? { serviceAccountName: pod.spec.serviceAccountName } : {}),
    };
    const result = await this.deps.registrar.register(product, podRef, nonce, signal);
    if (result.verdict === 'Retry') {
      // One Event per product when its registrations start failing, not one per pod and retry:
      // an AWS outage or a missing credential must not turn into a storm of writes.
      if (this.deps.reports.reportRegistration(objectKey(product), { status: 'Unknown', reason: 'Retrying', message: result.message })) {
        await this.deps.events.record(productSubject(product), 'Warning', 'Retrying', 'RegisterUsage', `registrations of product ${product.spec.productCode} are failing and will be retried: ${result.message}`);
      }
      log.warn('registration will be retried', { error: result.message });
      throw new RetryLater(result.message);
    }
    if (result.verdict === 'Entitled') await this.recordEntitled(pod, product, result, gated, log);
    else await this.recordRefused(pod, product, state, result, gated, log);
    return undefined;
  }

  private async recordEntitled(pod: CachedPod, product: MarketplaceProduct, result: Entitled, gated: boolean, log: Logger): Promise<void> {
    const registeredAt = result.registeredAt.toISOString();
    if (!(await this.writeState(pod, { status: 'Entitled', reason: 'SignatureVerified', registeredAt }, gated))) return;
    this.deps.reports.reportRegistration(objectKey(product), {
      status: 'True',
      reason: 'SignatureVerified',
      message: `registration of pod ${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''} verified`,
      registeredAt,
      ...(result.publicKeyRotationTimestamp ? { publicKeyRotationTimestamp: result.publicKeyRotationTimestamp.toISOString() } : {}),
    });
    this.deps.metrics.verdicts.inc({ verdict: 'Entitled', reason: 'SignatureVerified' });
    await this.deps.events.pod(pod, 'Normal', 'Entitled', 'RegisterUsage', `RegisterUsage for product ${product.spec.productCode} verified (key version ${product.spec.publicKeyVersion})`);
    log.debug('pod entitled');
  }

  /**
   * Records a refusal with the record of its checks (what this one was for, when, why it failed).
   * A running pod that must not run is evicted by the next pass, which this write's own watch
   * event brings.
   */
  private async recordRefused(pod: CachedPod, product: MarketplaceProduct, state: VerdictState, result: Refused, gated: boolean, log: Logger): Promise<void> {
    const previous = state.checks;
    const audit = product.spec.enforcement === 'Audit';
    // Under Audit the operator lets it run; a later Enforce then respects its budget.
    const checks: CheckRecord = { ...this.checkRecord(product, pod, previous?.attempts ?? 1, result.reason), ...(audit || previous?.ranUnderAudit ? { ranUnderAudit: true as const } : {}) };
    const next: VerdictState = { status: 'NotEntitled', reason: result.reason, ...registeredAtOf(state), checks };
    if (!(await this.writeState(pod, next, audit && gated))) return;
    this.deps.reports.reportRegistration(objectKey(product), { status: 'False', reason: result.reason, message: result.message });
    this.deps.metrics.verdicts.inc({ verdict: 'NotEntitled', reason: result.reason });
    const consequence = !mustNotRun(product, next) ? 'Audit: the pod runs anyway' : gated ? 'the pod stays gated' : 'the running pod is evicted';
    // A check again with the same answer is no news: one Event per reason, not one per check.
    if (previous?.reason !== result.reason) await this.deps.events.pod(pod, 'Warning', 'NotEntitled', 'RegisterUsage', `${result.reason}: ${result.message}; ${consequence}`);
    log.warn('pod not entitled', { reason: result.reason, error: result.message, enforcement: product.spec.enforcement ?? 'Enforce', attempts: checks.attempts });
    // As of when AWS answered (before this write and Event): a pod entitled meanwhile is not revoked.
    if (result.reason === 'CustomerNotEntitled' && product.spec.onRevocation === 'Evict') this.revoke(product, pod, Date.parse(checks.at ?? ''), log);
  }

  /**
   * Starts a check again: the verdict goes (the pod is pending again, and counted so), a fresh
   * check id gives it a fresh nonce, and the record says what this check is for. The pod then takes the
   * path of a new pod. Its gate was never put back, so an Audit pod keeps running meanwhile.
   */
  private async checkAgain(pod: CachedPod, product: MarketplaceProduct, state: VerdictState, attempts: number, log: Logger): Promise<void> {
    const checks: CheckRecord = { ...this.basis(product, pod), attempts, ...(state.reason ? { reason: state.reason } : {}), ...(state.checks?.ranUnderAudit ? { ranUnderAudit: true as const } : {}) };
    if (!(await this.writeState(pod, { ...registeredAtOf(state), checks, check: newCheckId() }, false))) return;
    log.info('checking the pod again', { attempts, previousReason: state.reason });
  }

  /**
   * The pod carries a verdict state the operator did not seal: it is checked with AWS like a new
   * pod. The forged annotations go, and a fresh check id gives it a nonce no earlier check of the
   * pod used; nothing of its earlier state is kept.
   */
  private async startOver(pod: CachedPod, log: Logger): Promise<undefined> {
    if (!(await this.writeState(pod, { check: newCheckId() }, false))) return undefined;
    if (pod.metadata?.resourceVersion) this.remember(pod.metadata.uid ?? '', { startedOverFrom: pod.metadata.resourceVersion });
    log.info("checking the pod with AWS like a new one: its verdict was not the operator's");
    return undefined;
  }

  /**
   * A verdict a release before seals wrote (shortly after the upgrade, operator-key.ts): sealed as
   * it is, its record of checks made what this release writes (the key it was checked under; an
   * Audit pod that release let run).
   */
  private async adopt(pod: CachedPod, product: MarketplaceProduct | undefined, state: VerdictState, log: Logger): Promise<undefined> {
    const key = product && this.deps.keyFingerprint(product);
    const ranUnderAudit = product?.spec.enforcement === 'Audit' && state.status === 'NotEntitled' && !isGated(pod);
    const checks: CheckRecord | undefined = state.checks && { ...state.checks, ...(key !== undefined && state.checks.key === undefined ? { key } : {}), ...(ranUnderAudit ? { ranUnderAudit: true as const } : {}) };
    // A release without seals wrote no check id: one on the pod is someone else's, and not sealed.
    const adopted: VerdictState = { ...state, ...(checks ? { checks } : {}) };
    delete adopted.check;
    if (await this.writeState(pod, adopted, false)) log.info('sealed the verdict a release without seals wrote', { verdict: state.status ?? 'none' });
    return undefined;
  }

  /**
   * onRevocation: Evict. AWS refused `refused`'s identity: the entitled pods of the product with
   * the same identity, registered before now, are revoked, each by its own reconcile (queued here),
   * which marks it NotEntitled; its next pass evicts it, so one budget's refusal holds back no
   * other pod. In Pod identity mode the identity is the product's role, or else the pod's
   * ServiceAccount (whose role it is), not the whole product.
   */
  private revoke(product: MarketplaceProduct, refused: CachedPod, at: number, log: Logger): void {
    const productKey = objectKey(product);
    // Deleted while AWS answered: no pod of it is left to revoke, and nothing would remove the record.
    if (this.deps.products.get(productKey)?.metadata.uid !== product.metadata.uid) return;
    const caller = callerOf(product, refused);
    const pods = this.deps.pods.byIndex(productKey);
    // Only identities with pods left keep their refusal (a pod made later registers after it), so
    // the record is bounded by the product's pods, however many roles came and went.
    const live = new Set(pods.map((pod) => callerOf(product, pod)));
    const byCaller = new Map([...(this.revocations.get(productKey) ?? [])].filter(([identity]) => live.has(identity)));
    this.revocations.set(productKey, byCaller.set(caller, at));
    const revoked = (pod: CachedPod): boolean => {
      const state = this.stateOf(pod);
      return state.status === 'Entitled' && this.isRevoked(product, pod, state);
    };
    const targets = pods.filter((pod) => !pod.metadata?.deletionTimestamp && revoked(pod));
    for (const pod of targets) this.deps.requeue(objectKey(pod));
    log.info('entitlement revoked', { identity: caller, pods: targets.length });
  }

  /** The pod is gone: its identity's refusal goes too once no pod of that identity is left in the product. */
  private forgetRevocationOf(pod: V1Pod): void {
    const productKey = productKeyOfPod(pod);
    const byCaller = productKey === undefined ? undefined : this.revocations.get(productKey);
    const product = productKey === undefined ? undefined : this.deps.products.get(productKey);
    if (!productKey || !byCaller || !product) return;
    const caller = callerOf(product, pod);
    if (!byCaller.has(caller) || this.deps.pods.byIndex(productKey).some((other) => callerOf(product, other) === caller)) return;
    byCaller.delete(caller);
    if (byCaller.size === 0) this.revocations.delete(productKey);
  }

  /** Entitled, but registered no later than AWS refused its identity (revoke). */
  private isRevoked(product: MarketplaceProduct, pod: CachedPod, state: VerdictState): boolean {
    const at = this.revocations.get(objectKey(product))?.get(callerOf(product, pod));
    return product.spec.onRevocation === 'Evict' && at !== undefined && Date.parse(state.registeredAt ?? '') <= at;
  }

  private async markRevoked(pod: CachedPod, product: MarketplaceProduct, state: VerdictState, log: Logger): Promise<undefined> {
    const next: VerdictState = { status: 'NotEntitled', reason: 'CustomerNotEntitled', ...registeredAtOf(state), checks: this.checkRecord(product, pod, 1, 'CustomerNotEntitled') };
    if (!(await this.writeState(pod, next, false))) return undefined;
    this.deps.metrics.verdicts.inc({ verdict: 'NotEntitled', reason: 'CustomerNotEntitled' });
    log.warn('entitlement revoked', { identity: callerOf(product, pod) });
    await this.deps.events.pod(pod, 'Warning', 'NotEntitled', 'Evict', `CustomerNotEntitled: AWS refused ${callerOf(product, pod)} for another pod of the product; entitlement revoked, evicting (onRevocation: Evict)`);
    return undefined;
  }

  /** Reports, once per pod, a verdict it did not seal and a pod found running without the gate. */
  private async reportTampering(pod: CachedPod, product: MarketplaceProduct | undefined, state: VerdictState, log: Logger): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const memory = this.memory.get(uid) ?? {};
    if (pod.unverifiedVerdict !== undefined && !memory.reportedUnverified) {
      this.remember(uid, { reportedUnverified: true });
      this.deps.metrics.gateBypasses.inc({ kind: 'unverified_verdict' });
      log.warn('the pod carries a verdict the operator did not write; it is ignored', { claimed: pod.unverifiedVerdict });
      await this.deps.events.pod(pod, 'Warning', 'UnverifiedVerdict', 'CheckEntitlement', `the pod carries a verdict the operator did not seal (${pod.unverifiedVerdict}): it is ignored, and the pod is checked with AWS like a new one`);
    }
    if (product && !memory.ungated && !memory.reportedBypass && isBypassing(product, pod, state)) {
      this.remember(uid, { reportedBypass: true });
      this.deps.metrics.gateBypasses.inc({ kind: 'ungated' });
      log.warn('the pod is not gated but holds no verified Entitled verdict; it is registered and evicted if refused');
      await this.deps.events.pod(pod, 'Warning', 'Ungated', 'CheckEntitlement', 'the pod is not gated, yet holds no verified Entitled verdict (its gate was removed by someone other than the operator, or it was never gated): it is registered now and, if refused, evicted');
    }
  }

  private basis(product: MarketplaceProduct, pod: V1Pod): CheckBasis {
    return checkBasis(product, pod, this.deps.keyFingerprint(product));
  }

  /** The record of a check that just failed: the `attempts`-th of its streak, and when the next is due (none for a permanent reason). */
  private checkRecord(product: MarketplaceProduct, pod: V1Pod, attempts: number, reason: string): CheckRecord {
    const now = this.deps.clock.now();
    const next = permanentReasons.has(reason) ? {} : { next: new Date(now + recheckDelayMs(attempts, this.deps.maxRecheckMs)).toISOString() };
    return { ...this.basis(product, pod), attempts, at: new Date(now).toISOString(), ...next, reason };
  }

  private stateOf(pod: CachedPod): VerdictState {
    return this.memory.get(pod.metadata?.uid ?? '')?.state ?? verdictStateOf(pod);
  }

  private remember(uid: string, changes: PodMemory): void {
    this.memory.set(uid, { ...this.memory.get(uid), ...changes });
  }

  /** Writes a sealed verdict state (and removes the gate), and remembers it. False if the pod is gone or replaced. */
  private async writeState(pod: CachedPod, state: VerdictState, ungate: boolean): Promise<boolean> {
    if (!(await this.patchPod(pod, this.deps.sealer.seal.annotate(pod, state), ungate))) return false;
    this.remember(pod.metadata?.uid ?? '', { state });
    return true;
  }

  /**
   * Patches annotations and optionally removes the gate, in one request that names the pod's uid
   * (a successor of the same name refuses it). False if the pod is gone or replaced.
   */
  private async patchPod(pod: V1Pod, annotationValues: Record<string, string | null>, ungate: boolean): Promise<boolean> {
    const body: Record<string, unknown> = {
      metadata: { uid: pod.metadata?.uid, ...(Object.keys(annotationValues).length > 0 ? { annotations: annotationValues } : {}) },
      ...(ungate ? { spec: { schedulingGates: [{ $patch: 'delete', name: schedulingGate }] } } : {}),
    };
    try {
      await this.deps.client.send('PATCH', podPath(pod), body, contentTypes.strategicMergePatch);
      if (ungate) this.remember(pod.metadata?.uid ?? '', { ungated: true });
      return true;
    } catch (error) {
      if (isGoneOrReplaced(error)) return false;
      throw error;
    }
  }
}

function registeredAtOf(state: VerdictState): Pick<VerdictState, 'registeredAt'> {
  return state.registeredAt ? { registeredAt: state.registeredAt } : {};
}

/**
 * Whose identity signs the pod's AWS calls, as far as AWS tells customers apart: the operator's;
 * in Pod mode the product's role, or else the pod's ServiceAccount's (and so its role).
 */
function callerOf(product: MarketplaceProduct, pod: V1Pod): string {
  if (product.spec.identity?.mode === 'Operator') return "the operator's identity";
  if (product.spec.identity?.roleArn) return `role ${product.spec.identity.roleArn}`;
  return `ServiceAccount ${pod.metadata?.namespace ?? ''}/${pod.spec?.serviceAccountName ?? 'default'}`;
}

/** The result that comes back sooner. */
function sooner(a: Result | undefined, b: Result | undefined): Result | undefined {
  if (a?.requeueAfterMs === undefined) return b;
  if (b?.requeueAfterMs === undefined) return a;
  return a.requeueAfterMs <= b.requeueAfterMs ? a : b;
}
