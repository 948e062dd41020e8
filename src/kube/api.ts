// The operator's Kubernetes API client: JSON over one keep-alive connection pool, and watches as
// streams of lines. It replaces @kubernetes/client-node at run time, whose import alone costs
// about 80 MiB of resident memory (every generated model and API of every group) and whose
// serializer walked every answer field by field; with the Deployment's 256 MiB limit and
// thousands of pods neither fits. client-node's *types* are still used (they cost nothing at
// run time); its code is loaded only for kubeconfig users that need exec or auth-provider
// plugins (out of cluster, such as `aws eks get-token`).
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { load } from 'js-yaml';
import { Agent, request, type Dispatcher } from 'undici';

export const contentTypes = {
  json: 'application/json',
  jsonPatch: 'application/json-patch+json',
  strategicMergePatch: 'application/strategic-merge-patch+json',
  mergePatch: 'application/merge-patch+json',
} as const;

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** An answer other than 2xx from the API server; `code` is the HTTP status. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: number,
    message: string,
    readonly body: string,
    /** The request: method and path without the query. */
    readonly method = '',
    readonly path = '',
  ) {
    super(message);
  }
}

/** Where the API server is and how to authenticate to it. */
export interface ClientConfig {
  server: string;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  /** Headers that authenticate each request (a bearer token, re-read as it rotates). */
  authorization?: () => Promise<Record<string, string>>;
}

export type WatchHandler = (type: string, object: Record<string, unknown>) => void;

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';
/** How long a token read from a file is used before it is read again (client-go: 1 minute). */
const tokenRereadMs = 60_000;

