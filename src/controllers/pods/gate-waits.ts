// How long labelled pods wait at the gate for their verdict, as the leader sees them: from the
// first watch event that shows a pod gated without a verdict (so the time it spends in the queue
// counts, which is most of it in a burst) to the first that shows its verdict. Fed by a watch of
// the pods controller, so only while this replica leads; a new leader counts the pods still
// waiting from when it took over. Real time, not the operator's clock: this is latency.
import { isGated, verdictOf } from '../../api/pod-state.js';
import type { EventHandler } from '../../runtime/controller.js';
import type { GateWaiting } from '../../observability/metrics.js';
import type { CachedPod } from '../../verdicts/pod-cache.js';

export class GateWaits {
  /** When each waiting pod (by uid) was first seen waiting, in the order seen: the first is the longest waiting. */
  private readonly since = new Map<string, number>();

  constructor(
    /** Told of each wait that ended in a verdict. */
    private readonly ended: (verdict: string, seconds: number) => void,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** The watch that feeds it: it queues nothing. */
  handler(): EventHandler<CachedPod> {
    return {
      upsert: (pod) => {
        this.seen(pod);
      },
      delete: (pod) => {
        this.since.delete(pod.metadata?.uid ?? '');
      },
    };
  }

  seen(pod: CachedPod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const verdict = verdictOf(pod);
    const since = this.since.get(uid);
    if (isGated(pod) && verdict === undefined && !pod.metadata?.deletionTimestamp) {
      if (since === undefined) this.since.set(uid, this.nowMs());
      return;
    }
    if (since === undefined) return;
    this.since.delete(uid);
    // Ungated with no verdict (someone else removed the gate) or being deleted: no verdict to time.
    if (verdict !== undefined) this.ended(verdict, (this.nowMs() - since) / 1000);
  }

  waiting(): GateWaiting {
    const [oldest] = this.since.values();
    return { pods: this.since.size, longestSeconds: oldest === undefined ? 0 : (this.nowMs() - oldest) / 1000 };
  }
}
