// Reconciles one labelled pod towards its verdict. Level-triggered and idempotent: it reads the
// pod's annotations and gate and does only what is missing, so a restart or a repeated event
// never registers a pod twice.
//   watch → queue → here → Registrar (AWS) → verdict → pod patch, Event, product outcome
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, permanentReasons, productLabel, schedulingGate, type CheckRecord, type MarketplaceProduct, type NotEntitledReason, type Verdict } from '../api/marketplace-product.js';
import { newNonce } from '../aws/nonce.js';
import type { Clock } from '../clock.js';
import type { EventRecorder } from '../kube/events.js';
import type { Informer } from '../kube/informer.js';
import { ApiError, contentTypes, segment, type KubeClient } from '../kube/api.js';
import type { Outcome } from '../kube/workqueue.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { ProductOutcomes } from './product-outcomes.js';
import { checkBasis, planRecheck, readCheckRecord, recheckDelayMs } from './rechecks.js';
import type { Registrar } from './registration.js';

export class RetryLater extends Error {
  override name = 'RetryLater';
}

export function isGated(pod: V1Pod): boolean {
  return (pod.spec?.schedulingGates ?? []).some((g) => g.name === schedulingGate);
}

export function verdictOf(pod: V1Pod): Verdict | undefined {
  const value = pod.metadata?.annotations?.[annotations.status];
  return value === 'Entitled' || value === 'NotEntitled' ? value : undefined;
}

export function reasonOf(pod: V1Pod): string | undefined {
  return pod.metadata?.annotations?.[annotations.reason];
}

interface Written {
  nonce?: string;
  /** 'cleared': a check again is under way (the verdict annotations were removed). */
  verdict?: Verdict | 'cleared';
  /** We removed the gate. The API server never lets a gate be added back, so it stays removed. */
  ungated?: boolean;
  checks?: CheckRecord;
}

export class PodReconciler {
  // What this process wrote to pods, by uid. The informer cache lags behind our own writes, and a
  // re-run of the same pod must see them, or it would register the pod a second time.
  private readonly written = new Map<string, Written>();

  constructor(
    private readonly client: KubeClient,
    private readonly pods: Informer<V1Pod>,
    private readonly products: Informer<MarketplaceProduct>,
    private readonly registrar: Registrar,
    private readonly outcomes: ProductOutcomes,
    private readonly events: EventRecorder,
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    /** The longest wait between periodic checks of a NotEntitled pod. */
    private readonly maxRecheckMs: number,
    private readonly log: Logger,
  ) {}

  async reconcile(key: string): Promise<Outcome | undefined> {
    const pod = this.pods.get(key);
    if (!pod?.metadata || pod.metadata.deletionTimestamp) return undefined;
    const namespace = pod.metadata.namespace ?? '';
    const productName = pod.metadata.labels?.[productLabel];
    if (!productName) return undefined;
    const log = this.log.child({ pod: key, product: `${namespace}/${productName}` });
    const product = this.products.get(`${namespace}/${productName}`);
    const mine = this.written.get(pod.metadata.uid ?? '');
    const verdict = mine?.verdict === 'cleared' ? undefined : (verdictOf(pod) ?? mine?.verdict);
    const reason = mine?.verdict === 'cleared' ? undefined : reasonOf(pod);

    if (verdict === 'Entitled') {
      if (isGated(pod) && !mine?.ungated) await this.patchPod(pod, {}, true); // finish an interrupted ungate
      return undefined;
    }
    if (verdict === 'NotEntitled' && reason !== 'ProductNotFound') {
      if (!product) return undefined;
      const plan = planRecheck(mine?.checks ?? readCheckRecord(pod), reason, checkBasis(product, pod), this.clock.now(), this.maxRecheckMs);
      if (plan.kind === 'now') {
        await this.checkAgain(pod, product, plan.attempts, reason, log.child({ why: plan.why }));
        return undefined;
      }
      if (product.spec.enforcement === 'Audit' && isGated(pod) && !mine?.ungated) await this.patchPod(pod, {}, true);
      else if (product.spec.enforcement !== 'Audit' && !isGated(pod)) await this.evict(pod, log);
      return plan.kind === 'at' ? { requeueAfterMs: this.clock.realMsUntil(plan.time) } : undefined;
    }
    if (!product) {
      if (reason !== 'ProductNotFound') {
        await this.patchPod(pod, { [annotations.status]: 'NotEntitled', [annotations.reason]: 'ProductNotFound' }, false);
        await this.events.pod(pod, 'Warning', 'NotEntitled', 'CheckEntitlement', `MarketplaceProduct ${namespace}/${productName} not found; the pod stays gated until it exists`);
        this.metrics.verdicts.inc({ verdict: 'NotEntitled', reason: 'ProductNotFound' });
        log.info('product not found, pod stays gated');
      }
      return undefined;
    }
    return this.registerAndRecord(pod, product, log);
  }

