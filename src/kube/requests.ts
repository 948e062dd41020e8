// Lean API requests for the pod-start path (a pod patch, an Event, an eviction): the same
// authentication and shared connection as the generated clients, without their serializer. The
// generated client turns every answer into model classes, walking a whole Pod field by field,
// only for the caller to throw it away; with thousands of pods that was a large part of the
// operator's CPU. Errors are the same ApiException the generated clients throw.
import { ApiException, HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { request, type Dispatcher } from 'undici';

export const contentTypes = {
  json: 'application/json',
  strategicMerge: 'application/strategic-merge-patch+json',
  merge: 'application/merge-patch+json',
} as const;

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export class ApiRequests {
  constructor(private readonly kc: KubeConfig) {}

  /** Sends `body` as JSON and resolves to the answer's text; a non-2xx answer throws ApiException. */
  async send(method: Method, path: string, body?: unknown, contentType: string = contentTypes.json): Promise<string> {
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new Error('no current cluster in the kubeconfig');
    const context = new RequestContext(`${server}${path}`, HttpMethod[method]);
    await this.kc.applySecurityAuthentication(context);
    const response = await request(context.getUrl(), {
      method,
      headers: { ...context.getHeaders(), accept: contentTypes.json, ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(context.getDispatcher() ? { dispatcher: context.getDispatcher() as Dispatcher } : {}),
    });
    const text = await response.body.text();
    if (response.statusCode >= 200 && response.statusCode < 300) return text;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers)) if (typeof value === 'string') headers[name] = value;
    throw new ApiException(response.statusCode, `HTTP ${response.statusCode} from ${method} ${path}: ${statusMessage(text)}`, text, headers);
  }
}

/** The message of a Kubernetes Status body, or the start of the text. */
function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // Not JSON: use the text.
  }
  return text.slice(0, 200);
}
