// Records Kubernetes Events (events.k8s.io/v1) about pods. Recording never fails the caller:
// an Event is information, not state.
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.js';
import { randomBytes } from 'node:crypto';
import { describeError } from './errors.js';
import { microTime } from './micro-time.js';
import { segment, type KubeClient } from './api.js';

export const reportingController = 'marketplace.entitlements.io/entitlement-operator';

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  async pod(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const namespace = pod.metadata?.namespace ?? 'default';
    try {
      await this.client.send('POST', `/apis/events.k8s.io/v1/namespaces/${segment(namespace)}/events`, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        // As client-go names them: the object's name, a dot, something unique.
        metadata: { name: `${pod.metadata?.name ?? 'pod'}.${Date.now().toString(16)}${randomBytes(4).toString('hex')}`, namespace },
        eventTime: microTime(),
        reportingController,
        reportingInstance: this.instance,
        action,
        reason,
        type,
        note: note.slice(0, 1024),
        regarding: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, namespace, uid: pod.metadata?.uid },
      });
    } catch (error) {
      this.log.warn('could not record event', { pod: `${namespace}/${pod.metadata?.name ?? ''}`, reason, error: describeError(error) });
    }
  }
}
