// Runs the admission webhook (WebhookServer) on a worker thread of its own. The main event loop
// parses watch events, verifies signatures and writes to the API server; under a burst of pods
// that work would delay every admission answer, and the API server waits on those answers for
// each labelled pod it creates. The thread shares nothing but messages with the main thread:
// certificates in, counts of answered requests out.
import { Worker } from 'node:worker_threads';
import type { ServingCertificate } from './server.js';

export type ToWorker =
  | { type: 'certificate'; id: number; certificate: ServingCertificate }
  | { type: 'listen'; id: number; port: number; host?: string | undefined }
  | { type: 'close'; id: number };

export type FromWorker = { type: 'done'; id: number; port?: number; error?: string } | { type: 'observed'; outcome: string; seconds: number };

export interface AdmissionWorkerData {
  exempt: readonly string[];
}

type Request = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

export class AdmissionThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: (port: number) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private loaded = false;
  private ended = false;
  private markExited: (code: number) => void = () => undefined;
  /** Resolves with the exit code when the thread ends, whether by close() or by a crash. */
  readonly exited = new Promise<number>((resolve) => (this.markExited = resolve));

  /**
   * The thread starts with the first call, so an operator that never serves starts none.
   * `exempt`: the namespaces whose pods are never gated (api/names.ts exemptNamespaces).
   */
  constructor(
    private readonly observe: (outcome: string, seconds: number) => void,
    private readonly exempt: readonly string[],
  ) {}

  private started(): Worker {
    if (this.worker) return this.worker;
    // The thread needs little memory: the bodies it parses at once are bounded (server.ts), 4 MiB
    // of JSON at most, which parses to well under this heap.
    const worker = new Worker(new URL('./admission-worker.js', import.meta.url), {
      workerData: { exempt: this.exempt } satisfies AdmissionWorkerData,
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 4 },
    });
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'observed') {
        this.observe(message.outcome, message.seconds);
        return;
      }
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error));
      else waiter?.resolve(message.port ?? 0);
    });
    worker.on('exit', (code) => {
      this.ended = true;
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`the admission thread exited with code ${code}`));
      this.waiting.clear();
      this.markExited(code);
    });
    worker.on('error', () => undefined); // 'exit' follows and fails what waits
    this.worker = worker;
    return worker;
  }

  /** Serves with this certificate from now on; open connections keep the old one. */
  async setCertificate(certificate: ServingCertificate): Promise<void> {
    await this.call({ type: 'certificate', certificate: { certPem: certificate.certPem, keyPem: certificate.keyPem } });
    this.loaded = true;
  }

  /** True once a certificate is loaded and while the thread runs. */
  get certificateLoaded(): boolean {
    return this.loaded && !this.ended;
  }

  listen(port: number, host?: string): Promise<number> {
    return this.call({ type: 'listen', port, host });
  }

  /** Stops accepting; admissions in flight finish; the thread ends. */
  async close(): Promise<void> {
    if (this.ended || !this.worker) return;
    await this.call({ type: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }

  private call(request: Request): Promise<number> {
    if (this.ended) return Promise.reject(new Error('the admission thread has exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.started().postMessage({ ...request, id });
    });
  }
}
