// The operator, as a table of contents: a manager, and what each part adds to it. See each
// setup for what it watches and why; runtime/manager.ts for the order things start and stop in.
import type http from 'node:http';
import { leaseName } from './api/names.js';
import type { AwsSettings } from './aws/settings.js';
import type { OperatorEnvironment } from './config/environment.js';
import type { OperatorFlags } from './config/flags.js';
import { newControllerContext } from './controllers/context.js';
import { setupMetering } from './controllers/metering/setup.js';
import { setupPods } from './controllers/pods/setup.js';
import { setupProducts } from './controllers/products/setup.js';
import { loadKubeClient } from './kube/api.js';
import { close } from './net/servers.js';
import { HealthServer } from './observability/health.js';
import type { Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Manager } from './runtime/manager.js';
import { setupWebhook, type WebhookSettings } from './webhook/setup.js';

export interface RunningOperator {
  metrics: Metrics;
  /** Graceful stop: in-flight reconciles finish (unless leadership was lost), the Lease is released, servers close. */
  stop(): Promise<void>;
  /** Resolves, with the reason, when the operator must exit: leadership lost, the operator key replaced, the admission thread ended. */
  readonly failed: Promise<string>;
}

/**
 * Tuning that is no flag: workers and bounds. Metering has a lane of its own beside the
 * registrations' (an hour's records must not hold back a starting pod), as wide: in Pod mode an
 * hour of a large product is tens of thousands of calls, shared by every product.
 */
const tuning = { workers: 32, awsConcurrency: { RegisterUsage: 16, MeterUsage: 16 }, statusIntervalMs: 1_000, shutdownGraceMs: 20_000 };

/** Starts the operator. Rejects with StartAborted when `signal` aborts first (what started is stopped again), and with the cause when a part cannot start. */
export async function startOperator(flags: OperatorFlags, aws: AwsSettings, env: OperatorEnvironment, log: Logger, signal: AbortSignal): Promise<RunningOperator> {
  const client = loadKubeClient(flags.kubeconfig);
  const metrics = new Metrics({ processMetrics: true });
  const { namespace, identity, leaseDurationMs, renewDeadlineMs, retryPeriodMs } = env;
  const election = flags.leaderElect ? { client, options: { namespace, name: leaseName, identity, leaseDurationMs, renewDeadlineMs, retryPeriodMs } } : undefined;
  const onLeading = (leading: boolean): void => {
    metrics.leader.set(leading ? 1 : 0);
  };
  const manager = new Manager({ log, controllerMetrics: metrics, shutdownGraceMs: tuning.shutdownGraceMs, onLeading, ...(election ? { election } : {}) });
  const health = setupServers(manager, metrics, flags);
  const context = newControllerContext(manager, { client, aws, metrics, log, settings: { ...env, ...tuning, exemptNamespaces: flags.exemptNamespaces } });
  // Ready means able to do what the Service sends: answer admissions (a slow pod list must not take
  // the fail-closed webhook down); with no webhook, having synced the caches.
  if (flags.admission === 'webhook') setupWebhook(manager, { client, settings: webhookSettings(flags, env), health, metrics, log });
  else health.addReadinessCheck('caches-synced', context.cachesSynced);
  setupPods(manager, context);
  setupProducts(manager, context);
  setupMetering(manager, context);
  try {
    await manager.start(signal);
  } catch (error) {
    await client.close();
    throw error;
  }
  return { metrics, failed: manager.failed, stop: () => manager.stop().finally(() => client.close()) };
}

function webhookSettings(flags: OperatorFlags, env: OperatorEnvironment): WebhookSettings {
  return { namespace: env.namespace, exemptNamespaces: flags.exemptNamespaces, port: flags.webhookPort, certificates: env.certificates, certificateCheckMs: env.certificateCheckMs, ...(flags.webhookUrl ? { url: flags.webhookUrl } : {}) };
}

/** The health and metrics servers: first to start, so probes answer while the rest starts. */
function setupServers(manager: Manager, metrics: Metrics, ports: { healthPort: number; metricsPort: number }): HealthServer {
  const health = new HealthServer();
  let metricsServer: http.Server | undefined;
  manager.add(
    'servers',
    {
      name: 'health',
      start: async () => {
        await health.listen(ports.healthPort);
      },
      stop: () => health.close(),
    },
    {
      name: 'metrics',
      start: async () => {
        metricsServer = await metrics.serve(ports.metricsPort);
      },
      stop: async () => {
        if (metricsServer) await close(metricsServer);
      },
    },
  );
  return health;
}
