// Whose fault a failure on the way to a pod's identity is, against the real API server and the
// fake AWS: the operator's own (its permissions after an RBAC change, API Priority and Fairness
// refusing it in a burst, a clock behind AWS's) is retried and never a customer's verdict; the
// customer's (a role annotation STS cannot parse, a ServiceAccount gone) is a verdict at once,
// never an endless retry.
import type { CoreV1Api, CustomObjectsApi, V1ClusterRole } from '@kubernetes/client-node';
import { createStsClient } from '../../src/aws/clients.js';
import { IdentityRetryError, IdentityUnavailableError, PodIdentity, roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { loadKubeClient, type KubeClient } from '../../src/kube/api.js';
import type { FakeAws } from '../fake-aws/server.js';
import { bundleObject, operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite, type ControlPlane } from '../support/control-plane.js';
import { fakeSettings } from '../support/fake-aws.js';
import { operatorServiceAccount, prepareOperatorEnvironment, startOperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';
import { waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
const ns = 'identity-faults';
const role = 'arn:aws:iam::123456789012:role/app';
const managerRole = 'entitlement-operator-manager-role';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let asOperator: KubeClient;

beforeAll(async () => {
  const env = await prepareOperatorEnvironment(controlPlane());
  ({ fake, core, custom } = env);
  asOperator = loadKubeClient(env.kubeconfig);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: role } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'typo', annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:app' } } } });
  await startOperatorProcess(controlPlane(), fake, env.kubeconfig);
}, 120_000);
afterAll(async () => {
  await asOperator.close();
  await fake.close();
});

const podMode = (productCode: string) => ({ publicKey: { pem: fake.publicKeyPem }, productCode, identity: { mode: 'Pod' } });
const podIdentity = () => new PodIdentity(asOperator, createStsClient(fakeSettings(fake), 'anonymous'));
const refOf = async (name: string, serviceAccountName = 'app') => {
  const pod = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { serviceAccountName, containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } } });
  return { namespace: ns, name, uid: pod.metadata?.uid ?? '', serviceAccountName };
};
const condition = async (product: string) => (await getProduct(custom, ns, product)).status?.conditions?.find((c) => c.type === 'Entitled');
const settled = (name: string) =>
  waitFor(`a verdict on ${name}`, async () => {
    const pod = await readPod(core, ns, name);
    return verdict(pod) !== undefined ? pod : undefined;
  });

/** Runs `action` with the operator's ClusterRole lacking `serviceaccounts/token`, then puts the bundle's back. */
async function withoutTokenPermission<T>(plane: ControlPlane, action: () => Promise<T>): Promise<T> {
  const bundled = bundleObject<V1ClusterRole>('ClusterRole', managerRole);
  const reduced = { ...bundled, rules: (bundled.rules ?? []).filter((rule) => !rule.resources?.includes('serviceaccounts/token')) };
  await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify(reduced));
  try {
    return await action();
  } finally {
    await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify(bundled));
  }
}

/** Runs `action` while API Priority and Fairness gives the operator's TokenRequests a level of the fewest seats, rejecting what does not fit. */
async function withTokenRequestsThrottled<T>(plane: ControlPlane, action: () => Promise<T>): Promise<T> {
  const level = { apiVersion: 'flowcontrol.apiserver.k8s.io/v1', kind: 'PriorityLevelConfiguration', metadata: { name: 'no-seats' }, spec: { type: 'Limited', limited: { nominalConcurrencyShares: 0, lendablePercent: 0, borrowingLimitPercent: 0, limitResponse: { type: 'Reject' } } } };
  const schema = {
    apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
    kind: 'FlowSchema',
    metadata: { name: 'operator-tokens-throttled' },
    spec: {
      priorityLevelConfiguration: { name: 'no-seats' },
      matchingPrecedence: 100,
      rules: [{ subjects: [{ kind: 'ServiceAccount', serviceAccount: { namespace: operatorNamespace, name: operatorServiceAccount } }], resourceRules: [{ verbs: ['create'], apiGroups: [''], resources: ['serviceaccounts/token'], namespaces: ['*'] }] }],
    },
  };
  await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [level, schema] }));
  try {
    return await action();
  } finally {
    await plane.kubectlOk(['delete', 'flowschema/operator-tokens-throttled', 'prioritylevelconfiguration/no-seats']);
  }
}

