// The install bundle's shape: what a reviewer would otherwise check by eye.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type {
  V1ClusterRole,
  V1Container,
  V1CustomResourceDefinition,
  V1Deployment,
  V1MutatingWebhookConfiguration,
  V1NetworkPolicy,
  V1PodDisruptionBudget,
  V1Role,
  V1Service,
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { bundleObject, bundleObjects, clusterScopedKinds, operatorNamespace, type AdmissionMode, type BundleObject } from '../support/bundle.js';
import { repoRoot } from '../support/testbin.js';
import { exemptNamespaces } from '../../src/api/names.js';

/** Every cluster-wide grant of the operator, as group/resource:verb[names]. */
function clusterGrants(mode: AdmissionMode): string[] {
  const roles = bundleObjects(mode).filter((o) => o.kind === 'ClusterRole') as V1ClusterRole[];
  return roles
    .flatMap((role) => role.rules ?? [])
    .flatMap((rule) => (rule.resources ?? []).flatMap((resource) => rule.verbs.map((verb) => `${rule.apiGroups?.[0] || 'core'}/${resource}:${verb}${rule.resourceNames ? `[${rule.resourceNames.join(',')}]` : ''}`)))
    .sort();
}

const reconcilerGrants = [
  'core/configmaps:get', 'core/configmaps:list', 'core/configmaps:watch',
  'core/pods/eviction:create',
  'core/pods:delete', 'core/pods:list', 'core/pods:patch', 'core/pods:watch',
  'core/serviceaccounts/token:create',
  'core/serviceaccounts:get',
  'events.k8s.io/events:create',
  'marketplace.entitlements.io/marketplaceproducts/status:update',
  'marketplace.entitlements.io/marketplaceproducts:get', 'marketplace.entitlements.io/marketplaceproducts:list', 'marketplace.entitlements.io/marketplaceproducts:watch',
];

