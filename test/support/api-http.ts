// A lean HTTPS client for load generation against the test API server: one keep-alive agent with
// the admin certificate, JSON in and out, and a watch stream. The load generator must cost the
// machine little, so that what a benchmark measures is the API server and the operator.
import https from 'node:https';
import type { ControlPlane } from './control-plane.js';
import { readFileSync } from 'node:fs';

export interface ApiResponse {
  status: number;
  body: string;
  ms: number;
}

export class ApiHttp {
  private readonly agent: https.Agent;
  private readonly base: URL;

  constructor(plane: ControlPlane, maxSockets = 64) {
    this.base = new URL(plane.server);
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets,
      ca: readFileSync(plane.file('ca.crt')),
      cert: readFileSync(plane.file('admin.crt')),
      key: readFileSync(plane.file('admin.key')),
    });
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
    const started = process.hrtime.bigint();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        { agent: this.agent, host: this.base.hostname, port: this.base.port, method, path, headers: payload ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), ms: Number(process.hrtime.bigint() - started) / 1e6 });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like request(), but throws unless the status is 2xx. */
  async ok(method: string, path: string, body?: unknown, contentType?: string): Promise<ApiResponse> {
    const response = await this.request(method, path, body, contentType);
    if (response.status < 200 || response.status > 299) throw new Error(`${method} ${path}: HTTP ${response.status} ${response.body.slice(0, 500)}`);
    return response;
  }

  /**
   * Streams watch events of `path` (a list path with query) from `resourceVersion` until stop()
   * is called, each as parsed JSON. The API server closes watches that fall behind or time out;
   * this resumes from the last resourceVersion it saw.
   */
  watch(path: string, resourceVersion: string, onEvent: (type: string, object: Record<string, unknown>) => void): { stop: () => void } {
    let stopped = false;
    let current: ReturnType<typeof https.request> | undefined;
    let lastVersion = resourceVersion;
    const separator = path.includes('?') ? '&' : '?';
    const open = (): void => {
      if (stopped) return;
      const again = (): void => {
        setTimeout(open, 100);
      };
      current = https.request({ agent: this.agent, host: this.base.hostname, port: this.base.port, method: 'GET', path: `${path}${separator}watch=1&allowWatchBookmarks=true&resourceVersion=${lastVersion}&timeoutSeconds=600` }, (res) => {
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let newline;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            if (!line.trim()) continue;
            const event = JSON.parse(line) as { type: string; object: Record<string, unknown> & { metadata?: { resourceVersion?: string } } };
            if (event.type === 'ERROR') continue; // 410: the caller's counts stay; resume below
            if (event.object.metadata?.resourceVersion) lastVersion = event.object.metadata.resourceVersion;
            onEvent(event.type, event.object);
          }
        });
        res.on('end', again);
        res.on('error', () => undefined);
      });
      current.on('error', again);
      current.end();
    };
    open();
    return {
      stop: () => {
        stopped = true;
        current?.destroy();
      },
    };
  }

  close(): void {
    this.agent.destroy();
  }
}
