// Kubernetes client configuration: --kubeconfig, else in-cluster, else KUBECONFIG/~/.kube/config.
import { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}
