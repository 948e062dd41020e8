// Assembles the operator from parts the Manager starts in order: health and metrics servers, the
// webhook with its certificates, the caches, then the two controllers (pods, products) behind
// leader election, each with its own queue. Data flows one way:
// watch → queue → reconcile → AWS → verdict → patch.
import os from 'node:os';
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { annotations, group, plural, productLabel, version, type MarketplaceProduct } from './api/marketplace-product.js';
import { createStsClient } from './aws/clients.js';
import { baseCredentials } from './aws/credentials.js';
import { Identities } from './aws/identity.js';
import { PodIdentity } from './aws/pod-identity.js';
import { ProductClients } from './aws/product-clients.js';
import type { AwsSettings } from './aws/settings.js';
import { clockFromEnv, type Clock } from './clock.js';
import type { OperatorFlags } from './config/flags.js';
import { productKeyOfPod } from './api/pod-state.js';
import { podCache, type CachedPod } from './verdicts/pod-cache.js';
import { Evictions } from './controllers/pods/evictions.js';
import { KeyConfigMaps } from './controllers/pods/key-config-maps.js';
import { OperatorKey } from './verdicts/operator-key.js';
import { PodReconciler } from './controllers/pods/reconciler.js';
import { ProductOutcomes } from './controllers/product-reports.js';
import { ProductStatusReconciler } from './controllers/products/reconciler.js';
import { Registrar } from './controllers/pods/registration.js';
import { loadKubeClient } from './kube/api.js';
import { describeError } from './kube/errors.js';
import { EventRecorder } from './kube/events.js';
import { Informer, objectKey, type ListResult } from './runtime/informer.js';
import { LeaderElector } from './runtime/leader-election.js';
import { kubeSecretReader } from './kube/secrets.js';
import { RetryLater, WorkQueue } from './runtime/workqueue.js';
import { LedgerStore } from './controllers/metering/ledger-store.js';
import { MeteringReconciler } from './controllers/metering/reconciler.js';
import { HealthServer } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Manager, type Part } from './runtime/manager.js';
import { close } from './net/servers.js';
import { CertificateStore, type WebhookTls } from './webhook/certificates.js';
import { configureWebhook, exemptNamespaces } from './webhook/configuration.js';
import { AdmissionThread } from './webhook/admission-thread.js';

export const leaseName = 'entitlement-operator-leader';
export const webhookSecretName = 'entitlement-operator-webhook-tls';
export const webhookServiceName = 'entitlement-operator-webhook-service';

export interface OperatorOptions {
  namespace: string;
  identity: string;
  /** How often every replica checks whether a certificate renewal or CA-rotation step is due (it watches the Secret for changes). */
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
  /** A product's status is written at most this often while its pods change. */
  statusIntervalMs: number;
  /** The time reported to AWS and users (see clock.ts); SIMULATED_CLOCK in tests and demos. */
  clock: Clock;
  /** The longest wait between periodic checks of a NotEntitled pod. */
  recheckMaxIntervalMs: number;
  /** How long PodDisruptionBudgets may refuse the eviction of a pod that was never entitled before it is deleted. */
  evictionGraceMs: number;
}

/**
 * Options from the environment: POD_NAMESPACE and POD_NAME (downward API), WEBHOOK_CERTIFICATES
 * (self-managed or cert-manager), SIMULATED_CLOCK (tests and demos), RECHECK_MAX_INTERVAL_SECONDS,
 * UNENTITLED_EVICTION_GRACE_SECONDS, and for tuning LEASE_DURATION_SECONDS (renew deadline 2/3 of
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
    statusIntervalMs: 1_000,
    clock: clockFromEnv(env),
    recheckMaxIntervalMs: seconds('RECHECK_MAX_INTERVAL_SECONDS', 900),
    evictionGraceMs: seconds('UNENTITLED_EVICTION_GRACE_SECONDS', 60),
  };
}

export interface RunningOperator {
  metrics: Metrics;
  /** Graceful stop: in-flight reconciles finish, the Lease is released, servers close. */
  stop(): Promise<void>;
  /** Resolves, with the reason, when the operator must exit: leadership lost, or the admission thread ended. */
  readonly failed: Promise<string>;
}

/** The query of one page of a list. */
function listQuery(continueToken: string | undefined, labelSelector?: string, fieldSelector?: string): string {
  return new URLSearchParams({ limit: '500', ...(continueToken ? { continue: continueToken } : {}), ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) }).toString();
}

/** A part from a start and a stop function. */
function part(name: string, start: (signal: AbortSignal) => Promise<void>, stop: () => Promise<void>): Part {
  return { name, start, stop };
}

/**
 * Starts the operator. Rejects with StartAborted when `signal` aborts first (everything already
 * started is stopped again), and with the cause when a part cannot start.
 */