  /** Registers the pod (nonce written ahead) and records the verdict on it, its product and in an Event. */
  private async registerAndRecord(pod: V1Pod, product: MarketplaceProduct, log: Logger): Promise<Outcome | undefined> {
    const productKey = `${product.metadata.namespace}/${product.metadata.name}`;
    // Write-ahead: the nonce is on the pod before RegisterUsage, so a retry after a crash is the
    // same registration (same nonce), never a second one.
    const uid = pod.metadata?.uid ?? '';
    // Ours first: after a check again, the cache may still show the previous nonce.
    let nonce = this.written.get(uid)?.nonce ?? pod.metadata?.annotations?.[annotations.nonce];
    if (!nonce) {
      nonce = newNonce();
      if (!(await this.patchPod(pod, { [annotations.nonce]: nonce }, false))) return undefined;
      this.written.set(uid, { ...this.written.get(uid), nonce });
    }
    const podRef = {
      namespace: pod.metadata?.namespace ?? '',
      name: pod.metadata?.name ?? '',
      uid: pod.metadata?.uid ?? '',
      ...(pod.spec?.serviceAccountName ? { serviceAccountName: pod.spec.serviceAccountName } : {}),
    };
    const result = await this.registrar.register(product, podRef, nonce);
    if (result.verdict === 'Retry') {
      // One Event per product when its registrations start failing, not one per pod and retry:
      // an AWS outage or a missing credential must not turn into a storm of writes.
      if (this.outcomes.record(productKey, { status: 'Unknown', reason: 'Retrying', message: result.message })) {
        await this.events.product(product, 'Warning', 'Retrying', 'RegisterUsage', `registrations of product ${product.spec.productCode} are failing and will be retried: ${result.message}`);
      }
      log.warn('registration will be retried', { error: result.message });
      throw new RetryLater(result.message);
    }

    const audit = product.spec.enforcement === 'Audit';
    if (result.verdict === 'Entitled') {
      const registeredAt = result.registeredAt.toISOString();
      await this.patchPod(pod, { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: registeredAt, [annotations.checks]: null }, isGated(pod));
      this.written.set(uid, { nonce, verdict: 'Entitled', ungated: true });
      this.outcomes.record(productKey, {
        status: 'True',
        reason: 'SignatureVerified',
        message: `registration of pod ${podRef.namespace}/${podRef.name} verified`,
        registeredAt,
        ...(result.publicKeyRotationTimestamp ? { publicKeyRotationTimestamp: result.publicKeyRotationTimestamp.toISOString() } : {}),
      });
      this.metrics.verdicts.inc({ verdict: 'Entitled', reason: 'SignatureVerified' });
      await this.events.pod(pod, 'Normal', 'Entitled', 'RegisterUsage', `RegisterUsage for product ${product.spec.productCode} verified (key version ${product.spec.publicKeyVersion})`);
      log.debug('pod entitled');
      return undefined;
    }

    // The record of its checks: what this one was for, when, and why it failed (for the next).
    const previous = this.written.get(uid)?.checks ?? readCheckRecord(pod);
    const now = this.clock.now();
    const attempts = previous?.attempts ?? 1;
    const next = permanentReasons.has(result.reason) ? {} : { next: new Date(now + recheckDelayMs(attempts, this.maxRecheckMs)).toISOString() };
    const checks: CheckRecord = { ...checkBasis(product, pod), attempts, at: new Date(now).toISOString(), ...next, reason: result.reason };
    await this.patchPod(pod, { [annotations.status]: 'NotEntitled', [annotations.reason]: result.reason, [annotations.checks]: JSON.stringify(checks) }, audit && isGated(pod));
    this.written.set(uid, { nonce, verdict: 'NotEntitled', ungated: audit || this.written.get(uid)?.ungated === true, checks });
    this.outcomes.record(productKey, { status: 'False', reason: result.reason, message: result.message });
    this.metrics.verdicts.inc({ verdict: 'NotEntitled', reason: result.reason });
    const consequence = audit ? 'Audit: the pod runs anyway' : isGated(pod) ? 'the pod stays gated' : 'the running pod is evicted';
    // A check again with the same answer is no news: one Event per reason, not one per check.
    if (previous?.reason !== result.reason) await this.events.pod(pod, 'Warning', 'NotEntitled', 'RegisterUsage', `${result.reason}: ${result.message}; ${consequence}`);
    log.warn('pod not entitled', { reason: result.reason, error: result.message, enforcement: product.spec.enforcement ?? 'Enforce', attempts: checks.attempts });
    if (!audit && !isGated(pod)) await this.evict(pod, log);
    if (result.reason === 'CustomerNotEntitled' && product.spec.onRevocation === 'Evict') await this.revoke(product, result.reason, log);
    return undefined;
  }

