// Lease-based leader election (coordination.k8s.io/v1), as client-go does it: the holder renews
// the Lease every retry period; others take it over once it has not been renewed for the lease
// duration. Updates carry the resourceVersion, so two candidates can never both win. A leader that
// cannot renew within the renew deadline steps down before anyone else may take over.
// Time is only ever this replica's own: a Lease counts as expired when this replica has seen its
// record unchanged for the lease duration, never by the renewTime another replica wrote (clock
// skew would give two leaders). Each attempt is bounded by the renew deadline, so a hung request
// cannot keep a stale leader; candidates retry with jitter. Leadership is won at most once.
import type { V1Lease } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observability/logger.js';
import { ApiError, segment, type KubeClient } from '../kube/api.js';
import { describeError, isNotFound } from '../kube/errors.js';
import { microTime } from '../kube/times.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** This replica's clock (tests move it). */
  now?: () => number;
}

export interface LeaderCallbacks {
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  /** A write of the Lease went out and its answer never came: the server may have applied it. */
  private writeUnsettled = false;
  // Cuts the wait between attempts short when stop() is called.
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  /** The Lease record as last seen, and when (by our clock) it was first seen like that. */
  private observed: { record: string; at: number } | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly options: LeaderElectionOptions,
    private readonly callbacks: LeaderCallbacks,
    private readonly log: Logger,
  ) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.now = options.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop = this.run();
  }

  /**
   * Stops campaigning; a leader releases the Lease so a successor need not wait it out. So does
   * a candidate stopped while its acquiring write was unanswered: the server may have granted it.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.loop;
    if (this.leading) this.setLeading(false);
    else if (!this.writeUnsettled) return;
    await this.release().catch((error: unknown) => {
      this.log.warn('could not release the leader Lease', { error: describeError(error) });
    });
  }

  private async run(): Promise<void> {
    let lastRenew = 0;
    while (!this.stopped) {
      // A leader has until its renew deadline; a candidate's attempt gets the same bound.
      const budget = this.leading ? lastRenew + this.renewDeadlineMs - this.now() : this.renewDeadlineMs;
      let acquired = false;
      if (budget > 0) {
        try {
          acquired = await this.tryAcquireOrRenew(AbortSignal.any([AbortSignal.timeout(budget), this.stopping.signal]));
        } catch (error) {
          this.log.debug('leader election attempt failed', { error: describeError(error) });
        }
      }
      if (this.stopping.signal.aborted) break;
      if (acquired) {
        lastRenew = this.now();
        if (!this.leading) this.setLeading(true);
      } else if (this.leading && this.now() - lastRenew >= this.renewDeadlineMs) {
        this.log.warn('lost the leader Lease: could not renew it in time', { lease: this.options.name });
        this.setLeading(false);
        // As client-go's Run: a deposed leader never campaigns again (its process exits and
        // starts afresh), so it cannot win the Lease back while its old work is shutting down.
        break;
      }
      // A leader renews every retry period; candidates wait up to 20% longer, so that they do
      // not all ask at once.
      const wait = this.leading ? this.retryPeriodMs : this.retryPeriodMs * (1 + Math.random() * 0.2);
      await sleep(wait, undefined, { signal: this.stopping.signal }).catch(() => undefined);
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.log.info(leading ? 'became leader' : 'stopped leading', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
    if (leading) this.callbacks.onStartedLeading();
    else this.callbacks.onStoppedLeading();
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = this.now();
    let lease: V1Lease;
    try {
      lease = await this.client.request<V1Lease>('GET', this.path(name), undefined, undefined, signal);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      const spec = this.spec(new Date(now), new Date(now), 0);
      await this.write('POST', this.path(), { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec }, signal);
      this.observed = { record: recordOf(spec), at: now };
      return true;
    }
    const spec = lease.spec ?? {};
    const record = recordOf(spec);
    if (this.observed?.record !== record) this.observed = { record, at: now };
    const holder = spec.holderIdentity;
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    const expired = !holder || this.observed.at + durationMs <= now;
    if (holder !== identity && !expired) return false;
    const transitions = (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    const acquiredAt = holder === identity && spec.acquireTime ? new Date(spec.acquireTime) : new Date(now);
    const next = this.spec(acquiredAt, new Date(now), transitions);
    // replace carries metadata.resourceVersion: a concurrent winner makes this fail with 409.
    await this.write('PUT', this.path(name), { ...lease, spec: next }, signal);
    this.observed = { record: recordOf(next), at: now };
    return true;
  }

  /** A write of the Lease; while its answer is outstanding (or was lost), the server may hold it applied. */
  private async write(method: 'POST' | 'PUT', path: string, body: unknown, signal: AbortSignal): Promise<void> {
    this.writeUnsettled = true;
    try {
      await this.client.send(method, path, body, undefined, signal);
      this.writeUnsettled = false;
    } catch (error) {
      // The server answered (a conflict, say): the write did not apply. An abort or a network error leaves it unknown.
      if (error instanceof ApiError) this.writeUnsettled = false;
      throw error;
    }
  }

  /** Bounded by the renew deadline: an API server that does not answer must not hold up the process's exit (the Lease then expires). */
  private async release(): Promise<void> {
    const { name, identity } = this.options;
    const signal = AbortSignal.timeout(this.renewDeadlineMs);
    const lease = await this.client.request<V1Lease>('GET', this.path(name), undefined, undefined, signal);
    if (lease.spec?.holderIdentity !== identity) return;
    await this.client.send('PUT', this.path(name), { ...lease, spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1 } }, undefined, signal);
  }

  private path(name?: string): string {
    const leases = `/apis/coordination.k8s.io/v1/namespaces/${segment(this.options.namespace)}/leases`;
    return name === undefined ? leases : `${leases}/${segment(name)}`;
  }

  private spec(acquired: Date, renewed: Date, transitions: number): V1Lease['spec'] {
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.round(this.leaseDurationMs / 1000),
      acquireTime: microTime(acquired),
      renewTime: microTime(renewed),
      leaseTransitions: transitions,
    };
  }
}

/** What identifies one state of a Lease: a change in any of it means its holder is alive. */
function recordOf(spec: V1Lease['spec']): string {
  return JSON.stringify([spec?.holderIdentity, spec?.renewTime, spec?.acquireTime, spec?.leaseTransitions, spec?.leaseDurationSeconds]);
}
