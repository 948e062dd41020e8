// Writes a product's status from what is observed: counters from the pods in the cache, the
// Entitled condition from the latest registration report, the Metered one from the metering
// report (product-reports.ts), times from the pods' annotations.
// Writes only when something changed, through the status subresource, retrying on conflicts.
import { isDeepStrictEqual } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import {
  group,
  plural,
  version,
  type Condition,
  type MarketplaceProduct,
  type MarketplaceProductStatus,
} from '../../api/marketplace-product.js';
import { segment, type ApiClient } from '../../kube/api.js';
import { isConflict, isNotFound } from '../../kube/errors.js';
import type { Cache } from '../../runtime/informer.js';
import type { Clock } from '../../clock.js';
import { rfc3339 } from '../../kube/times.js';
import type { Logger } from '../../observability/logger.js';
import { isBypassing, isGated, mustNotRun, verdictStateOf } from '../../api/pod-state.js';
import type { MeteringReport, ProductReports, RegistrationReport } from '../product-reports.js';

const maxConflictRetries = 5;

export function desiredStatus(
  product: MarketplaceProduct,
  pods: readonly V1Pod[],
  registration: RegistrationReport | undefined,
  now: Date,
  metering?: MeteringReport,
): MarketplaceProductStatus {
  const current = product.status ?? {};
  let entitled = 0;
  let blocked = 0;
  let pending = 0;
  let bypassed = 0;
  let lastRegistration = current.lastRegistrationTime;
  for (const pod of pods) {
    // The cache holds only verdict states the operator sealed (verdicts/pod-cache.ts).
    const state = verdictStateOf(pod);
    const terminating = pod.metadata?.deletionTimestamp !== undefined;
    if (isBypassing(product, pod, state)) bypassed++;
    if (state.status === 'Entitled') {
      if (!terminating) entitled++;
      const at = state.registeredAt;
      if (at && (!lastRegistration || at > lastRegistration)) lastRegistration = at;
    } else if (state.status === 'NotEntitled' && state.reason !== 'ProductNotFound') {
      // Held back: gated, or being evicted (a refused pod that must not run).
      if (isGated(pod) || terminating || mustNotRun(product, state)) blocked++;
    } else if (!terminating) {
      pending++;
    }
  }
  if (registration?.registeredAt && (!lastRegistration || registration.registeredAt > lastRegistration)) lastRegistration = registration.registeredAt;

  const generation = product.metadata.generation ?? 0;
  const condition = (type: string, next: Pick<Condition, 'status' | 'reason' | 'message'>): Condition => {
    const previous = current.conditions?.find((c) => c.type === type);
    return {
      type,
      status: next.status,
      reason: next.reason,
      message: next.message.slice(0, 32_768),
      lastTransitionTime: previous && previous.status === next.status ? previous.lastTransitionTime : rfc3339(now),
      observedGeneration: generation,
    };
  };
  const previous = current.conditions?.find((c) => c.type === 'Entitled');
  const entitledCondition = condition('Entitled', registration ?? previous ?? { status: 'Unknown', reason: 'AwaitingPods', message: 'no pod of this product has been registered yet' });
  // Metered: from the metering controller; until it has spoken (after a restart), the last one written stands.
  const metered = metering ? condition('Metered', metering.condition) : current.conditions?.find((c) => c.type === 'Metered');
  const rotation = registration?.publicKeyRotationTimestamp ?? current.publicKeyRotationTimestamp;
  return {
    ...current,
    observedGeneration: generation,
    conditions: [...(current.conditions ?? []).filter((c) => c.type !== 'Entitled' && c.type !== 'Metered'), entitledCondition, ...(metered ? [metered] : [])],
    entitledPods: entitled,
    blockedPods: blocked,
    pendingPods: pending,
    bypassedPods: bypassed,
    ...(lastRegistration ? { lastRegistrationTime: rfc3339(lastRegistration) } : {}),
    ...(rotation ? { publicKeyRotationTimestamp: rfc3339(rotation) } : {}),
    ...(metering
      ? { metering: { ...(metering.lastReportedHour ? { lastReportedHour: metering.lastReportedHour } : {}), ...(metering.lostHours.length > 0 ? { lostHours: metering.lostHours } : {}) } }
      : {}),
  };
}

export interface ProductStatusDeps {
  /** Guarded by the leader signal (KubeClient.guardedBy). */
  client: ApiClient;
  products: Cache<MarketplaceProduct>;
  /** Indexed by product (productKeyOfPod). */
  pods: Cache<V1Pod>;
  reports: ProductReports;
  clock: Clock;
  log: Logger;
}

export class ProductStatusReconciler {
  constructor(private readonly deps: ProductStatusDeps) {}

  async reconcile(key: string): Promise<undefined> {
    const { client, products, pods, reports, clock, log } = this.deps;
    let product = products.get(key);
    if (!product) {
      // Pods of a missing product wait as ProductNotFound. A report about it came after its delete
      // handler ran (a registration answered meanwhile) and queued this: nothing else would drop it.
      reports.productDeleted(key);
      return undefined;
    }
    for (let attempt = 0; attempt < maxConflictRetries; attempt++) {
      // The pod cache is indexed by product (productKeyOfPod).
      const status = desiredStatus(product, pods.byIndex(key), reports.registration(key), new Date(clock.now()), reports.metering(key));
      if (isDeepStrictEqual(status, product.status ?? {})) return undefined;
      try {
        await client.send('PUT', `${productPath(product)}/status`, { ...product, status });
        return undefined;
      } catch (error) {
        if (isNotFound(error)) return undefined;
        if (!isConflict(error)) throw error;
        // Someone else wrote it: start again from the newest version.
        product = await client.request<MarketplaceProduct>('GET', productPath(product));
      }
    }
    log.warn('status update kept conflicting; will retry', { product: key });
    throw new Error(`status of ${key} conflicted ${maxConflictRetries} times`);
  }
}

function productPath(product: MarketplaceProduct): string {
  return `/apis/${group}/${version}/namespaces/${segment(product.metadata.namespace)}/${plural}/${segment(product.metadata.name)}`;
}