export class KubeClient {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly config: ClientConfig) {
    this.dispatcher = new Agent({
      connect: {
        ...(config.ca !== undefined ? { ca: config.ca } : {}),
        ...(config.cert !== undefined ? { cert: config.cert } : {}),
        ...(config.key !== undefined ? { key: config.key } : {}),
        ...(config.tlsServerName ? { servername: config.tlsServerName } : {}),
        rejectUnauthorized: !config.insecureSkipTlsVerify,
        keepAlive: true,
        keepAliveInitialDelay: 30_000,
      },
    });
  }

  /**
   * Sends `body` as JSON and parses the JSON answer; a non-2xx answer throws ApiError. `signal`
   * abandons the request (for a deadline).
   */
  async request<T>(method: Method, path: string, body?: unknown, contentType: string = contentTypes.json, signal?: AbortSignal): Promise<T> {
    return JSON.parse(await this.send(method, path, body, contentType, signal)) as T;
  }

  /** Like request(), but resolves to the answer's text, unparsed. */
  async send(method: Method, path: string, body?: unknown, contentType: string = contentTypes.json, signal?: AbortSignal): Promise<string> {
    const response = await request(`${this.config.server}${path}`, {
      method,
      dispatcher: this.dispatcher,
      ...(signal ? { signal } : {}),
      headers: { ...(await this.headers()), ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.body.text();
    if (response.statusCode >= 200 && response.statusCode < 300) return text;
    throw answerError(response.statusCode, method, path, text);
  }

  /**
   * Watches `path` (with its query) and calls `onEvent` for each event, until the server ends
   * the watch (resolves), the stream fails or stalls for `idleTimeoutMs` (rejects), or `signal`
   * aborts (resolves). An answer other than 200 rejects with ApiError.
   */
  async watch(path: string, onEvent: WatchHandler, signal: AbortSignal, idleTimeoutMs = 60_000): Promise<void> {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(`${this.config.server}${path}`, { method: 'GET', dispatcher: this.dispatcher, headers: await this.headers(), signal, bodyTimeout: idleTimeoutMs });
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
    if (response.statusCode !== 200) throw answerError(response.statusCode, 'GET', path, await response.body.text());
    let buffered = '';
    try {
      for await (const chunk of response.body) {
        buffered += (chunk as Buffer).toString('utf8');
        let newline;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim() === '') continue;
          const event = JSON.parse(line) as { type?: unknown; object?: unknown };
          if (typeof event.type === 'string' && typeof event.object === 'object' && event.object !== null) onEvent(event.type, event.object as Record<string, unknown>);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async headers(): Promise<Record<string, string>> {
    return { accept: contentTypes.json, ...(this.config.authorization ? await this.config.authorization() : {}) };
  }
}

/** The client for --kubeconfig, else the in-cluster service account, else KUBECONFIG or ~/.kube/config. */
export function loadKubeClient(kubeconfig?: string): KubeClient {
  if (kubeconfig) return new KubeClient(fromKubeconfigFile(kubeconfig));
  if (process.env.KUBERNETES_SERVICE_HOST) return new KubeClient(inCluster());
  return new KubeClient(fromKubeconfigFile(defaultKubeconfigFile()));
}

function defaultKubeconfigFile(): string {
  return process.env.KUBECONFIG?.split(path.delimiter).find(Boolean) ?? path.join(process.env.HOME ?? '', '.kube', 'config');
}

/** The namespace kubectl would use: the current context's, the pod's own in a cluster, else default. */
export function currentNamespace(kubeconfig?: string): string {
  if (!kubeconfig && process.env.KUBERNETES_SERVICE_HOST) {
    try {
      return readFileSync(path.join(serviceAccountDir, 'namespace'), 'utf8').trim() || 'default';
    } catch {
      return 'default';
    }
  }
  try {
    const doc = load(readFileSync(kubeconfig ?? defaultKubeconfigFile(), 'utf8')) as KubeconfigFile;
    return doc.contexts?.find((c) => c.name === doc['current-context'])?.context.namespace ?? 'default';
  } catch {
    return 'default';
  }
}

/** The pod's own service account: its token (re-read as the kubelet rotates it) and the cluster CA. */
export function inCluster(dir = serviceAccountDir): ClientConfig {
  const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(path.join(dir, 'ca.crt')),
    authorization: bearerFromFile(path.join(dir, 'token')),
  };
}

function bearerFromFile(file: string): () => Promise<Record<string, string>> {
  let cached: { token: string; readAt: number; modified: number } | undefined;
  return () => {
    const now = Date.now();
    if (!cached || now - cached.readAt > tokenRereadMs) {
      const modified = statSync(file).mtimeMs;
      cached = cached?.modified === modified ? { ...cached, readAt: now } : { token: readFileSync(file, 'utf8').trim(), readAt: now, modified };
    }
    return Promise.resolve({ authorization: `Bearer ${cached.token}` });
  };
}

interface KubeconfigFile {
  'current-context'?: string;
  clusters?: { name: string; cluster: Record<string, unknown> }[];
  users?: { name: string; user: Record<string, unknown> }[];
  contexts?: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
}

/** A kubeconfig's current context. Relative file paths are relative to the kubeconfig file. */
export function fromKubeconfigFile(file: string): ClientConfig {
  const doc = load(readFileSync(file, 'utf8')) as KubeconfigFile;
  const context = doc.contexts?.find((c) => c.name === doc['current-context'])?.context;
  if (!context) throw new Error(`${file}: no current context`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (!cluster || typeof cluster.server !== 'string') throw new Error(`${file}: context ${doc['current-context'] ?? ''} has no cluster with a server`);
  const resolve = (p: string): string => path.resolve(path.dirname(file), p);
  const material = (fileKey: string, dataKey: string, from: Record<string, unknown>): Buffer | undefined => {
    const data = from[dataKey];
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    const name = from[fileKey];
    return typeof name === 'string' ? readFileSync(resolve(name)) : undefined;
  };
  const config: ClientConfig = { server: cluster.server.replace(/\/$/, '') };
  const ca = material('certificate-authority', 'certificate-authority-data', cluster);
  const cert = material('client-certificate', 'client-certificate-data', user);
  const key = material('client-key', 'client-key-data', user);
  if (ca) config.ca = ca;
  if (cert) config.cert = cert;
  if (key) config.key = key;
  if (cluster['insecure-skip-tls-verify'] === true) config.insecureSkipTlsVerify = true;
  if (typeof cluster['tls-server-name'] === 'string') config.tlsServerName = cluster['tls-server-name'];
  if (typeof user.token === 'string') {
    const header = { authorization: `Bearer ${user.token}` };
    config.authorization = () => Promise.resolve(header);
  } else if (typeof user.tokenFile === 'string') {
    config.authorization = bearerFromFile(resolve(user.tokenFile));
  } else if (typeof user.username === 'string' && typeof user.password === 'string') {
    const header = { authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}` };
    config.authorization = () => Promise.resolve(header);
  } else if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    config.authorization = pluginAuthorization(file);
  }
  return config;
}

/** exec and auth-provider credentials through client-node's implementations, loaded only here. */
function pluginAuthorization(file: string): () => Promise<Record<string, string>> {
  let kubeConfig: Promise<{ applyToHTTPSOptions(options: { headers?: Record<string, unknown> }): Promise<void> }> | undefined;
  return async () => {
    kubeConfig ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const kc = new KubeConfig();
      kc.loadFromFile(file);
      return kc;
    });
    const options: { headers?: Record<string, unknown> } = {};
    await (await kubeConfig).applyToHTTPSOptions(options);
    const value = options.headers?.Authorization ?? options.headers?.authorization;
    const headers: Record<string, string> = {};
    if (typeof value === 'string') headers.authorization = value;
    return headers;
  };
}

/** An ApiError for an answer of `status` to `method path`, naming the path without its query. */
function answerError(status: number, method: Method, path: string, text: string): ApiError {
  const bare = path.split('?')[0] ?? path;
  return new ApiError(status, `HTTP ${status} from ${method} ${bare}: ${statusMessage(text)}`, text, method, bare);
}

/** The message of a Kubernetes Status answer, or the start of the text. */
function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // Not JSON: use the text.
  }
  return text.slice(0, 200);
}

/** A path segment, escaped. */
export function segment(value: string): string {
  return encodeURIComponent(value);
}