describe('install bundle', () => {
  it('holds exactly the objects an install needs, namespaced ones in the operator namespace', () => {
    const objects = bundleObjects().map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(objects).toEqual([
      'ClusterRole/entitlement-operator-manager-role',
      'ClusterRole/entitlement-operator-webhook-role',
      'ClusterRoleBinding/entitlement-operator-manager-rolebinding',
      'ClusterRoleBinding/entitlement-operator-webhook-rolebinding',
      'CustomResourceDefinition/marketplaceproducts.marketplace.entitlements.io',
      'Deployment/entitlement-operator-controller-manager',
      'MutatingWebhookConfiguration/entitlement-operator-mutating-webhook-configuration',
      `Namespace/${operatorNamespace}`,
      'NetworkPolicy/entitlement-operator-controller-manager',
      'PodDisruptionBudget/entitlement-operator-controller-manager',
      'Role/entitlement-operator-leader-election-role',
      'RoleBinding/entitlement-operator-leader-election-rolebinding',
      'Service/entitlement-operator-metrics-service',
      'Service/entitlement-operator-webhook-service',
      'ServiceAccount/entitlement-operator-controller-manager',
      'ValidatingAdmissionPolicy/entitlement-operator-gate-guard',
      'ValidatingAdmissionPolicy/entitlement-operator-limits',
      'ValidatingAdmissionPolicyBinding/entitlement-operator-gate-guard',
      'ValidatingAdmissionPolicyBinding/entitlement-operator-limits',
    ]);
    const misplaced = bundleObjects().filter((o) => !clusterScopedKinds.has(o.kind) && o.metadata.namespace !== operatorNamespace);
    expect(misplaced).toEqual([]);
  });

  it('carries the CRD exactly as crds/ has it', () => {
    const crd = load(readFileSync(path.join(repoRoot, 'crds/marketplaceproducts.yaml'), 'utf8')) as V1CustomResourceDefinition;
    expect(bundleObject<V1CustomResourceDefinition>('CustomResourceDefinition').spec).toEqual(crd.spec);
  });

  it('runs two hardened replicas with probes and resources', () => {
    const deployment = bundleObject<V1Deployment>('Deployment');
    expect(deployment.spec?.replicas).toBe(2);
    const pod = deployment.spec?.template.spec;
    expect(pod?.serviceAccountName).toBe('entitlement-operator-controller-manager');
    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod?.containers).toHaveLength(1);
    const container = pod?.containers[0];
    expect(container?.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(Object.keys(container?.resources?.requests ?? {}).sort()).toEqual(['cpu', 'ephemeral-storage', 'memory']);
    expect(Object.keys(container?.resources?.limits ?? {}).sort()).toEqual(['cpu', 'ephemeral-storage', 'memory']);
    expect(container?.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'health' });
    expect(container?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'health' });
    expect(container?.image).toMatch(/^ghcr\.io\/entitlement-operator\/entitlement-operator:/);
    expect(Object.fromEntries((container?.ports ?? []).map((p) => [p.name, p.containerPort]))).toEqual({ webhook: 9443, metrics: 8080, health: 8081 });
    expect(container?.args).toEqual(expect.arrayContaining(['--leader-elect', '--webhook-port=9443', '--metrics-port=8080', '--health-port=8081']));
  });

  it("admits only the webhook, metrics and health ports of the operator's pods, and lets them reach the API server and AWS", () => {
    const policy = bundleObject<V1NetworkPolicy>('NetworkPolicy');
    expect(policy.spec?.podSelector?.matchLabels).toEqual(bundleObject<V1Deployment>('Deployment').spec?.selector.matchLabels);
    expect(policy.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec?.egress).toEqual([{}]);
    expect(policy.spec?.ingress?.flatMap((rule) => [(rule as { from?: unknown }).from === undefined, ...(rule.ports ?? []).map((p) => p.port)])).toEqual([true, 'webhook', 'metrics', 'health']);
  });

  it('prefers replicas on different nodes', () => {
    const deployment = bundleObject<V1Deployment>('Deployment');
    const terms = deployment.spec?.template.spec?.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(terms).toHaveLength(1);
    expect(terms[0]?.podAffinityTerm).toEqual({ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deployment.spec?.selector.matchLabels } });
  });

  it('keeps a replica through voluntary disruptions', () => {
    const pdb = bundleObject<V1PodDisruptionBudget>('PodDisruptionBudget');
    expect(pdb.spec?.minAvailable).toBe(1);
    expect(pdb.spec?.selector?.matchLabels).toEqual(bundleObject<V1Deployment>('Deployment').spec?.selector.matchLabels);
  });

  it('registers the pod-gate webhook per the contract', () => {
    const webhooks = bundleObject<V1MutatingWebhookConfiguration>('MutatingWebhookConfiguration').webhooks ?? [];
    expect(webhooks).toHaveLength(1);
    const webhook = webhooks[0];
    expect(webhook).toMatchObject({
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      matchPolicy: 'Equivalent',
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
      objectSelector: { matchExpressions: [{ key: 'marketplace.entitlements.io/product', operator: 'Exists' }] },
      // The operator leaves the same namespaces alone (exemptNamespaces).
      namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: exemptNamespaces(operatorNamespace) }] },
    });
    expect(webhook?.timeoutSeconds).toBeLessThanOrEqual(10);
    const serviceRef = webhook?.clientConfig.service;
    expect(serviceRef?.namespace).toBe(operatorNamespace);
    expect(bundleObject<V1Service>('Service', serviceRef?.name).spec?.ports?.[0]?.targetPort).toBe('webhook');
  });

  it("the gate guard exempts exactly the operator's account and the namespaces the webhook never gates, and binds its own policy", () => {
    const guard = bundleObject<V1ValidatingAdmissionPolicy>('ValidatingAdmissionPolicy', 'entitlement-operator-gate-guard');
    expect(guard.spec?.failurePolicy).toBe('Fail');
    expect(guard.spec?.matchConstraints?.namespaceSelector).toEqual({ matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: exemptNamespaces(operatorNamespace) }] });
    const operator = guard.spec?.matchConditions?.find((c) => c.name === 'not-the-operator')?.expression;
    expect(operator).toBe(`request.userInfo.username != 'system:serviceaccount:${operatorNamespace}:entitlement-operator-controller-manager'`);
    const binding = bundleObject<V1ValidatingAdmissionPolicyBinding>('ValidatingAdmissionPolicyBinding', 'entitlement-operator-gate-guard');
    expect(binding.spec).toEqual({ policyName: guard.metadata?.name, validationActions: ['Deny'] });
  });

  it('grants the operator only what the reconciler and webhook use, and no wildcard', () => {
    expect(clusterGrants('webhook')).toEqual([
      'admissionregistration.k8s.io/mutatingwebhookconfigurations:get[entitlement-operator-mutating-webhook-configuration]',
      'admissionregistration.k8s.io/mutatingwebhookconfigurations:list[entitlement-operator-mutating-webhook-configuration]',
      'admissionregistration.k8s.io/mutatingwebhookconfigurations:watch[entitlement-operator-mutating-webhook-configuration]',
      'admissionregistration.k8s.io/mutatingwebhookconfigurations:patch[entitlement-operator-mutating-webhook-configuration]',
      ...reconcilerGrants,
    ].sort());
    const roles = bundleObjects().filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role') as (V1ClusterRole | V1Role)[];
    for (const rule of roles.flatMap((role) => role.rules ?? [])) {
      expect([...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...rule.verbs]).not.toContain('*');
    }
  });
});

