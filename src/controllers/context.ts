// What the controllers share (cert-manager's controller.Context): the caches they read, the
// clients leader work writes through, the reports between controllers, the AWS clients, Events,
// metrics and the clock. newControllerContext builds it once and registers the caches it made
// with the manager; each controller's setup takes what it needs from it.
import { group, plural, productLabel, version, type MarketplaceProduct } from '../api/marketplace-product.js';
import { exemptNamespaces, leaseName, reportingController } from '../api/names.js';
import { productKeyOfPod } from '../api/pod-state.js';
import { createStsClient } from '../aws/clients.js';
import { baseCredentials } from '../aws/credentials.js';
import { Identities } from '../aws/identity.js';
import { PodIdentity } from '../aws/pod-identity.js';
import { ProductClients, type MeteringOperation } from '../aws/product-clients.js';
import type { AwsSettings } from '../aws/settings.js';
import type { Clock } from '../clock.js';
import type { ApiClient, KubeClient } from '../kube/api.js';
import { EventRecorder } from '../kube/events.js';
import { kubeSecretReader } from '../kube/secrets.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { Informer } from '../runtime/informer.js';
import type { Manager } from '../runtime/manager.js';
import { OperatorKey } from '../verdicts/operator-key.js';
import { podCache, type CachedPod } from '../verdicts/pod-cache.js';
import { ProductReports } from './product-reports.js';

export interface ControllerSettings {
  /** The operator's own namespace (its Lease, Secrets, ledgers). */
  namespace: string;
  /** Namespaces left alone beyond kube-system and the operator's own (--exempt-namespaces). */
  exemptNamespaces: readonly string[];
  identity: string;
  /** Workers of the pods controller (the others have four each). */
  workers: number;
  /** AWS calls in flight at once, per operation (ProductClients: metering never takes a registration's turn). */
  awsConcurrency: Record<MeteringOperation, number>;
  /** A product's status and ledger are written at most this often while its pods change. */
  statusIntervalMs: number;
  /** The longest wait between periodic checks of a NotEntitled pod. */
  recheckMaxIntervalMs: number;
  /** How long PodDisruptionBudgets may refuse the eviction of a pod that was never entitled before it is deleted. */
  evictionGraceMs: number;
  clock: Clock;
}

export interface ControllerContext {
  settings: ControllerSettings;
  /** For a controller's own watches; leader work writes through leaderClient. */
  client: KubeClient;
  /** Fails every request once leadership is lost (Manager.leaderSignal). */
  leaderClient: ApiClient;
  products: Informer<MarketplaceProduct>;
  /** Labelled pods outside the exempt namespaces, as pod-cache.ts keeps them, indexed by product. */
  pods: Informer<CachedPod>;
  /** The seals on verdicts. */
  operatorKey: OperatorKey;
  /** Whether the caches have synced (a readiness check where nothing else decides readiness). */
  cachesSynced: () => boolean;
  reports: ProductReports;
  awsClients: ProductClients;
  /** Records through leaderClient. */
  events: EventRecorder;
  metrics: Metrics;
  log: Logger;
}

interface ContextDeps {
  client: KubeClient;
  aws: AwsSettings;
  settings: ControllerSettings;
  metrics: Metrics;
  log: Logger;
}

/** Builds the shared dependencies; the operator key and the caches start with the manager's caches. */
export function newControllerContext(manager: Manager, deps: ContextDeps): ControllerContext {
  const { client, aws, settings, metrics, log } = deps;
  const leaderClient = client.guardedBy(manager.leaderSignal);
  // The key of the seals: loaded (or made) before the pod cache, whose transform drops every
  // verdict state it does not verify. Replaced under a running replica, that replica exits.
  const operatorKey = new OperatorKey(client, { namespace: settings.namespace, leaseName }, log, (reason) => {
    manager.fail(reason);
  });
  const products = new Informer<MarketplaceProduct>(client, { name: 'products', path: `/apis/${group}/${version}/${plural}` }, log);
  const pods = podInformer(client, exemptNamespaces(settings.namespace, settings.exemptNamespaces), operatorKey, log);
  let synced = false;
  manager.add('caches', { name: 'operator-key', start: (signal) => operatorKey.start(signal), stop: () => operatorKey.stop() }, {
    name: 'caches',
    start: async (signal) => {
      await Promise.all([products.start(signal), pods.start(signal)]);
      synced = true;
    },
    stop: async () => {
      await Promise.all([products.stop(), pods.stop()]);
    },
  });
  // One provider for the operator's own credentials (one cache), shared with its STS client. A
  // pod's identity is leader work: its TokenRequests go through the guarded client.
  const operatorCredentials = baseCredentials(aws.credentials, kubeSecretReader(client));
  const podIdentity = new PodIdentity(leaderClient, createStsClient(aws, 'anonymous'));
  // A deleted pod's credentials go with it (its later hours are reported as an ended pod's).
  pods.onDelete((pod) => {
    if (pod.metadata?.uid) podIdentity.forget(pod.metadata.uid);
  });
  const identities = new Identities(operatorCredentials, createStsClient(aws, operatorCredentials), podIdentity);
  return {
    settings,
    client,
    leaderClient,
    products,
    pods,
    operatorKey,
    cachesSynced: () => synced,
    reports: new ProductReports(),
    awsClients: new ProductClients(aws, identities, metrics, settings.awsConcurrency),
    events: new EventRecorder(leaderClient, { controller: reportingController, instance: settings.identity }, log),
    metrics,
    log,
  };
}

/**
 * Labelled pods only (a label-selector watch, never all pods), of which only the fields the
 * controllers read, indexed by product. Pods of the namespaces the webhook never gates are left
 * out: never registered, evicted or counted (a forged verdict there would count, and a product
 * made there must not let the operator evict control-plane pods).
 */
function podInformer(client: KubeClient, exempt: readonly string[], operatorKey: OperatorKey, log: Logger): Informer<CachedPod> {
  const fieldSelector = exempt.map((namespace) => `metadata.namespace!=${namespace}`).join(',');
  return new Informer<CachedPod>(
    client,
    { name: 'pods', path: '/api/v1/pods', labelSelector: productLabel, fieldSelector, transform: podCache(operatorKey), indexBy: productKeyOfPod },
    log,
  );
}
