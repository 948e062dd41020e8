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

/** The requests a controller makes: a KubeClient, one guarded by a signal, or a test's in-memory API. */
export interface ApiClient {
  request<T>(method: Method, path: string, body?: unknown, contentType?: string, signal?: AbortSignal): Promise<T>;
  send(method: Method, path: string, body?: unknown, contentType?: string, signal?: AbortSignal): Promise<string>;
}

export class KubeClient implements ApiClient {
  /**
   * HTTP/1.1 over a keep-alive pool (a connection per request in flight), not HTTP/2: measured
   * against a real API server, a pod patch and an Event cost this client 20% less CPU over
   * HTTP/1.1 (undici's HTTP/2 goes through node:http2), and the API server no more. HTTP/2 also
   * left an abandoned stream (a watch stopped, a deadline) on the session without an error
   * listener (undici 8.13), whose later destruction ended the process.
   */
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
      allowH2: false,
    });
  }

  /**
   * Sends `body` as JSON and parses the JSON answer; a non-2xx answer throws ApiError. `signal`
   * abandons the request (for a deadline).
   */
  async request<T>(method: Method, path: string, body?: unknown, contentType: string = contentTypes.json, signal?: AbortSignal): Promise<T> {
    return JSON.parse(await this.send(method, path, body, contentType, signal)) as T;
  }

  /**
   * This client for leader work: once `guard` aborts (leadership lost), a request fails before it
   * is sent; one already sent completes (a write the API server took is not left in doubt).
   */
  guardedBy(guard: AbortSignal): ApiClient {
    return {
      request: <T>(...args: Parameters<ApiClient['request']>) => {
        guard.throwIfAborted();
        return this.request<T>(...args);
      },
      send: (...args) => {
        guard.throwIfAborted();
        return this.send(...args);
      },
    };
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
  return new KubeClient(fromKubeconfig(readKubeconfig(defaultKubeconfigFiles())));
}

/** The files of KUBECONFIG (a path list, as kubectl reads it), else ~/.kube/config. */
function defaultKubeconfigFiles(): string[] {
  const files = (process.env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  return files.length > 0 ? files : [path.join(process.env.HOME ?? '', '.kube', 'config')];
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
    const merged = readKubeconfig(kubeconfig ? [kubeconfig] : defaultKubeconfigFiles());
    return merged.contexts.get(merged.currentContext ?? '')?.value.namespace ?? 'default';
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

/** An entry of a kubeconfig and the file it came from (its relative paths are relative to that file). */
interface Entry<T> {
  value: T;
  file: string;
}

/** One or more kubeconfig files merged. */
export interface Kubeconfig {
  files: string[];
  currentContext?: string;
  clusters: Map<string, Entry<Record<string, unknown>>>;
  users: Map<string, Entry<Record<string, unknown>>>;
  contexts: Map<string, Entry<{ cluster: string; user: string; namespace?: string }>>;
}

/**
 * Reads and merges kubeconfig files as kubectl does with a KUBECONFIG list: the first file to
 * name a cluster, user or context, or to set current-context, wins; files that do not exist are
 * skipped, unless none exists.
 */
export function readKubeconfig(files: readonly string[]): Kubeconfig {
  const merged: Kubeconfig = { files: [], clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    merged.files.push(file);
    const doc = (load(text) ?? {}) as KubeconfigFile;
    merged.currentContext ??= doc['current-context'] || undefined;
    for (const c of doc.clusters ?? []) if (!merged.clusters.has(c.name)) merged.clusters.set(c.name, { value: c.cluster, file });
    for (const u of doc.users ?? []) if (!merged.users.has(u.name)) merged.users.set(u.name, { value: u.user, file });
    for (const c of doc.contexts ?? []) if (!merged.contexts.has(c.name)) merged.contexts.set(c.name, { value: c.context, file });
  }
  if (merged.files.length === 0) throw new Error(`no kubeconfig: ${files.join(path.delimiter)} not found`);
  return merged;
}

/** A kubeconfig file's current context. Relative file paths are relative to the kubeconfig file. */
export function fromKubeconfigFile(file: string): ClientConfig {
  return fromKubeconfig(readKubeconfig([file]));
}

/** The current context of merged kubeconfig files. */
export function fromKubeconfig(kubeconfig: Kubeconfig): ClientConfig {
  const where = kubeconfig.files.join(path.delimiter);
  const name = kubeconfig.currentContext ?? '';
  const context = kubeconfig.contexts.get(name)?.value;
  if (!context) throw new Error(`${where}: no current context`);
  const cluster = kubeconfig.clusters.get(context.cluster);
  const user = kubeconfig.users.get(context.user) ?? { value: {}, file: kubeconfig.files[0] ?? '' };
  if (!cluster || typeof cluster.value.server !== 'string') throw new Error(`${where}: context ${name} has no cluster with a server`);
  const material = (fileKey: string, dataKey: string, from: Entry<Record<string, unknown>>): Buffer | undefined => {
    const data = from.value[dataKey];
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    const relative = from.value[fileKey];
    return typeof relative === 'string' ? readFileSync(path.resolve(path.dirname(from.file), relative)) : undefined;
  };
  const config: ClientConfig = { server: cluster.value.server.replace(/\/$/, '') };
  const ca = material('certificate-authority', 'certificate-authority-data', cluster);
  const cert = material('client-certificate', 'client-certificate-data', user);
  const key = material('client-key', 'client-key-data', user);
  if (ca) config.ca = ca;
  if (cert) config.cert = cert;
  if (key) config.key = key;
  if (cluster.value['insecure-skip-tls-verify'] === true) config.insecureSkipTlsVerify = true;
  if (typeof cluster.value['tls-server-name'] === 'string') config.tlsServerName = cluster.value['tls-server-name'];
  const credentials = user.value;
  if (typeof credentials.token === 'string') {
    const header = { authorization: `Bearer ${credentials.token}` };
    config.authorization = () => Promise.resolve(header);
  } else if (typeof credentials.tokenFile === 'string') {
    config.authorization = bearerFromFile(path.resolve(path.dirname(user.file), credentials.tokenFile));
  } else if (typeof credentials.username === 'string' && typeof credentials.password === 'string') {
    const header = { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` };
    config.authorization = () => Promise.resolve(header);
  } else if (credentials.exec !== undefined || credentials['auth-provider'] !== undefined) {
    config.authorization = pluginAuthorization(user, config.server);
  }
  return config;
}

/**
 * exec and auth-provider credentials through client-node's implementations, loaded only here. It
 * is given the one user entry (kubeconfig JSON is YAML), not the files: client-node refuses a
 * name that two files share, where kubectl takes the first.
 */
function pluginAuthorization(user: Entry<Record<string, unknown>>, server: string): () => Promise<Record<string, string>> {
  let kubeConfig: Promise<{ applyToHTTPSOptions(options: { headers?: Record<string, unknown> }): Promise<void> }> | undefined;
  return async () => {
    kubeConfig ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const kc = new KubeConfig();
      kc.loadFromString(
        JSON.stringify({
          'current-context': 'plugin',
          contexts: [{ name: 'plugin', context: { cluster: 'plugin', user: 'plugin' } }],
          clusters: [{ name: 'plugin', cluster: { server } }],
          users: [{ name: 'plugin', user: user.value }],
        }),
      );
      kc.makePathsAbsolute(path.dirname(user.file));
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
