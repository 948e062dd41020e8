// The webhook: the admission server on its own thread, the certificate it serves, and the CA
// bundle in the webhook configuration. Ready once a certificate is loaded; the process must exit
// if the admission thread ends.
import { exemptNamespaces, webhookConfigurationName, webhookDnsNames, webhookSecretName } from '../api/names.js';
import type { KubeClient } from '../kube/api.js';
import type { HealthServer } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Manager } from '../runtime/manager.js';
import { AdmissionThread } from './admission-thread.js';
import { CertificateStore } from './certificates.js';
import { configureWebhook } from './configuration.js';
import { ServingCertificate } from './serving-certificate.js';

export interface WebhookSettings {
  namespace: string;
  /** Namespaces left alone beyond kube-system and the operator's own (--exempt-namespaces). */
  exemptNamespaces: readonly string[];
  port: number;
  /** Out of cluster: the URL the API server calls instead of the Service. */
  url?: string;
  /** 'cert-manager': the Secret and the CA bundle are managed outside the operator. */
  certificates: 'self-managed' | 'cert-manager';
  certificateCheckMs: number;
}

export function setupWebhook(manager: Manager, deps: { client: KubeClient; settings: WebhookSettings; health: HealthServer; metrics: Metrics; log: Logger }): void {
  const { client, settings, log } = deps;
  const urlHost = settings.url ? new URL(settings.url).hostname.replace(/^\[|\]$/g, '') : undefined;
  const isIp = urlHost !== undefined && /^[\d.]+$|:/.test(urlHost);
  const store = new CertificateStore(
    client,
    {
      namespace: settings.namespace,
      secretName: webhookSecretName,
      dnsNames: webhookDnsNames(settings.namespace, isIp ? undefined : urlHost),
      ipAddresses: urlHost && isIp ? [urlHost] : [],
      external: settings.certificates === 'cert-manager',
    },
    log,
  );
  const thread = new AdmissionThread((outcome, seconds) => {
    deps.metrics.observeAdmission(outcome, seconds);
  }, exemptNamespaces(settings.namespace, settings.exemptNamespaces));
  deps.health.addReadinessCheck('webhook-certificate', () => thread.certificateLoaded);
  void thread.exited.then((code) => {
    manager.fail(`the admission thread exited (code ${code})`);
  });
  // With cert-manager, its cainjector owns the CA bundle; out of cluster the URL is still ours.
  const ownsCa = settings.certificates === 'self-managed' || settings.url !== undefined;
  const certificate = new ServingCertificate({
    client,
    store,
    secret: { namespace: settings.namespace, name: webhookSecretName },
    serve: async (tls) => {
      await thread.setCertificate(tls);
      deps.metrics.webhookCertificateExpiry.set(tls.notAfter.getTime() / 1000);
    },
    publishCa: ownsCa ? { configuration: webhookConfigurationName, publish: (caPem) => configureWebhook(client, caPem, settings.url) } : undefined,
    checkEveryMs: settings.certificateCheckMs,
    log,
  });
  manager.add('webhooks', certificate, {
    name: 'webhook-server',
    start: async () => {
      await thread.listen(settings.port);
    },
    stop: () => thread.close(),
  });
}
