// Keeps the webhook serving the right certificate, as a unit the manager starts: the Secret that
// holds it is watched, so a change another replica (or cert-manager) made is served at once and
// a deleted Secret is made again at once; a timer drives the steps that are due by time (renewal,
// the steps of a CA rotation). Loads run one at a time: start-up, a watch event (the informer's
// first list is one) and the timer may all ask, and the later ones find the certificate loaded.
// Where it publishes the CA bundle, it also watches the webhook configuration: a caBundle reset
// by someone else (a re-apply of the bundle, a hand edit) is put back at once, from a fresh read
// of the Secret, so a replica that lags behind a CA rotation never puts back an older bundle.
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
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
  /**
   * Points the webhook configuration (named here) at a CA bundle, patching only what differs;
   * undefined when someone else (cert-manager's cainjector) does.
   */
  publishCa: { configuration: string; publish: (caPem: string) => Promise<unknown> } | undefined;
  /** How often the steps due by time are checked. */
  checkEveryMs: number;
  log: Logger;
}

/** Tries at start-up: the Secret may be racing another replica's, or the API server starting. */
const startAttempts = 60;

export class ServingCertificate implements Runnable {
  readonly name = 'webhook-certificate';
  private readonly informer: Informer<V1Secret>;
  private readonly configuration: Informer<V1MutatingWebhookConfiguration> | undefined;
  private tls: WebhookTls | undefined;
  private loading = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ServingCertificateDeps) {
    const { namespace, name } = deps.secret;
    this.informer = new Informer<V1Secret>(deps.client, { name: 'webhook-certificate', path: `/api/v1/namespaces/${namespace}/secrets`, fieldSelector: `metadata.name=${name}` }, deps.log);
    this.informer.onUpsert(() => void this.refresh());
    this.informer.onDelete(() => void this.refresh());
    if (deps.publishCa) {
      const path = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
      this.configuration = new Informer<V1MutatingWebhookConfiguration>(deps.client, { name: 'webhook-configuration', path, fieldSelector: `metadata.name=${deps.publishCa.configuration}` }, deps.log);
      this.configuration.onUpsert((config) => {
        if (this.tls && !trusts(config, this.tls.caPem)) void this.repair();
      });
    }
  }

  /** Resolves once a certificate is served; retried meanwhile. */
  async start(signal: AbortSignal): Promise<void> {
    await Promise.all([this.informer.start(signal), this.configuration?.start(signal)]);
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
    await Promise.all([this.informer.stop(), this.configuration?.stop()]);
  }

  /** Someone else changed the CA bundle: serve what the Secret holds now, and publish it again. */
  private repair(): Promise<void> {
    return this.inTurn(async () => {
      await this.load(true);
      if (this.tls && (await this.deps.publishCa?.publish(this.tls.caPem))) this.deps.log.warn('the webhook configuration no longer trusted the webhook CA; put the CA bundle back', { configuration: this.deps.publishCa?.configuration });
    }).catch((error: unknown) => {
      this.deps.log.warn('could not put the webhook CA bundle back', { error: describeError(error) });
    });
  }

  private refresh(): Promise<void> {
    return this.loadInTurn().catch((error: unknown) => {
      this.deps.log.warn('certificate check failed', { error: describeError(error) });
    });
  }

  private loadInTurn(): Promise<void> {
    return this.inTurn(() => this.load());
  }

  /** Runs `step` after every step asked for before it (loads and repairs, one at a time). */
  private inTurn(step: () => Promise<void>): Promise<void> {
    const run = this.loading.then(step);
    this.loading = run.catch(() => undefined);
    return run;
  }

  /** `fresh`: read the Secret from the API server, not the watch's copy. */
  private async load(fresh = false): Promise<void> {
    const { namespace, name } = this.deps.secret;
    const next = await this.deps.store.ensure(Date.now(), fresh ? undefined : this.informer.get(keyOf(namespace, name)));
    if (next.version === this.tls?.version) return;
    await this.deps.serve(next);
    if (this.deps.publishCa && next.caPem !== this.tls?.caPem) await this.deps.publishCa.publish(next.caPem);
    this.tls = next;
  }
}

/** Whether every webhook of the configuration trusts exactly this CA bundle. */
function trusts(config: V1MutatingWebhookConfiguration, caPem: string): boolean {
  const caBundle = Buffer.from(caPem).toString('base64');
  return (config.webhooks ?? []).every((webhook) => webhook.clientConfig.caBundle === caBundle);
}
