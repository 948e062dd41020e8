// /healthz (the process serves) and /readyz (every registered readiness check passes), as
// Kubernetes probes expect: 200 or 503, with a short plain-text reason.
import http from 'node:http';
import { close, listen } from '../net/servers.js';

export type ReadinessCheck = () => boolean;

export class HealthServer {
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly server = http.createServer((req, res) => {
    this.handle(req, res);
  });

  /** Registers a named check; /readyz fails while any check returns false. */
  addReadinessCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  listen(port: number, host?: string): Promise<number> {
    return listen(this.server, port, host);
  }

  close(): Promise<void> {
    return close(this.server);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const failing = [...this.checks].filter(([, check]) => !check()).map(([name]) => name);
      if (failing.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${failing.join(', ')}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}
