// The names of the operator's own objects, in one place: the bundle (config/) creates them under
// these names, the operator finds them by them, and tests import them from here.
export const defaultNamespace = 'entitlement-operator-system';
export const leaseName = 'entitlement-operator-leader';
export const webhookSecretName = 'entitlement-operator-webhook-tls';
export const webhookServiceName = 'entitlement-operator-webhook-service';
export const webhookConfigurationName = 'entitlement-operator-mutating-webhook-configuration';
/** The key of the seals on verdicts (verdicts/operator-key.ts). */
export const operatorKeySecretName = 'entitlement-operator-mac-key';
/** The usage ledgers' ConfigMaps are named this, then the product's uid. */
export const ledgerPrefix = 'entitlement-usage-';
/** Who writes the operator's Events (events.k8s.io reportingController). */
export const reportingController = 'marketplace.entitlements.io/entitlement-operator';

/**
 * The namespaces whose pods are never gated (the namespaceSelector of the webhook, the pod-gate
 * policy and the gate guard): the control plane's, the operator's own, and those the install
 * adds (--exempt-namespaces, the chart's admission.exemptNamespaces). The operator leaves their
 * pods alone as well.
 */
export function exemptNamespaces(operatorNamespace: string, extra: readonly string[] = []): string[] {
  return [...new Set(['kube-system', operatorNamespace, ...extra])];
}

/** The DNS names the webhook's serving certificate is for: its Service's, and an out-of-cluster URL's host. */
export function webhookDnsNames(namespace: string, urlHost?: string): string[] {
  return [`${webhookServiceName}.${namespace}.svc`, `${webhookServiceName}.${namespace}.svc.cluster.local`, ...(urlHost ? [urlHost] : [])];
}
