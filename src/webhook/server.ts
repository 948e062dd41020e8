// The HTTPS admission webhook. Malformed, oversized or non-JSON bodies get a 400 and the server
// keeps serving. The serving certificate can be swapped at run time (rotation without restart).
// The thread's heap is small (admission-thread.ts), and a pod may be as large as the API server
// allows (3 MiB of request, several times that once parsed): the bodies read and parsed at once
// add up to at most bodyBudgetBytes (one larger body runs alone), the others wait their turn, so
// no burst can exhaust the heap and take the thread down.
import https from 'node:https';
import type http from 'node:http';
import { close, listen, readBody } from '../net/servers.js';
import { Semaphore } from '../runtime/semaphore.js';
import { admit, parseAdmissionReview } from './pod-gate.js';

export const mutatePodPath = '/mutate-v1-pod';
export const maxBodyBytes = 3 * 1024 * 1024;
/** Declared bytes of the bodies in flight at once; a body of no declared length counts as the largest. */
const bodyBudgetBytes = 4 * 1024 * 1024;
/** Longer than any idle time the API server's webhook client keeps a connection for (90 s). */
const idleConnectionMs = 120_000;

/** Told of every answered request: its outcome (gated, allowed, bad_request, not_found) and time. */
export type AdmissionObserver = (outcome: string, seconds: number) => void;

export interface ServingCertificate {
  certPem: string;
  keyPem: string;
}

export class WebhookServer {
  private readonly server: https.Server;
  private readonly budget = new Semaphore(bodyBudgetBytes);

  /** `exempt`: the namespaces whose pods are never gated (api/names.ts exemptNamespaces). */
  constructor(
    private readonly observe: AdmissionObserver,
    private readonly exempt: ReadonlySet<string>,
  ) {
    this.server = https.createServer({ minVersion: 'TLSv1.2' }, (req, res) => {
      this.handle(req, res);
    });
    // The API server waits 30 s at most (a webhook's longest timeout): a slower client holds its
    // share of the body budget no longer than that.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 30_000;
    // The API server keeps an idle connection for reuse up to 90 s (Go's IdleConnTimeout) and does
    // not resend a POST whose connection was closed under it: with Node's 5 s, a call landing as
    // this side closed failed the pod's create ("connection reset by peer"). The client closes first.
    this.server.keepAliveTimeout = idleConnectionMs;
  }

  /** Serves with this certificate from now on; open connections keep the old one. */
  setCertificate(cert: ServingCertificate): void {
    this.server.setSecureContext({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' });
  }

  listen(port: number, host?: string): Promise<number> {
    return listen(this.server, port, host);
  }

  /** Stops accepting; admissions in flight finish. */
  close(): Promise<void> {
    return close(this.server, { drain: true });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const started = process.hrtime.bigint();
    const reply = (status: number, body: unknown, outcome: string): void => {
      const payload = typeof body === 'string' ? body : JSON.stringify(body);
      // Counted before the answer leaves, so whoever sees the answer also sees the count.
      this.observe(outcome, Number(process.hrtime.bigint() - started) / 1e9);
      res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' }).end(payload);
    };
    if ((req.url ?? '').split('?')[0] !== mutatePodPath) {
      reply(404, 'not found\n', 'not_found');
      req.resume();
      return;
    }
    if (req.method !== 'POST') {
      reply(405, 'method not allowed\n', 'bad_request');
      req.resume();
      return;
    }
    const declared = Number(req.headers['content-length']);
    const bytes = Number.isFinite(declared) ? Math.min(declared, maxBodyBytes) : maxBodyBytes;
    // A request whose client went away while it waited its turn gives its turn up.
    const gone = new AbortController();
    req.once('close', () => {
      gone.abort();
    });
    this.budget
      .run(
        async () => {
          const text = await readBody(req, maxBodyBytes);
          this.respond(text, reply);
        },
        { weight: bytes, signal: gone.signal },
      )
      .catch(() => {
        res.destroy();
      });
  }

  /** Answers one request; nothing in a body can make it throw (a malformed review is a 400). */
  private respond(text: string | undefined, reply: (status: number, body: unknown, outcome: string) => void): void {
    if (text === undefined) {
      reply(400, `body larger than ${maxBodyBytes} bytes\n`, 'bad_request');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      reply(400, 'body is not JSON\n', 'bad_request');
      return;
    }
    const request = parseAdmissionReview(body);
    if (typeof request === 'string') {
      reply(400, `${request}\n`, 'bad_request');
      return;
    }
    const response = admit(request, this.exempt);
    reply(200, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }, response.patch ? 'gated' : 'allowed');
  }
}