export async function startOperator(flags: OperatorFlags, aws: AwsSettings, options: OperatorOptions, log: Logger, signal: AbortSignal = new AbortController().signal): Promise<RunningOperator> {
  const manager = new Manager(log);
  let fail: (reason: string) => void = () => undefined;
  const failed = new Promise<string>((resolve) => (fail = resolve));
  const client = loadKubeClient(flags.kubeconfig);
  // First in, last out: the connection pool closes after every part that uses it.
  manager.add(part('api-client', () => Promise.resolve(), () => client.close()));
  const metrics = new Metrics({ processMetrics: true });
  const health = new HealthServer();

  // Servers first, so probes answer while the rest starts.
  let metricsServer: http.Server | undefined;
  manager.add(
    part(
      'health',
      async () => {
        await health.listen(flags.healthPort, options.host);
      },
      () => health.close(),
    ),
    part(
      'metrics',
      async () => {
        metricsServer = await metrics.serve(flags.metricsPort, options.host);
      },
      async () => {
        if (metricsServer) await close(metricsServer);
      },
    ),
  );

  // Webhook: certificates from the Secret (created or renewed as needed), then serve.
  const webhookHost = flags.webhookUrl ? new URL(flags.webhookUrl).hostname.replace(/^\[|\]$/g, '') : undefined;
  const isIp = webhookHost !== undefined && /^[\d.]+$|:/.test(webhookHost);
  const certificates = new CertificateStore(
    client,
    {
      namespace: options.namespace,
      secretName: webhookSecretName,
      dnsNames: [`${webhookServiceName}.${options.namespace}.svc`, `${webhookServiceName}.${options.namespace}.svc.cluster.local`, ...(webhookHost && !isIp ? [webhookHost] : [])],
      ipAddresses: webhookHost && isIp ? [webhookHost] : [],
      external: options.certificates === 'cert-manager',
    },
    log,
  );
  const webhook = new AdmissionThread((outcome, seconds) => {
    metrics.observeAdmission(outcome, seconds);
  });
  // Ready once the certificate is loaded and the caches are synced (registered now: until then,
  // not ready).
  let cachesSynced = false;
  health.addReadinessCheck('webhook-certificate', () => webhook.certificateLoaded);
  health.addReadinessCheck('caches-synced', () => cachesSynced);
  // The certificate Secret, watched: a change another replica (or cert-manager) made is served
  // at once, and a deleted Secret is made again at once. The timer only drives the steps that
  // are due by time (renewal, the steps of a CA rotation).
  const secretInformer = new Informer<V1Secret>(
    client,
    {
      name: 'webhook-certificate',
      path: `/api/v1/namespaces/${options.namespace}/secrets`,
      fieldSelector: `metadata.name=${webhookSecretName}`,
      list: () => client.request<ListResult<V1Secret>>('GET', `/api/v1/namespaces/${options.namespace}/secrets?fieldSelector=${encodeURIComponent(`metadata.name=${webhookSecretName}`)}`),
    },
    log,
  );
  let tls: WebhookTls | undefined;
  const loadCertificate = async (): Promise<void> => {
    const next = await certificates.ensure(Date.now(), secretInformer.get(`${options.namespace}/${webhookSecretName}`));
    if (next.version !== tls?.version) {
      await webhook.setCertificate(next);
      // With cert-manager, its cainjector owns the CA bundle; out of cluster the URL is still ours.
      const ours = options.certificates === 'self-managed' || flags.webhookUrl !== undefined;
      if (ours && next.caPem !== tls?.caPem) await configureWebhook(client, next.caPem, flags.webhookUrl);
      tls = next;
    }
  };
  // One load at a time: start-up, a watch event (the informer's first list is one) and the timer
  // may all ask; queued behind each other, the later ones find the certificate already loaded.
  let loading = Promise.resolve();
  const loadInTurn = (): Promise<void> => {
    const load = loading.then(loadCertificate);
    loading = load.catch(() => undefined);
    return load;
  };
  const refreshCertificate = (): Promise<void> =>
    loadInTurn().catch((error: unknown) => {
      log.warn('certificate check failed', { error: describeError(error) });
    });
  secretInformer.onUpsert(() => void refreshCertificate());
  secretInformer.onDelete(() => void refreshCertificate());
  let certificateTimer: NodeJS.Timeout | undefined;
  manager.add(
    part(
      'webhook',
      async (aborted) => {
        const stopOnAbort = (): void => void secretInformer.stop();
        aborted.addEventListener('abort', stopOnAbort, { once: true });
        await secretInformer.start();
        aborted.removeEventListener('abort', stopOnAbort);
        for (let attempt = 1; ; attempt++) {
          try {
            await loadInTurn();
            break;
          } catch (error) {
            if (attempt >= 60 || aborted.aborted) throw error;
            log.warn('webhook certificate not ready, retrying', { error: describeError(error) });
            await sleep(Math.min(5_000, 250 * attempt), undefined, { signal: aborted }).catch(() => undefined);
          }
        }
        await webhook.listen(flags.webhookPort, options.host);
        certificateTimer = setInterval(() => void refreshCertificate(), options.certificateCheckMs);
      },
      async () => {
        clearInterval(certificateTimer);
        await secretInformer.stop();
        await webhook.close();
      },
    ),
  );

  // Caches: products, and labelled pods only (a label-selector watch, never all pods), of which
  // only the fields the controllers read, indexed by product. Pods of the namespaces the webhook
  // never gates are left out: never registered, evicted or counted (a forged verdict there would
  // count, and a product made there must not let the operator evict control-plane pods).
  const podFieldSelector = exemptNamespaces(options.namespace).map((namespace) => `metadata.namespace!=${namespace}`).join(',');
  const products = new Informer<MarketplaceProduct>(
    client,
    {
      name: 'products',
      path: `/apis/${group}/${version}/${plural}`,
      list: (page) => client.request<ListResult<MarketplaceProduct>>('GET', `/apis/${group}/${version}/${plural}?${listQuery(page)}`),
    },
    log,
  );
  // The key of the seals on verdicts: loaded (or made) before the pod cache, whose transform drops
  // every verdict state it does not verify. Replaced under a running replica, that replica exits.
  const operatorKey = new OperatorKey(client, { namespace: options.namespace, leaseName }, log, (reason) => {
    fail(reason);
  });
  manager.add(part('operator-key', (aborted) => operatorKey.start(aborted), () => operatorKey.stop()));
  const pods = new Informer<CachedPod>(
    client,
    {
      name: 'pods',
      path: '/api/v1/pods',
      labelSelector: productLabel,
      fieldSelector: podFieldSelector,
      list: (page) => client.request<ListResult<CachedPod>>('GET', `/api/v1/pods?${listQuery(page, productLabel, podFieldSelector)}`),
      transform: podCache(operatorKey),
      indexBy: productKeyOfPod,
    },
    log,
  );
  // The ConfigMaps products take their keys from, each watched on its own.
  const keyConfigMaps = new KeyConfigMaps(client, log);
  const caches = [products, pods];
  manager.add(
    part(
      'caches',
      async (aborted) => {
        const stopOnAbort = (): void => void Promise.all(caches.map((cache) => cache.stop()));
        aborted.addEventListener('abort', stopOnAbort, { once: true });
        await Promise.all(caches.map((cache) => cache.start()));
        aborted.removeEventListener('abort', stopOnAbort);
        cachesSynced = true;
      },
      async () => {
        await Promise.all([...caches.map((cache) => cache.stop()), keyConfigMaps.stop()]);
      },
    ),
  );

  // Controllers: pods (registrations), products (status) and metering, each with its own queue,
  // so status writes and hourly reports never wait behind registrations.
  // One provider for the operator's own credentials (one cache), shared with its STS client.
  const operatorCredentials = baseCredentials(aws.credentials, kubeSecretReader(client));
  const identities = new Identities(operatorCredentials, createStsClient(aws, operatorCredentials), new PodIdentity(client, createStsClient(aws, 'anonymous')));
  const outcomes = new ProductOutcomes();
  const productClients = new ProductClients(aws, identities, metrics, options.awsConcurrency);
  const registrar = new Registrar(productClients, keyConfigMaps.read, options.clock);
  const events = new EventRecorder(client, options.identity, log);
  const podReconciler = new PodReconciler({
    client,
    pods,
    products,
    registrar,
    sealer: operatorKey,
    keyFingerprint: (product) => keyConfigMaps.fingerprint(product),
    evictions: new Evictions({ client, events, metrics, graceMs: options.evictionGraceMs }),
    outcomes,
    events,
    metrics,
    clock: options.clock,
    maxRecheckMs: options.recheckMaxIntervalMs,
    requeue: (key) => {
      podQueue.add(key);
    },
    log,
  });
  const metering = new MeteringReconciler(products, pods, new LedgerStore(client, options.namespace), productClients, events, metrics, options.clock, log);
  const statusReconciler = new ProductStatusReconciler(client, products, pods, outcomes, (key) => metering.outcome(key), options.clock, log);
  const queueOptions = (controller: string, concurrency: number) => ({
    concurrency,
    ratePerSecond: 200,
    burst: 400,
    onDepth: (depth: number) => {
      metrics.queueDepth.set({ controller }, depth);
    },
    onResult: (result: 'success' | 'error' | 'requeue', seconds: number, error?: unknown) => {
      metrics.reconciles.inc({ controller, result });
      metrics.reconcileDuration.observe({ controller }, seconds);
      if (error instanceof Error && !(error instanceof RetryLater)) log.warn('reconcile failed', { controller, error: describeError(error) });
    },
  });
  const podQueue = new WorkQueue((key) => podReconciler.reconcile(key), queueOptions('pods', options.workers));
  const productQueue = new WorkQueue((key) => statusReconciler.reconcile(key), queueOptions('products', 4));
  const meteringQueue = new WorkQueue((key) => metering.reconcile(key), queueOptions('metering', 4));

  let reconciling = false;
  // A pod's change reaches its product's status within statusIntervalMs, in one write however
  // many pods changed; its product's usage ledger likewise.
  const refreshStatus = (productKey: string | undefined): void => {
    if (reconciling && productKey) productQueue.addAfter(productKey, options.statusIntervalMs);
  };
  const refreshUsage = (productKey: string | undefined): void => {
    if (reconciling && productKey && MeteringReconciler.meters(products.get(productKey))) meteringQueue.addAfter(productKey, options.statusIntervalMs);
  };
  const enqueuePod = (pod: V1Pod): void => {
    if (!reconciling) return;
    podQueue.add(objectKey(pod));
    refreshStatus(productKeyOfPod(pod));
    refreshUsage(productKeyOfPod(pod));
  };
  const enqueuePodsOf = (productKey: string): void => {
    for (const pod of pods.byIndex(productKey)) podQueue.add(objectKey(pod));
  };
  const seenVersions = new Map<string, string>();
  const enqueueProduct = (product: MarketplaceProduct): void => {
    if (!reconciling) return;
    const key = objectKey(product);
    productQueue.add(key);
    if (MeteringReconciler.meters(product)) meteringQueue.add(key);
    // A new or changed product, or one asking for a check: its pods may be waiting for it
    // (ProductNotFound) or due for a check again (NotEntitled).
    const seen = `${product.metadata.generation ?? 0}/${product.metadata.annotations?.[annotations.recheck] ?? ''}`;
    if (seenVersions.get(key) !== seen) {
      seenVersions.set(key, seen);
      enqueuePodsOf(key);
    }
    keyConfigMaps.track(product);
  };
  // A product's key changed in its ConfigMap: its pods refused under the old key are checked again.
  keyConfigMaps.onChange((productKeys) => {
    if (!reconciling) return;
    for (const key of productKeys) enqueuePodsOf(key);
  });
  pods.onUpsert(enqueuePod);
  pods.onDelete((pod) => {
    podReconciler.forget(pod);
    refreshStatus(productKeyOfPod(pod));
    refreshUsage(productKeyOfPod(pod));
  });
  products.onUpsert(enqueueProduct);
  products.onDelete((product) => {
    seenVersions.delete(objectKey(product));
    keyConfigMaps.untrack(objectKey(product));
    if (reconciling) {
      metering.forget(product).catch((error: unknown) => {
        log.warn('could not delete the usage ledger of a deleted product', { product: objectKey(product), error: describeError(error) });
      });
    }
  });
  outcomes.onChange(refreshStatus);
  metering.onChange(refreshStatus);

  const startReconciling = (): void => {
    reconciling = true;
    metrics.leader.set(1);
    metering.collectOrphans(log).catch((error: unknown) => {
      log.warn('could not collect the usage ledgers of deleted products', { error: describeError(error) });
    });
    for (const product of products.list()) enqueueProduct(product);
    for (const pod of pods.list()) enqueuePod(pod);
  };

  void webhook.exited.then((code) => {
    fail(`the admission thread exited (code ${code})`);
  });
  const elector = flags.leaderElect
    ? new LeaderElector(
        client,
        { namespace: options.namespace, name: leaseName, identity: options.identity, leaseDurationMs: options.leaseDurationMs, renewDeadlineMs: options.renewDeadlineMs, retryPeriodMs: options.retryPeriodMs },
        {
          onStartedLeading: startReconciling,
          // As controller-runtime does: a replica that lost the Lease exits and starts afresh.
          onStoppedLeading: () => {
            reconciling = false;
            metrics.leader.set(0);
            fail('leadership lost');
          },
        },
        log,
      )
    : undefined;
  manager.add(
    part(
      'controllers',
      () => {
        if (elector) elector.start();
        else startReconciling();
        return Promise.resolve();
      },
      async () => {
        reconciling = false;
        // Within the pod's 30 s termination grace period. An abandoned registration is safe: its
        // nonce is on the pod, so the next leader repeats the same registration.
        const [abandoned] = await Promise.all([podQueue.shutdown(20_000), productQueue.shutdown(20_000), meteringQueue.shutdown(20_000)]);
        if (abandoned > 0) log.warn('abandoned reconciles still running at shutdown', { abandoned });
        await elector?.stop();
      },
    ),
  );

  await manager.start(signal);
  return {
    metrics,
    failed,
    stop: async () => {
      await manager.stop();
      log.debug('shutdown steps done');
    },
  };
}
