// Keeps the webhook serving the right certificate, as a unit the manager starts: the Secret that
// holds it is watched, so a change another replica (or cert-manager) made is served at once and
// a deleted Secret is made again at once; a timer drives the steps that are due by time (renewal,
// the steps of a CA rotation). Loads run one at a time: start-up, a watch event (the informer's
// first list is one) and the timer may all ask, and the later ones find the certificate loaded.
import type { V1Secret } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient } from '../kube/api.js';
import { describeError } from '../kube/errors.js';
import type { Logger } from '../observability/logger.js';
import { Informer, keyOf } from '../runtime/informer.js';
import type { Runnable } from '../runtime/manager.js';
import type { CertificateStore, WebhookTls } from './certificates.js';

export interface ServingCertificateDeps {
  client: KubeClient;
  store: CertificateStore;
  secret: { namespace: string; name: string };
  /** Serves a new certificate. */
  serve: (tls: WebhookTls) => Promise<void>;
  /** Points the webhook configuration at a new CA bundle; undefined when someone else (cert-manager's cainjector) does. */
  publishCa: ((caPem: string) => Promise<unknown>) | undefined;
  /** How often the steps due by time are checked. */
  checkEveryMs: number;
  log: Logger;
}

/** Tries at start-up: the Secret may be racing another replica's, or the API server starting. */
const startAttempts = 60;

export class ServingCertificate implements Runnable {
  readonly name = 'webhook-certificate';
  private readonly informer: Informer<V1Secret>;
  private tls: WebhookTls | undefined;
  private loading = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ServingCertificateDeps) {
    const { namespace, name } = deps.secret;
    this.informer = new Informer<V1Secret>(deps.client, { name: 'webhook-certificate', path: `/api/v1/namespaces/${namespace}/secrets`, fieldSelector: `metadata.name=${name}` }, deps.log);
    this.informer.onUpsert(() => void this.refresh());
    this.informer.onDelete(() => void this.refresh());
  }

  /** Resolves once a certificate is served; retried meanwhile. */
  async start(signal: AbortSignal): Promise<void> {
    await this.informer.start(signal);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.loadInTurn();
        break;
      } catch (error) {
        if (attempt >= startAttempts || signal.aborted) throw error;
        this.deps.log.warn('webhook certificate not ready, retrying', { error: describeError(error) });
        await sleep(Math.min(5_000, 250 * attempt), undefined, { signal }).catch(() => undefined);
      }
    }
    this.timer = setInterval(() => void this.refresh(), this.deps.checkEveryMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.informer.stop();
  }

  private refresh(): Promise<void> {
    return this.loadInTurn().catch((error: unknown) => {
      this.deps.log.warn('certificate check failed', { error: describeError(error) });
    });
  }

  private loadInTurn(): Promise<void> {
    const load = this.loading.then(() => this.load());
    this.loading = load.catch(() => undefined);
    return load;
  }

  private async load(): Promise<void> {
    const { namespace, name } = this.deps.secret;
    const next = await this.deps.store.ensure(Date.now(), this.informer.get(keyOf(namespace, name)));
    if (next.version === this.tls?.version) return;
    await this.deps.serve(next);
    if (this.deps.publishCa && next.caPem !== this.tls?.caPem) await this.deps.publishCa(next.caPem);
    this.tls = next;
  }
}
