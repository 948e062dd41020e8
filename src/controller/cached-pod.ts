// What the operator keeps of a labelled pod: the fields its controllers read, nothing else. A
// whole pod is several kilobytes once parsed (managed fields, containers, status); thousands of
// them do not fit the Deployment's memory limit, while this is about a tenth of that.
import type { V1Pod } from '@kubernetes/client-node';
import { group, productLabel } from '../api/marketplace-product.js';
import { podRequests } from '../metering/usage.js';

const ownAnnotation = `${group}/`;

export function cachedPod(pod: V1Pod): V1Pod {
  const metadata = pod.metadata ?? {};
  const product = metadata.labels?.[productLabel];
  let annotations: Record<string, string> | undefined;
  for (const [key, value] of Object.entries(metadata.annotations ?? {})) {
    if (key.startsWith(ownAnnotation)) (annotations ??= {})[key] = value;
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

/** Index key of a pod's product: "namespace/product". */
export function productKeyOfPod(pod: V1Pod): string | undefined {
  const product = pod.metadata?.labels?.[productLabel];
  return product === undefined ? undefined : `${pod.metadata?.namespace ?? ''}/${product}`;
}
