// Records Kubernetes Events (events.k8s.io/v1) about pods and products. Recording never fails
// the caller: an Event is information, not state.
import type { V1ObjectMeta, V1Pod } from '@kubernetes/client-node';
import { group, kind, version, type MarketplaceProduct } from '../api/marketplace-product.js';
import type { Logger } from '../observability/logger.js';
import { randomBytes } from 'node:crypto';
import { describeError } from './errors.js';
import { microTime } from './times.js';
import { segment, type KubeClient } from './api.js';

export const reportingController = 'marketplace.entitlements.io/entitlement-operator';

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  pod(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    return this.record({ apiVersion: 'v1', kind: 'Pod', metadata: pod.metadata ?? {} }, type, reason, action, note);
  }

  product(product: MarketplaceProduct, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    return this.record({ apiVersion: `${group}/${version}`, kind, metadata: product.metadata }, type, reason, action, note);
  }

  async record(regarding: { apiVersion: string; kind: string; metadata: V1ObjectMeta }, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const { name, uid } = regarding.metadata;
    const namespace = regarding.metadata.namespace ?? 'default';
    try {
      await this.client.send('POST', `/apis/events.k8s.io/v1/namespaces/${segment(namespace)}/events`, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        // As client-go names them: the object's name, a dot, something unique.
        metadata: { name: `${name ?? regarding.kind.toLowerCase()}.${Date.now().toString(16)}${randomBytes(4).toString('hex')}`, namespace },
        eventTime: microTime(),
        reportingController,
        reportingInstance: this.instance,
        action,
        reason,
        type,
        note: note.slice(0, 1024),
        regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name, namespace, uid },
      });
    } catch (error) {
      this.log.warn('could not record event', { [regarding.kind.toLowerCase()]: `${namespace}/${name ?? ''}`, reason, error: describeError(error) });
    }
  }
}
