// Starts the operator's runnables and owns leader election, as controller-runtime's manager does
// (pkg/manager/internal.go, runnable_group.go): groups start in order (servers, so probes answer
// while the rest starts; webhooks; caches), each runnable in its group in the order added, then
// the leader-elected ones once this replica leads (at once without election). They stop in
// reverse: a leader stops reconciling before its caches and webhook go away. Start-up can be
// aborted at any point (a SIGTERM during start-up): what started is stopped, nothing else begins.
//
// Losing the Lease is no shutdown: leader work stops at once (the signal its reconciles and AWS
// calls carry aborts, queues close) and the manager fails, so the process exits and starts afresh;
// the elector never campaigns again meanwhile. A graceful stop gives running reconciles a grace
// period first.
import type { Logger } from '../observability/logger.js';
import type { KubeClient } from '../kube/api.js';
import { describeError } from '../kube/errors.js';
import type { ControllerMetrics } from './controller.js';
import { LeaderElector, type LeaderElectionOptions } from './leader-election.js';

export interface Runnable {
  readonly name: string;
  /** Resolves once the runnable works; may reject early when `signal` aborts. */
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

/** Runs only while this replica leads; `leading` aborts when it stops leading. */
export interface LeaderRunnable {
  readonly name: string;
  start(leading: AbortSignal): void;
  /** Resolves to how many pieces of work were still running after graceMs (abandoned). */
  stop(graceMs: number): Promise<number>;
}

export const groups = ['servers', 'webhooks', 'caches'] as const;
export type Group = (typeof groups)[number];

export class StartAborted extends Error {
  override name = 'StartAborted';
}

class LeadershipLost extends Error {
  override name = 'LeadershipLost';
}

export interface ManagerOptions {
  log: Logger;
  controllerMetrics: ControllerMetrics;
  /** Leader election over a Lease; without it, this replica leads from the start. */
  election?: { client: KubeClient; options: LeaderElectionOptions };
  /** How long a graceful stop waits for running reconciles (within a pod's 30 s termination grace). */
  shutdownGraceMs?: number;
  /** Told when this replica starts and stops leading (the leader metric). */
  onLeading?: (leading: boolean) => void;
}

export class Manager {
  readonly log: Logger;
  readonly controllerMetrics: ControllerMetrics;
  /** Resolves, with the reason, when the process must exit: leadership lost, or a runnable failed. */
  readonly failed: Promise<string>;
  private failWith: (reason: string) => void = () => undefined;
  private readonly grouped = new Map<Group, Runnable[]>(groups.map((group) => [group, []]));
  private readonly leaders: LeaderRunnable[] = [];
  private readonly running: Runnable[] = [];
  private readonly elector: LeaderElector | undefined;
  private readonly leadership = new AbortController();
  private leadingState: 'not yet' | 'leading' | 'done' = 'not yet';
  private lost = false;
  private stopping = false;
  private failure: string | undefined;
  private stopped: Promise<void> | undefined;
  private leaderWorkStopped: Promise<void> | undefined;
  private reportedNotLeading = false;

  constructor(private readonly options: ManagerOptions) {
    this.log = options.log;
    this.controllerMetrics = options.controllerMetrics;
    this.failed = new Promise<string>((resolve) => (this.failWith = resolve));
    const { election } = options;
    const callbacks = {
      onStartedLeading: () => {
        this.startLeading();
      },
      onStoppedLeading: () => {
        this.loseLeadership();
      },
    };
    this.elector = election && new LeaderElector(election.client, election.options, callbacks, options.log);
  }

  /**
   * Aborts when this replica stops leading (it leads at most once): the signal of every reconcile,
   * and of the clients leader work writes through (KubeClient.guardedBy), so nothing a deposed
   * leader had in flight is written after it.
   */
  get leaderSignal(): AbortSignal {
    return this.leadership.signal;
  }

  add(group: Group, ...runnables: Runnable[]): this {
    this.grouped.get(group)?.push(...runnables);
    return this;
  }

