// What one pod contributes to an hour of usage, by unit: Pod → 1, vCPU → its CPU requests
// rounded up to whole cores, MemoryGiB → its memory requests rounded up to whole GiB. Requests
// are the pod's effective ones, as the scheduler counts them.
import type { V1Container, V1Pod } from '@kubernetes/client-node';

export type UsageUnit = 'Pod' | 'vCPU' | 'MemoryGiB';

/** A pod's requests in the units metering needs: whole millicores and bytes. */
export interface PodRequests {
  milliCpu: number;
  memoryBytes: number;
}

const binarySuffixes: Readonly<Record<string, number>> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const decimalSuffixes: Readonly<Record<string, number>> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** A Kubernetes resource quantity ("500m", "1.5", "2Gi", "1e3") as a number; throws on anything else. */
export function parseQuantity(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/.exec(value.trim());
  if (!match) throw new Error(`${JSON.stringify(value)} is not a resource quantity`);
  const [, number = '', exponent, suffix = ''] = match;
  const multiplier = exponent ? 10 ** Number(exponent.slice(1)) : (binarySuffixes[suffix] ?? decimalSuffixes[suffix] ?? 1);
  return Number(number) * multiplier;
}

function requestsOf(container: V1Container): PodRequests {
  const requests = container.resources?.requests ?? {};
  return {
    milliCpu: requests.cpu === undefined ? 0 : Math.ceil(Math.round(parseQuantity(requests.cpu) * 1e6) / 1e3),
    memoryBytes: requests.memory === undefined ? 0 : Math.ceil(parseQuantity(requests.memory)),
  };
}

/**
 * The pod's effective requests: its containers and sidecars (init containers that keep running)
 * together, or the largest plain init container if that is more, plus the pod's overhead.
 */
export function podRequests(pod: V1Pod): PodRequests {
  const spec = pod.spec;
  const sum = { milliCpu: 0, memoryBytes: 0 };
  const largestInit = { milliCpu: 0, memoryBytes: 0 };
  for (const container of spec?.initContainers ?? []) {
    const r = requestsOf(container);
    if (container.restartPolicy === 'Always') {
      sum.milliCpu += r.milliCpu;
      sum.memoryBytes += r.memoryBytes;
    } else {
      largestInit.milliCpu = Math.max(largestInit.milliCpu, r.milliCpu);
      largestInit.memoryBytes = Math.max(largestInit.memoryBytes, r.memoryBytes);
    }
  }
  for (const container of spec?.containers ?? []) {
    const r = requestsOf(container);
    sum.milliCpu += r.milliCpu;
    sum.memoryBytes += r.memoryBytes;
  }
  const overhead = requestsOf({ name: 'overhead', resources: { requests: spec?.overhead ?? {} } });
  return {
    milliCpu: Math.max(sum.milliCpu, largestInit.milliCpu) + overhead.milliCpu,
    memoryBytes: Math.max(sum.memoryBytes, largestInit.memoryBytes) + overhead.memoryBytes,
  };
}

/** Whole cores and whole GiB, rounded up: what a pod adds to a vCPU or MemoryGiB dimension. */
export interface PodUsage {
  vCPU: number;
  MemoryGiB: number;
}

export function usageOf(requests: PodRequests): PodUsage {
  return { vCPU: Math.ceil(requests.milliCpu / 1000), MemoryGiB: Math.ceil(requests.memoryBytes / 2 ** 30) };
}

export function quantityOf(usage: PodUsage, unit: UsageUnit): number {
  return unit === 'Pod' ? 1 : usage[unit];
}