describe('install bundle of the policy admission mode', () => {
  const policy = (kind: string, name?: string): BundleObject[] => bundleObjects('policy').filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the model type
  const one = <T>(kind: string, name?: string): T => {
    const found = policy(kind, name);
    if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''} in the policy bundle, found ${found.length}`);
    return found[0] as T;
  };

  it('is the webhook bundle with the webhook configuration, its Service and its role replaced by the MutatingAdmissionPolicy and its binding', () => {
    const names = (objects: BundleObject[]): string[] => objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    const webhookOnly = ['ClusterRole/entitlement-operator-webhook-role', 'ClusterRoleBinding/entitlement-operator-webhook-rolebinding', 'MutatingWebhookConfiguration/entitlement-operator-mutating-webhook-configuration', 'Service/entitlement-operator-webhook-service'];
    const expected = [...names(bundleObjects()).filter((n) => !webhookOnly.includes(n)), 'MutatingAdmissionPolicy/entitlement-operator-pod-gate', 'MutatingAdmissionPolicyBinding/entitlement-operator-pod-gate'].sort();
    expect(names(bundleObjects('policy'))).toEqual(expected);
    expect(bundleObjects('policy').filter((o) => !clusterScopedKinds.has(o.kind) && o.metadata.namespace !== operatorNamespace)).toEqual([]);
  });

  it('runs the operator with --admission=policy, no webhook port, and the same hardened pod otherwise', () => {
    const container = (mode: AdmissionMode) => (bundleObjects(mode).find((o) => o.kind === 'Deployment') as V1Deployment).spec?.template.spec?.containers[0];
    const policyContainer = container('policy');
    expect(policyContainer?.args).toEqual(['--leader-elect', '--admission=policy', '--metrics-port=8080', '--health-port=8081']);
    expect(policyContainer?.ports?.map((p) => p.name)).toEqual(['metrics', 'health']);
    const withoutArgsAndPorts = (c: V1Container | undefined) => ({ ...c, args: undefined, ports: undefined });
    expect(withoutArgsAndPorts(policyContainer)).toEqual(withoutArgsAndPorts(container('webhook')));
    const ingress = one<V1NetworkPolicy>('NetworkPolicy').spec?.ingress?.[0]?.ports?.map((p) => p.port);
    expect(ingress).toEqual(['metrics', 'health']);
  });

  it('gates labelled pods at CREATE outside the exempt namespaces, failing closed, by JSON Patch, and binds its own policy', () => {
    const gatePolicy = one<{ spec: Record<string, unknown> & { mutations: { patchType: string }[] } }>('MutatingAdmissionPolicy');
    expect(gatePolicy.spec).toMatchObject({
      failurePolicy: 'Fail',
      reinvocationPolicy: 'Never',
      matchConstraints: {
        resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
        objectSelector: { matchExpressions: [{ key: 'marketplace.entitlements.io/product', operator: 'Exists' }] },
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: exemptNamespaces(operatorNamespace) }] },
      },
    });
    expect(gatePolicy.spec.mutations.map((m) => m.patchType)).toEqual(['JSONPatch']);
    expect(one<{ spec: unknown }>('MutatingAdmissionPolicyBinding').spec).toEqual({ policyName: 'entitlement-operator-pod-gate' });
  });

  it('grants the operator nothing of admission: no webhook configuration, no admission policy', () => {
    expect(clusterGrants('policy')).toEqual([...reconcilerGrants].sort());
    const roles = bundleObjects('policy').filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role') as (V1ClusterRole | V1Role)[];
    expect(roles.flatMap((role) => role.rules ?? []).filter((rule) => rule.apiGroups?.includes('admissionregistration.k8s.io'))).toEqual([]);
  });
});
