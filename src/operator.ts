// Assembles the operator: Kubernetes clients, caches, the webhook with its certificates, the
// reconcilers behind leader election, metrics and health. Data flows one way:
// watch → queue → reconcile → AWS → verdict → patch.
import os from 'node:os';
import {
  AdmissionregistrationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import type http from 'node:http';
import { group, plural, productLabel, version, type MarketplaceProduct } from './api/marketplace-product.js';
import { createStsClient } from './aws/clients.js';
import { baseCredentials } from './aws/credentials.js';
import { Identities } from './aws/identity.js';
import { PodIdentity } from './aws/pod-identity.js';
import type { AwsSettings } from './aws/settings.js';
import type { OperatorFlags } from './config/flags.js';
import { PodReconciler, RetryLater } from './controller/pod-reconciler.js';
import { ProductOutcomes } from './controller/product-outcomes.js';
import { ProductStatusReconciler, podsOfProduct } from './controller/product-status.js';
import { Registrar } from './controller/registration.js';
import { loadKubeConfig } from './kube/client.js';
import { kubeConfigMapReader } from './kube/config-maps.js';
import { describeError } from './kube/errors.js';
import { EventRecorder } from './kube/events.js';
import { Informer, objectKey, type ListResult } from './kube/informer.js';
import { LeaderElector } from './kube/leader-election.js';
import { kubeSecretReader } from './kube/secrets.js';
import { WorkQueue } from './kube/workqueue.js';
import { HealthServer } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { close } from './net/servers.js';
import { CertificateStore, type WebhookTls } from './webhook/certificates.js';
import { configureWebhook } from './webhook/configuration.js';
import { WebhookServer } from './webhook/server.js';

export const leaseName = 'entitlement-operator-leader';
export const webhookSecretName = 'entitlement-operator-webhook-tls';
export const webhookServiceName = 'entitlement-operator-webhook-service';

export interface OperatorOptions {
  namespace: string;
  identity: string;
  /** How often every replica re-reads the certificate Secret (and renews it when due). */
  certificateCheckMs: number;
  awsConcurrency: number;
  workers: number;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** 'cert-manager': the webhook Secret and CA bundle are managed outside the operator. */
  certificates: 'self-managed' | 'cert-manager';
  /** Listen address of the servers; tests bind to loopback. */
  host?: string;
}

/**
 * Options from the environment: POD_NAMESPACE and POD_NAME (downward API), WEBHOOK_CERTIFICATES
 * (self-managed or cert-manager), and for tuning LEASE_DURATION_SECONDS (renew deadline 2/3 of
 * it) and CERTIFICATE_CHECK_SECONDS.
 */
export function defaultOperatorOptions(env: NodeJS.ProcessEnv = process.env): OperatorOptions {
  const seconds = (name: string, fallback: number): number => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: ${JSON.stringify(env[name])} is not a positive number of seconds`);
    return value * 1000;
  };
  const leaseDurationMs = seconds('LEASE_DURATION_SECONDS', 15);
  const certificates = env.WEBHOOK_CERTIFICATES ?? 'self-managed';
  if (certificates !== 'self-managed' && certificates !== 'cert-manager') throw new Error(`WEBHOOK_CERTIFICATES: ${JSON.stringify(certificates)} is not self-managed or cert-manager`);
  return {
    certificates,
    namespace: env.POD_NAMESPACE ?? 'entitlement-operator-system',
    identity: env.POD_NAME ?? `${os.hostname()}-${process.pid}`,
    certificateCheckMs: seconds('CERTIFICATE_CHECK_SECONDS', 60),
    awsConcurrency: 16,
    workers: 32,
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.min(2_000, Math.round(leaseDurationMs / 5)),
  };
}

export interface RunningOperator {
  metrics: Metrics;
  /** Graceful stop: in-flight reconciles finish, the Lease is released, servers close. */
  stop(): Promise<void>;
  /** Resolves when the operator must exit (leadership lost). */
  readonly lost: Promise<void>;
}

export async function startOperator(flags: OperatorFlags, aws: AwsSettings, options: OperatorOptions, log: Logger): Promise<RunningOperator> {
  const kc = loadKubeConfig(flags.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const metrics = new Metrics({ processMetrics: true });
  const health = new HealthServer();
  const closers: (() => Promise<unknown>)[] = [];

  // Servers first, so probes answer while the rest starts.
  await health.listen(flags.healthPort, options.host);
  closers.push(() => health.close());
  const metricsServer: http.Server = await metrics.serve(flags.metricsPort, options.host);
  closers.push(() => close(metricsServer));

  // Webhook: certificates from the Secret (created or renewed as needed), then serve.
  const webhookHost = flags.webhookUrl ? new URL(flags.webhookUrl).hostname.replace(/^\[|\]$/g, '') : undefined;
  const isIp = webhookHost !== undefined && /^[\d.]+$|:/.test(webhookHost);
  const certificates = new CertificateStore(
    core,
    {
      namespace: options.namespace,
      secretName: webhookSecretName,
      dnsNames: [`${webhookServiceName}.${options.namespace}.svc`, `${webhookServiceName}.${options.namespace}.svc.cluster.local`, ...(webhookHost && !isIp ? [webhookHost] : [])],
      ipAddresses: webhookHost && isIp ? [webhookHost] : [],
      external: options.certificates === 'cert-manager',
    },
    log,
  );
  const webhook = new WebhookServer(log, metrics);
  // Ready once the certificate is loaded and the caches are synced (registered now: until then,
  // not ready).
  let cachesSynced = false;
  health.addReadinessCheck('webhook-certificate', () => webhook.certificateLoaded);
  health.addReadinessCheck('caches-synced', () => cachesSynced);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  let tls: WebhookTls | undefined;
  const refreshCertificate = async (): Promise<void> => {
    const next = await certificates.ensure();
    if (next.version !== tls?.version) {
      webhook.setCertificate(next);
      // With cert-manager, its cainjector owns the CA bundle; out of cluster the URL is still ours.
      const ours = options.certificates === 'self-managed' || flags.webhookUrl !== undefined;
      if (ours && next.caPem !== tls?.caPem) await configureWebhook(admission, next.caPem, flags.webhookUrl);
      tls = next;
    }
  };
  for (let attempt = 1; ; attempt++) {
    try {
      await refreshCertificate();
      break;
    } catch (error) {
      if (attempt >= 60) throw error;
      log.warn('webhook certificate not ready, retrying', { error: describeError(error) });
      await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * attempt)));
    }
  }
  await webhook.listen(flags.webhookPort, options.host);
  closers.push(() => webhook.close());
  const certificateTimer = setInterval(() => {
    refreshCertificate().catch((error: unknown) => {
      log.warn('certificate check failed', { error: describeError(error) });
    });
  }, options.certificateCheckMs);
  closers.push(() => {
    clearInterval(certificateTimer);
    return Promise.resolve();
  });

  // Caches: products, and labelled pods only (a label-selector watch, never all pods).
  const products = new Informer<MarketplaceProduct>(
    kc,
    { name: 'products', path: `/apis/${group}/${version}/${plural}`, list: async () => (await custom.listClusterCustomObject({ group, version, plural })) as ListResult<MarketplaceProduct> },
    log,
  );
  const pods = new Informer<V1Pod>(
    kc,
    { name: 'pods', path: '/api/v1/pods', labelSelector: productLabel, list: async () => core.listPodForAllNamespaces({ labelSelector: productLabel }) },
    log,
  );

  // Reconcilers behind one queue: keys are "pod:ns/name" and "product:ns/name".
  // One provider for the operator's own credentials (one cache), shared with its STS client.
  const operatorCredentials = baseCredentials(aws.credentials, kubeSecretReader(core));
  const identities = new Identities(operatorCredentials, createStsClient(aws, operatorCredentials), new PodIdentity(core, createStsClient(aws, 'anonymous')));
  const outcomes = new ProductOutcomes();
  const registrar = new Registrar(aws, identities, kubeConfigMapReader(core), metrics, options.awsConcurrency);
  const events = new EventRecorder(kc.makeApiClient(EventsV1Api), options.identity, log);
  const podReconciler = new PodReconciler(core, pods, products, registrar, outcomes, events, metrics, log);
  const statusReconciler = new ProductStatusReconciler(custom, products, pods, outcomes, log);
  const queue = new WorkQueue(
    async (key) => {
      const [kind, name] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
      return kind === 'pod' ? podReconciler.reconcile(name) : statusReconciler.reconcile(name);
    },
    {
      concurrency: options.workers,
      ratePerSecond: 200,
      burst: 400,
      onDepth: (depth) => {
        metrics.queueDepth.set({ controller: 'entitlement' }, depth);
      },
      onResult: (result, seconds, error) => {
        metrics.reconciles.inc({ controller: 'entitlement', result });
        metrics.reconcileDuration.observe({ controller: 'entitlement' }, seconds);
        if (error instanceof Error && !(error instanceof RetryLater)) log.warn('reconcile failed', { error: describeError(error) });
      },
    },
  );
  let reconciling = false;
  const enqueuePod = (pod: V1Pod): void => {
    if (!reconciling) return;
    queue.add(`pod:${objectKey(pod)}`);
    const product = pod.metadata?.labels?.[productLabel];
    if (product) queue.add(`product:${pod.metadata?.namespace ?? ''}/${product}`);
  };
  const seenGenerations = new Map<string, number>();
  const enqueueProduct = (product: MarketplaceProduct): void => {
    if (!reconciling) return;
    const key = objectKey(product);
    queue.add(`product:${key}`);
    // A new or changed product: its pods may be waiting for it (ProductNotFound).
    if (seenGenerations.get(key) !== product.metadata.generation) {
      seenGenerations.set(key, product.metadata.generation ?? 0);
      for (const pod of podsOfProduct(pods.list(), product)) queue.add(`pod:${objectKey(pod)}`);
    }
  };
  pods.onUpsert(enqueuePod);
  pods.onDelete((pod) => {
    podReconciler.forget(pod);
    enqueuePod(pod);
  });
  products.onUpsert(enqueueProduct);
  products.onDelete((product) => seenGenerations.delete(objectKey(product)));
  outcomes.onChange((key) => {
    if (reconciling) queue.add(`product:${key}`);
  });

  await Promise.all([products.start(), pods.start()]);
  closers.unshift(() => Promise.all([products.stop(), pods.stop()]));
  cachesSynced = true;

  const startReconciling = (): void => {
    reconciling = true;
    metrics.leader.set(1);
    for (const product of products.list()) enqueueProduct(product);
    for (const pod of pods.list()) enqueuePod(pod);
  };

  let signalLost: () => void = () => undefined;
  const lost = new Promise<void>((resolve) => (signalLost = resolve));
  let elector: LeaderElector | undefined;
  if (flags.leaderElect) {
    elector = new LeaderElector(
      kc.makeApiClient(CoordinationV1Api),
      { namespace: options.namespace, name: leaseName, identity: options.identity, leaseDurationMs: options.leaseDurationMs, renewDeadlineMs: options.renewDeadlineMs, retryPeriodMs: options.retryPeriodMs },
      {
        onStartedLeading: startReconciling,
        // As controller-runtime does: a replica that lost the Lease exits and starts afresh.
        onStoppedLeading: () => {
          reconciling = false;
          metrics.leader.set(0);
          signalLost();
        },
      },
      log,
    );
    elector.start();
  } else {
    startReconciling();
  }

  return {
    metrics,
    lost,
    stop: async () => {
      reconciling = false;
      // Within the pod's 30 s termination grace period. An abandoned registration is safe: its
      // nonce is on the pod, so the next leader repeats the same registration.
      const abandoned = await queue.shutdown(20_000);
      if (abandoned > 0) log.warn('abandoned reconciles still running at shutdown', { abandoned });
      await elector?.stop();
      for (const close of closers) await close();
      log.debug('shutdown steps done');
    },
  };
}