  /**
   * Starts a check again: the verdict annotations go (the pod is pending again, and counted so), a
   * fresh nonce is written ahead, and the record says what this check is for. The pod then takes
   * the path of a new pod. Its gate was never put back, so an Audit pod keeps running meanwhile.
   */
  private async checkAgain(pod: V1Pod, product: MarketplaceProduct, attempts: number, reason: string | undefined, log: Logger): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const nonce = newNonce();
    const checks: CheckRecord = { ...checkBasis(product, pod), attempts, ...(reason ? { reason } : {}) };
    const patch = { [annotations.status]: null, [annotations.reason]: null, [annotations.nonce]: nonce, [annotations.checks]: JSON.stringify(checks) };
    if (!(await this.patchPod(pod, patch, false))) return;
    this.written.set(uid, { nonce, verdict: 'cleared', ungated: this.written.get(uid)?.ungated ?? !isGated(pod), checks });
    log.info('checking the pod again', { attempts, previousReason: reason });
  }

  /** The pod is gone: forget what was written to it. */
  forget(pod: V1Pod): void {
    this.written.delete(pod.metadata?.uid ?? '');
  }

  /** onRevocation: Evict — every running pod of the product is marked and evicted. */
  private async revoke(product: MarketplaceProduct, reason: NotEntitledReason, log: Logger): Promise<void> {
    const running = this.pods.byIndex(`${product.metadata.namespace}/${product.metadata.name}`).filter((p) => !isGated(p) && !p.metadata?.deletionTimestamp);
    for (const pod of running) {
      if (verdictOf(pod) !== 'NotEntitled') {
        await this.patchPod(pod, { [annotations.status]: 'NotEntitled', [annotations.reason]: reason }, false);
        await this.events.pod(pod, 'Warning', 'NotEntitled', 'Evict', `${reason}: entitlement revoked; evicting (onRevocation: Evict)`);
      }
      await this.evict(pod, log);
    }
  }

  private async evict(pod: V1Pod, log: Logger): Promise<void> {
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? '';
    try {
      await this.client.send('POST', `${podPath(namespace, name)}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace } });
      log.info('evicted pod', { evicted: `${namespace}/${name}` });
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) return;
      // 429: a PodDisruptionBudget says not now. Try again later.
      if (error instanceof ApiError && error.code === 429) throw new RetryLater(`eviction of ${namespace}/${name} blocked by a PodDisruptionBudget`);
      throw error;
    }
  }

  /** Patches annotations and optionally removes the gate, in one request. False if the pod is gone. */
  private async patchPod(pod: V1Pod, annotationValues: Record<string, string | null>, ungate: boolean): Promise<boolean> {
    const body: Record<string, unknown> = {};
    if (Object.keys(annotationValues).length > 0) body.metadata = { annotations: annotationValues };
    if (ungate) body.spec = { schedulingGates: [{ $patch: 'delete', name: schedulingGate }] };
    try {
      await this.client.send('PATCH', podPath(pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''), body, contentTypes.strategicMergePatch);
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) return false;
      throw error;
    }
  }
}

function podPath(namespace: string, name: string): string {
  return `/api/v1/namespaces/${segment(namespace)}/pods/${segment(name)}`;
}
