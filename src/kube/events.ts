// Records Kubernetes Events (events.k8s.io/v1) about pods and products. Recording never fails
// the caller: an Event is information, not state.
import type { V1ObjectMeta, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.js';
import { randomBytes } from 'node:crypto';
import { describeError } from './errors.js';
import { microTime } from './times.js';
import { segment, type ApiClient } from './api.js';

/** What an Event is about: an object's API version, kind and metadata. */
export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
}

export class EventRecorder {
  constructor(
    private readonly client: ApiClient,
    /** Who reports (reportingController) and which replica (reportingInstance). */
    private readonly reporter: { controller: string; instance: string },
    private readonly log: Logger,
  ) {}

  pod(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    return this.record({ apiVersion: 'v1', kind: 'Pod', metadata: pod.metadata ?? {} }, type, reason, action, note);
  }

  async record(regarding: EventSubject, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const { name, uid } = regarding.metadata;
    const namespace = regarding.metadata.namespace ?? 'default';
    try {
      await this.client.send('POST', `/apis/events.k8s.io/v1/namespaces/${segment(namespace)}/events`, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        // As client-go names them: the object's name, a dot, something unique.
        metadata: { name: `${name ?? regarding.kind.toLowerCase()}.${Date.now().toString(16)}${randomBytes(4).toString('hex')}`, namespace },
        eventTime: microTime(),
        reportingController: this.reporter.controller,
        reportingInstance: this.reporter.instance,
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
