// Kubernetes client configuration: --kubeconfig, else in-cluster, else KUBECONFIG/~/.kube/config.
import { createHash } from 'node:crypto';
import type { AgentOptions } from 'node:https';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';

export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  shareConnections(kc);
  return kc;
}

interface Dispatcher {
  close(): Promise<void>;
}

interface DispatcherFactory {
  createDispatcher(cluster: Cluster | null, agentOptions: AgentOptions): Dispatcher | undefined;
}

/**
 * @kubernetes/client-node 2.0.1 builds a new undici Agent for every request whenever a CA or
 * client certificate is configured (always, in a cluster): every API call then opens a new TLS
 * connection, and the API server pays for a handshake too. This keeps one keep-alive dispatcher
 * per distinct TLS setting instead; a rotated certificate or CA gets a new one, and the old one
 * closes once its requests are done.
 */
export function shareConnections(kc: KubeConfig): void {
  const factory = kc as unknown as DispatcherFactory;
  if (typeof factory.createDispatcher !== 'function') throw new Error('@kubernetes/client-node no longer has KubeConfig.createDispatcher; revisit shareConnections');
  const create = factory.createDispatcher.bind(kc);
  let shared: { key: string; dispatcher: Dispatcher | undefined } | undefined;
  factory.createDispatcher = (cluster, options) => {
    const key = settingsKey(cluster, options);
    if (shared?.key !== key) {
      const previous = shared?.dispatcher;
      shared = { key, dispatcher: create(cluster, options) };
      void previous?.close().catch(() => undefined);
    }
    return shared.dispatcher;
  };
}

function settingsKey(cluster: Cluster | null, options: AgentOptions): string {
  const hash = createHash('sha256');
  for (const part of [cluster?.server, cluster?.proxyUrl, options.ca, options.cert, options.key, options.pfx, options.passphrase, options.servername, options.rejectUnauthorized]) {
    for (const value of Array.isArray(part) ? (part as unknown[]) : [part]) {
      hash.update(typeof value === 'string' || Buffer.isBuffer(value) ? value : value === undefined ? '\0' : JSON.stringify(value));
    }
    hash.update('\x1f');
  }
  return hash.digest('base64');
}