describe("the operator's faults are retried, never a verdict", () => {
  it("a TokenRequest refused by the operator's own RBAC (403) is an IdentityRetryError that names the missing permission", async () => {
    const pod = await refOf('rbac-0');
    const error = await withoutTokenPermission(controlPlane(), () =>
      waitFor('the API server to refuse the token', async () => {
        const e = await podIdentity().credentials(pod, role).catch((caught: unknown) => caught);
        return e instanceof Error ? e : undefined;
      }),
    );
    expect(error).toBeInstanceOf(IdentityRetryError);
    expect(error).toMatchObject({ httpStatus: 403, message: expect.stringMatching(/TokenRequest for ServiceAccount identity-faults\/app failed: HTTP 403 .*lacks this permission/) as unknown });
  });

  it('TokenRequests that API Priority and Fairness rejects (429) in a burst are IdentityRetryErrors', async () => {
    const pods = await Promise.all(Array.from({ length: 20 }, (_, i) => refOf(`apf-${i}`)));
    // A level of one seat that queues nothing: of a burst, all but the first few are rejected.
    const rejected = await withTokenRequestsThrottled(controlPlane(), () =>
      waitFor('API Priority and Fairness to reject some of a burst', async () => {
        const errors = await Promise.all(pods.map((pod) => podIdentity().credentials(pod, role).then(() => undefined, (caught: unknown) => caught)));
        const throttled = errors.filter((e) => e instanceof Error && 'httpStatus' in e && e.httpStatus === 429);
        return throttled.length > 0 ? throttled : undefined;
      }),
    );
    for (const error of rejected) expect(error).toBeInstanceOf(IdentityRetryError);
  });

  it("another admission policy's denial of a TokenRequest (not the operator's limits) is retried, an IdentityRetryError", async () => {
    const pod = await refOf('other-policy-0');
    const policy = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'no-tokens-here' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'] }] },
        validations: [{ expression: 'false', message: 'a cluster policy keeps tokens from being made here' }],
      },
    };
    const binding = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: 'no-tokens-here' },
      spec: { policyName: 'no-tokens-here', validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } } },
    };
    await controlPlane().kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [policy, binding] }));
    try {
      const error = await waitFor('the policy to deny the token', async () => {
        const e = await podIdentity().credentials(pod, role).catch((caught: unknown) => caught);
        return e instanceof Error ? e : undefined;
      });
      expect(error).toBeInstanceOf(IdentityRetryError);
      expect(error.message).toMatch(/a cluster policy keeps tokens from being made here/);
    } finally {
      await controlPlane().kubectlOk(['delete', 'validatingadmissionpolicybinding/no-tokens-here', 'validatingadmissionpolicy/no-tokens-here']);
    }
  });

  it('a gated pod whose token the operator may not request stays gated without a verdict (the product Retrying), and is entitled once the permission is back', async () => {
    await createProduct(custom, ns, 'rbac', podMode('rbac-code'));
    await withoutTokenPermission(controlPlane(), async () => {
      await core.createNamespacedPod({ namespace: ns, body: labelledPod('rbac-gated', 'rbac', { serviceAccountName: 'app' }) });
      const retrying = await waitFor('the product Retrying', async () => {
        const c = await condition('rbac');
        return c?.reason === 'Retrying' ? c : undefined;
      });
      expect(retrying).toMatchObject({ status: 'Unknown' });
      const pod = await readPod(core, ns, 'rbac-gated');
      expect([verdict(pod), gated(pod)]).toEqual([undefined, true]);
    });
    const pod = await settled('rbac-gated');
    expect([verdict(pod), reason(pod), gated(pod)]).toEqual(['Entitled', 'SignatureVerified', false]);
  });

  it("an answer dated more than a minute ahead of the operator's clock is retried, not InvalidSignature; the pod is entitled once the clocks agree", async () => {
    fake.setBehaviour('ahead-code', { clockAheadSeconds: 300 });
    await createProduct(custom, ns, 'ahead', podMode('ahead-code'));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('ahead-0', 'ahead', { serviceAccountName: 'app' }) });
    const retrying = await waitFor('the product Retrying', async () => {
      const c = await condition('ahead');
      return c?.reason === 'Retrying' ? c : undefined;
    });
    expect(retrying).toMatchObject({ status: 'Unknown', message: expect.stringMatching(/in the future.*clock is behind/) as unknown });
    expect(verdict(await readPod(core, ns, 'ahead-0'))).toBeUndefined();
    fake.setBehaviour('ahead-code', {});
    const pod = await settled('ahead-0');
    expect([verdict(pod), gated(pod)]).toEqual(['Entitled', false]);
  });
});

describe("the customer's faults are a verdict, never an endless retry", () => {
  it('a role annotation STS cannot parse (ValidationError) is IdentityUnavailable, naming the annotation', async () => {
    const pod = await refOf('typo-direct', 'typo');
    const error = await podIdentity().credentials(pod).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IdentityUnavailableError);
    expect((error as Error).message).toMatch(/STS refused the role "arn:aws:iam::123456789012:app" from ServiceAccount identity-faults\/typo's eks\.amazonaws\.com\/role-arn/);
  });

  it('a pod of that ServiceAccount is NotEntitled IdentityUnavailable and stays gated, after one exchange', async () => {
    await createProduct(custom, ns, 'typo', podMode('typo-code'));
    await core.createNamespacedPod({ namespace: ns, body: labelledPod('typo-0', 'typo', { serviceAccountName: 'typo' }) });
    const pod = await settled('typo-0');
    expect([verdict(pod), reason(pod), gated(pod)]).toEqual(['NotEntitled', 'IdentityUnavailable', true]);
    // Given time to retry: a verdict stands, so STS was asked once.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(fake.calls('AssumeRoleWithWebIdentity').filter((c) => c.request.RoleSessionName === `${ns}.typo-0`)).toEqual([expect.objectContaining({ errorCode: 'ValidationError' })]);
  });

  it('a ServiceAccount that is gone is IdentityUnavailable', async () => {
    const pod = await refOf('gone-sa-0');
    const error = await podIdentity().credentials({ ...pod, serviceAccountName: 'absent' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IdentityUnavailableError);
    expect(error).toMatchObject({ httpStatus: 404 });
  });
});
