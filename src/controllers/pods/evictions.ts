// Removing a pod that must not run: an eviction (the Eviction API, so PodDisruptionBudgets hold)
// that names the pod's uid, so it never lands on a successor of the same name. A budget protects
// entitled workloads: a pod that was entitled and is now revoked waits for it however long it
// takes. A pod that was never allowed to run is another matter (its gate was removed by someone
// else, behind a budget of their own): after a grace period of refused evictions it is deleted,
// with an Event that says why.
import type { V1Pod } from '@kubernetes/client-node';
import type { EventRecorder } from '../../kube/events.js';
import { ApiError, segment, type ApiClient } from '../../kube/api.js';
import { isGoneOrReplaced } from '../../kube/errors.js';
import { RetryLater, type Result } from '../../runtime/workqueue.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';

/** How often a refused eviction is tried again within the grace period. */
const retryWithinGraceMs = 5_000;

export interface EvictionDeps {
  client: ApiClient;
  events: EventRecorder;
  metrics: Metrics;
  /** How long budgets may refuse the eviction of a pod that was never entitled before it is deleted. */
  graceMs: number;
}

export class Evictions {
  /** Since when (real time) the eviction of a pod is refused, by uid. */
  private readonly refusedSince = new Map<string, number>();

  constructor(private readonly deps: EvictionDeps) {}

  /**
   * Evicts the pod. Refused, a pod `protectedByBudget` is retried (RetryLater); another one is
   * tried again soon and deleted once the grace period is over. Resolves to when to come back.
   */
  async remove(pod: V1Pod, protectedByBudget: boolean, why: string, log: Logger): Promise<Result | undefined> {
    const uid = pod.metadata?.uid ?? '';
    const refusal = await this.evict(pod, log);
    if (refusal === undefined) return undefined;
    // Real time, as for any timeout: not the clock the operator reports (SIMULATED_CLOCK).
    const now = Date.now();
    const since = this.refusedSince.get(uid);
    if (since === undefined) this.refusedSince.set(uid, now);
    if (protectedByBudget) {
      if (since === undefined) log.info('eviction refused; retried, since the budget protects a pod that was entitled', { error: refusal });
      throw new RetryLater(`${refusal}; retried, since the budget protects a pod that was entitled`);
    }
    if (since === undefined) {
      const note = `${refusal}. This pod was never entitled (${why}), so it is deleted in ${this.deps.graceMs / 1000} s unless an eviction succeeds first`;
      await this.deps.events.pod(pod, 'Warning', 'EvictionRefused', 'Evict', note);
      log.warn('eviction refused; the pod was never entitled and is deleted after the grace period', { error: refusal, graceSeconds: this.deps.graceMs / 1000 });
    }
    const left = (since ?? now) + this.deps.graceMs - now;
    if (left > 0) return { requeueAfterMs: Math.min(left, retryWithinGraceMs) };
    await this.delete(pod, why, log);
    return undefined;
  }

  /** The pod is gone: its refusals go too. */
  podDeleted(uid: string): void {
    this.refusedSince.delete(uid);
  }

  /** Pods whose refused evictions it keeps (for tests of its bounds). */
  get refusedPods(): number {
    return this.refusedSince.size;
  }

  /** Resolves to undefined when evicted (or gone), else to why the eviction was refused. */
  private async evict(pod: V1Pod, log: Logger): Promise<string | undefined> {
    const { name = '', namespace = '', uid = '' } = pod.metadata ?? {};
    try {
      await this.deps.client.send('POST', `${podPath(pod)}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace }, deleteOptions: { preconditions: { uid } } });
      this.deps.metrics.evictions.inc({ outcome: 'evicted' });
      log.info('evicted pod', { evicted: `${namespace}/${name}` });
      return undefined;
    } catch (error) {
      log.debug('eviction failed', { error: error instanceof Error ? error.message : String(error) });
      if (isGoneOrReplaced(error)) return undefined;
      // The pod changed while the API server checked its budgets: at once again.
      if (error instanceof ApiError && error.code === 409) throw new RetryLater(`the eviction of ${namespace}/${name} raced a change of the pod: ${error.message}`);
      // 429: a PodDisruptionBudget says not now. 500: the pod has several budgets, which the
      // Eviction API never evicts past (the only other 500 is the API server's own trouble).
      if (error instanceof ApiError && (error.code === 429 || error.code === 500)) {
        this.deps.metrics.evictions.inc({ outcome: 'refused' });
        return `the eviction of ${namespace}/${name} was refused: ${error.message}`;
      }
      throw error;
    }
  }

  private async delete(pod: V1Pod, why: string, log: Logger): Promise<void> {
    try {
      await this.deps.client.send('DELETE', podPath(pod), { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: pod.metadata?.uid ?? '' } });
    } catch (error) {
      if (isGoneOrReplaced(error)) return;
      throw error;
    }
    this.deps.metrics.evictions.inc({ outcome: 'deleted' });
    const note = `deleted: PodDisruptionBudgets refused its eviction for ${this.deps.graceMs / 1000} s. A budget protects entitled workloads, and this pod was never entitled (${why})`;
    await this.deps.events.pod(pod, 'Warning', 'Deleted', 'Delete', note);
    log.warn('deleted a pod that was never entitled, as budgets kept refusing its eviction');
  }
}

export function podPath(pod: V1Pod): string {
  return `/api/v1/namespaces/${segment(pod.metadata?.namespace ?? '')}/pods/${segment(pod.metadata?.name ?? '')}`;
}
