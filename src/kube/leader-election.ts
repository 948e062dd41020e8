// Lease-based leader election (coordination.k8s.io/v1), as client-go does it: the holder renews
// the Lease every retry period; others take it over once it has not been renewed for the lease
// duration. Updates carry the resourceVersion, so two candidates can never both win. A leader that
// cannot renew within the renew deadline steps down before anyone else may take over.
import type { V1Lease } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observability/logger.js';
import { ApiError, segment, type KubeClient } from './api.js';
import { describeError } from './errors.js';
import { microTime } from './micro-time.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface LeaderCallbacks {
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  // Cuts the wait between attempts short when stop() is called.
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly options: LeaderElectionOptions,
    private readonly callbacks: LeaderCallbacks,
    private readonly log: Logger,
  ) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops campaigning; a leader releases the Lease so a successor need not wait it out. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.loop;
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((error: unknown) => {
        this.log.warn('could not release the leader Lease', { error: describeError(error) });
      });
    }
  }

  private async run(): Promise<void> {
    let lastRenew = 0;
    while (!this.stopped) {
      let acquired = false;
      try {
        acquired = await this.tryAcquireOrRenew();
      } catch (error) {
        this.log.debug('leader election attempt failed', { error: describeError(error) });
      }
      if (acquired) {
        lastRenew = Date.now();
        if (!this.leading) this.setLeading(true);
      } else if (this.leading && Date.now() - lastRenew > this.renewDeadlineMs) {
        this.log.warn('lost the leader Lease: could not renew it in time', { lease: this.options.name });
        this.setLeading(false);
      } else if (this.leading) {
        // A failed renewal: keep leading until the renew deadline, retry soon.
      }
      await sleep(this.retryPeriodMs, undefined, { signal: this.stopping.signal }).catch(() => undefined);
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.log.info(leading ? 'became leader' : 'stopped leading', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
    if (leading) this.callbacks.onStartedLeading();
    else this.callbacks.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = new Date();
    let lease: V1Lease;
    try {
      lease = await this.client.request<V1Lease>('GET', this.path(name));
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 404) throw error;
      await this.client.send('POST', this.path(), { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: this.spec(now, now, 0) });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    const renewedAt = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    const expired = !holder || renewedAt + durationMs < now.getTime();
    if (holder !== identity && !expired) return false;
    const transitions = (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    const acquiredAt = holder === identity && spec.acquireTime ? new Date(spec.acquireTime) : now;
    // replace carries metadata.resourceVersion: a concurrent winner makes this fail with 409.
    await this.client.send('PUT', this.path(name), { ...lease, spec: this.spec(acquiredAt, now, transitions) });
    return true;
  }

  private async release(): Promise<void> {
    const { name, identity } = this.options;
    const lease = await this.client.request<V1Lease>('GET', this.path(name));
    if (lease.spec?.holderIdentity !== identity) return;
    await this.client.send('PUT', this.path(name), { ...lease, spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1 } });
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
