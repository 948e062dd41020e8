// What the operator keeps of a labelled pod: the fields its controllers read, nothing else. A
// whole pod is several kilobytes once parsed (managed fields, containers, status); thousands of
// them do not fit the Deployment's memory limit, while this is about a tenth of that.
//
// It is also where a verdict state without the operator's seal stops: it is dropped here, so the
// pod, status and metering controllers see such a pod as one without a verdict, and only the
// fact that it carried one is kept (to report it). The one exception is the upgrade from a
// release without seals: for a short while, a verdict that carries no seal at all is kept, for
// the pod reconciler to seal (operator-key.ts), unless it is Entitled on a pod still gated: that
// is what anyone would write to get the gate lifted, and the pod is simply registered again.
import type { V1Pod } from '@kubernetes/client-node';
import { annotations as own, group, productLabel } from '../api/marketplace-product.js';
import { isGated, verdictStateAnnotations } from '../api/pod-state.js';
import { podRequests } from '../api/pod-usage.js';
import type { Sealer } from './seal.js';

const ownPrefix = `${group}/`;
const dropped: ReadonlySet<string> = new Set([...verdictStateAnnotations, own.seal]);

export interface CachedPod extends V1Pod {
  /** What the pod claimed without the operator's seal (its status, else the annotation it had), now dropped. */
  unverifiedVerdict?: string;
  /** Its verdict carries no seal and is kept, to be sealed: a release without seals wrote it. */
  unsealedVerdict?: true;
}

/** The cache's transform: the fields the controllers read, the verdict state only when its seal verifies. */
export function podCache(sealer: Sealer): (pod: V1Pod) => CachedPod {
  return (pod) => {
    const cached = cachedPod(pod);
    if (sealer.seal.verifies(cached)) return cached;
    const { annotations: claimed = {}, ...metadata } = cached.metadata ?? {};
    if (!(own.seal in claimed) && sealer.adoptsUnsealed() && !(claimed[own.status] === 'Entitled' && isGated(cached))) return { ...cached, unsealedVerdict: true };
    const kept = Object.entries(claimed).filter(([key]) => !dropped.has(key));
    const what = claimed[own.status] ?? verdictStateAnnotations.find((key) => key in claimed) ?? 'a verdict state';
    return { ...cached, metadata: { ...metadata, ...(kept.length > 0 ? { annotations: Object.fromEntries(kept) } : {}) }, unverifiedVerdict: what };
  };
}

function cachedPod(pod: V1Pod): V1Pod {
  const metadata = pod.metadata ?? {};
  const product = metadata.labels?.[productLabel];
  let annotations: Record<string, string> | undefined;
  for (const [key, value] of Object.entries(metadata.annotations ?? {})) {
    if (key.startsWith(ownPrefix)) (annotations ??= {})[key] = value;
  }
  const gates = pod.spec?.schedulingGates;
  // Metering reads the requests: kept as the pod's effective ones, in one container.
  const requests = podRequests(pod);
  const phase = pod.status?.phase;
  return {
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      uid: metadata.uid,
      resourceVersion: metadata.resourceVersion,
      ...(metadata.deletionTimestamp ? { deletionTimestamp: metadata.deletionTimestamp } : {}),
      ...(product !== undefined ? { labels: { [productLabel]: product } } : {}),
      ...(annotations ? { annotations } : {}),
    },
    spec: {
      containers:
        requests.milliCpu > 0 || requests.memoryBytes > 0
          ? [{ name: 'requests', resources: { requests: { cpu: `${requests.milliCpu}m`, memory: `${requests.memoryBytes}` } } }]
          : [],
      ...(pod.spec?.serviceAccountName ? { serviceAccountName: pod.spec.serviceAccountName } : {}),
      ...(gates && gates.length > 0 ? { schedulingGates: gates.map((g) => ({ name: g.name })) } : {}),
    },
    ...(phase ? { status: { phase } } : {}),
  };
}