  addLeader(...runnables: LeaderRunnable[]): this {
    this.leaders.push(...runnables);
    return this;
  }

  /** The process must exit. The first reason is the one reported; later ones are logged. */
  fail(reason: string): void {
    if (this.failure !== undefined) {
      this.log.warn('another reason to exit', { reason, first: this.failure });
      return;
    }
    this.failure = reason;
    this.failWith(reason);
  }

  /**
   * Starts every group in order, then campaigns for the Lease. When `signal` aborts or a runnable
   * fails, what started is stopped and the promise rejects (StartAborted for an abort).
   */
  async start(signal: AbortSignal): Promise<void> {
    for (const runnable of groups.flatMap((group) => this.grouped.get(group) ?? [])) {
      try {
        if (signal.aborted) throw new StartAborted(`start-up aborted before ${runnable.name}`);
        this.log.debug('starting', { runnable: runnable.name });
        await runnable.start(signal);
        this.running.push(runnable);
        if (isAborted(signal)) throw new StartAborted(`start-up aborted while starting ${runnable.name}`);
      } catch (error) {
        await this.stop();
        throw signal.aborted && !(error instanceof StartAborted) ? new StartAborted(`start-up aborted while starting ${runnable.name}`) : error;
      }
    }
    if (this.elector) this.elector.start();
    else this.startLeading();
  }

  /**
   * Stops leader work (with a grace period unless leadership was lost), the elector, then the
   * groups in reverse. Called again, it resolves when the first call is done.
   */
  stop(): Promise<void> {
    return (this.stopped ??= this.stopAll());
  }

  private async stopAll(): Promise<void> {
    this.stopping = true;
    await this.stopLeading(this.lost ? 0 : (this.options.shutdownGraceMs ?? 20_000));
    await this.elector?.stop();
    if (!this.leadership.signal.aborted) this.leadership.abort(new LeadershipLost('stopped'));
    for (const runnable of this.running.splice(0).reverse()) {
      try {
        await runnable.stop();
        this.log.debug('stopped', { runnable: runnable.name });
      } catch (error) {
        this.log.warn('runnable did not stop cleanly', { runnable: runnable.name, error: describeError(error) });
      }
    }
  }

  private startLeading(): void {
    if (this.stopping || this.leadingState !== 'not yet') return;
    this.leadingState = 'leading';
    this.options.onLeading?.(true);
    for (const runnable of this.leaders) runnable.start(this.leadership.signal);
  }

  private loseLeadership(): void {
    this.lost = true;
    // Whatever else is under way (a graceful stop too), nothing this replica still has in flight
    // is its to write any more.
    this.leadership.abort(new LeadershipLost('leadership lost'));
    this.notLeading();
    if (this.stopping) return;
    void this.stopLeading(0);
    this.fail('leadership lost');
  }

  private stopLeading(graceMs: number): Promise<void> {
    return (this.leaderWorkStopped ??= this.closeLeaderWork(graceMs));
  }

  private async closeLeaderWork(graceMs: number): Promise<void> {
    if (this.leadingState !== 'leading') return;
    this.leadingState = 'done';
    if (graceMs === 0) this.leadership.abort(new LeadershipLost('leadership lost'));
    const abandoned = (await Promise.all(this.leaders.map((runnable) => runnable.stop(graceMs)))).reduce((a, b) => a + b, 0);
    // What outlived the grace period is abandoned: its AWS calls and writes give up now. A
    // registration abandoned is safe: its nonce follows from the pod, so the next leader repeats it.
    this.leadership.abort(new LeadershipLost('stopped leading'));
    this.notLeading();
    if (abandoned > 0) this.log.warn(this.lost ? 'reconciles aborted when leadership was lost, not waited for' : 'abandoned reconciles still running at shutdown', { abandoned });
  }

  private notLeading(): void {
    if (this.leadingState === 'not yet' || this.reportedNotLeading) return;
    this.reportedNotLeading = true;
    this.options.onLeading?.(false);
  }
}

/** Read through a call, so the type checker does not assume the signal is unchanged since last read. */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}
