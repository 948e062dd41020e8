// The policy admission mode (Kubernetes 1.36+) against a real API server: the bundle's
// MutatingAdmissionPolicy gates labelled pods inside the API server, so pods are created and wait
// gated with no operator replica running; the operator, started with --admission=policy, entitles
// them with one RegisterUsage each under the nonce it computes, and never serves a webhook. A
// namespace user with `edit` creates the pods here, as in the webhook mode; the gate guard that
// holds their gates and annotations afterwards is the same object in both bundles
// (gate-guard.test.ts tries it).
import { setTimeout as sleep } from 'node:timers/promises';
import type { CoreV1Api, CustomObjectsApi, V1Pod } from '@kubernetes/client-node';
import { annotations, schedulingGate } from '../../src/api/marketplace-product.js';
import type { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { accountKubeconfig, operatorServiceAccount, prepareOperatorEnvironment, startOperatorProcess, waitForGating, waitForPod, type OperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';
import { operatorNonces } from '../support/seals.js';

const controlPlane = controlPlaneForSuite();
const ns = 'team';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let operatorKubeconfig = '';
let teamKubeconfig = '';
let operator: OperatorProcess | undefined;

beforeAll(async () => {
  const plane = controlPlane();
  const env = await prepareOperatorEnvironment(plane, 'policy');
  ({ fake, core, custom } = env);
  operatorKubeconfig = env.kubeconfig;
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await plane.kubectlOk(['create', 'serviceaccount', 'app-team', '-n', ns]);
  for (const role of ['edit', 'view']) await plane.kubectlOk(['create', 'rolebinding', `app-team-${role}`, '-n', ns, `--clusterrole=system:aggregate-to-${role}`, `--serviceaccount=${ns}:app-team`]);
  teamKubeconfig = await accountKubeconfig(plane, ns, 'app-team');
  const pem = fake.publicKeyPem;
  await createProduct(custom, ns, 'app', { productCode: 'app-code', publicKey: { pem }, identity: { mode: 'Operator' } });
  await createProduct(custom, ns, 'refused', { productCode: 'refused-code', publicKey: { pem }, identity: { mode: 'Operator' } });
  fake.setBehaviour('refused-code', { error: 'CustomerNotEntitledException' });
  await waitForGating(plane);
}, 120_000);
afterAll(async () => {
  await operator?.proc.stop();
  await fake.close();
});

const asTeam = (args: readonly string[], input?: string) => controlPlane().kubectlWith(teamKubeconfig, ['-n', ns, ...args], input);

async function teamCreates(pod: V1Pod): Promise<void> {
  const created = await asTeam(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }));
  if (created.code !== 0) throw new Error(`the team could not create ${pod.metadata?.name ?? ''}: ${created.stderr}`);
}

async function settled(name: string): Promise<V1Pod> {
  return waitForPod(`${name} settled`, async () => {
    const pod = await readPod(core, ns, name);
    return verdict(pod) ? pod : undefined;
  });
}

const start = async (): Promise<OperatorProcess> => (operator = await startOperatorProcess(controlPlane(), fake, operatorKubeconfig, { name: `operator-${Date.now()}`, admission: 'policy' }));

describe('with no operator replica running', () => {
  it('creates labelled pods gated, keeps their own gates, and drops the operator annotations they bring but recheck', async () => {
    const own = labelledPod('own-gates-0', 'app', { schedulingGates: [{ name: 'example.com/own' }] });
    const forged = labelledPod('forged-0', 'app');
    const forgedAnnotations = { [annotations.status]: 'Entitled', [annotations.seal]: 'v1.forged', [annotations.check]: 'chosen', [annotations.recheck]: 'now', 'team.example/owner': 'a' };
    forged.metadata = { ...forged.metadata, annotations: forgedAnnotations };
    // Made with the gate already, and a forged verdict: no second gate, the verdict still goes.
    const gatedAlready = labelledPod('gated-already-0', 'app', { schedulingGates: [{ name: schedulingGate }] });
    gatedAlready.metadata = { ...gatedAlready.metadata, annotations: { [annotations.status]: 'Entitled' } };
    for (const pod of [labelledPod('plain-0', 'app'), labelledPod('empty-gates-0', 'app', { schedulingGates: [] }), own, forged, gatedAlready]) await teamCreates(pod);

    expect((await readPod(core, ns, 'plain-0')).spec?.schedulingGates).toEqual([{ name: schedulingGate }]);
    expect((await readPod(core, ns, 'empty-gates-0')).spec?.schedulingGates).toEqual([{ name: schedulingGate }]);
    expect((await readPod(core, ns, 'own-gates-0')).spec?.schedulingGates).toEqual([{ name: 'example.com/own' }, { name: schedulingGate }]);
    const stripped = await readPod(core, ns, 'forged-0');
    expect([gated(stripped), stripped.metadata?.annotations]).toEqual([true, { [annotations.recheck]: 'now', 'team.example/owner': 'a' }]);
    const already = await readPod(core, ns, 'gated-already-0');
    expect([already.spec?.schedulingGates, already.metadata?.annotations]).toEqual([[{ name: schedulingGate }], undefined]);
  });

  it('leaves unlabelled pods, and pods in the exempt namespaces, alone', async () => {
    await teamCreates({ metadata: { name: 'unlabelled-0' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/free:1' }] } });
    expect((await readPod(core, ns, 'unlabelled-0')).spec?.schedulingGates).toBeUndefined();
    for (const namespace of ['kube-system', operatorNamespace]) {
      // Restricted, as the operator's namespace enforces.
      const body = labelledPod('exempt-0', 'app', {
        securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{ name: 'app', image: 'registry.invalid/paid:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
      });
      const pod = await core.createNamespacedPod({ namespace, body });
      expect([namespace, pod.spec?.schedulingGates]).toEqual([namespace, undefined]);
      await core.deleteNamespacedPod({ namespace, name: 'exempt-0', gracePeriodSeconds: 0 });
    }
  });
});

describe('the operator started with --admission=policy', () => {
  beforeAll(start);

  it('entitles the pods that waited: one RegisterUsage each, under the nonce of its uid, the gate removed', async () => {
    const pods = await Promise.all(['plain-0', 'empty-gates-0', 'forged-0', 'gated-already-0'].map(settled));
    expect(pods.map((p) => [p.metadata?.name, verdict(p), gated(p)])).toEqual([
      ['plain-0', 'Entitled', false],
      ['empty-gates-0', 'Entitled', false],
      ['forged-0', 'Entitled', false],
      ['gated-already-0', 'Entitled', false],
    ]);
    const nonceOf = await operatorNonces(core, operatorNamespace);
    const calls = fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'app-code');
    for (const pod of pods) expect(calls.filter((c) => c.request.Nonce === nonceOf(pod))).toHaveLength(1);
    // The pod's own gate is not the operator's to remove.
    const own = await settled('own-gates-0');
    expect([verdict(own), own.spec?.schedulingGates]).toEqual(['Entitled', [{ name: 'example.com/own' }]]);
  });

  it('keeps a refused pod gated', async () => {
    await teamCreates(labelledPod('refused-0', 'refused'));
    const pod = await settled('refused-0');
    expect([verdict(pod), reason(pod), gated(pod)]).toEqual(['NotEntitled', 'CustomerNotEntitled', true]);
  });

  it('serves no webhook and holds no right to write admission policies or webhook configurations', async () => {
    const plane = controlPlane();
    expect((await plane.kubectl(['get', 'mutatingwebhookconfigurations', '-o', 'name'])).stdout.trim()).toBe('');
    const asOperator = `system:serviceaccount:${operatorNamespace}:${operatorServiceAccount}`;
    for (const [verb, resource] of [
      ['create', 'mutatingadmissionpolicies.admissionregistration.k8s.io'],
      ['patch', 'mutatingadmissionpolicies.admissionregistration.k8s.io/entitlement-operator-pod-gate'],
      ['create', 'mutatingadmissionpolicybindings.admissionregistration.k8s.io'],
      ['delete', 'validatingadmissionpolicybindings.admissionregistration.k8s.io/entitlement-operator-gate-guard'],
      ['patch', 'mutatingwebhookconfigurations.admissionregistration.k8s.io/entitlement-operator-mutating-webhook-configuration'],
    ] as const) {
      const result = await plane.kubectl(['auth', 'can-i', verb, resource, `--as=${asOperator}`]);
      expect([verb, resource, result.stdout.trim()]).toEqual([verb, resource, 'no']);
    }
  });
});

describe('the operator scaled to 0 while pods are created', () => {
  it('pods are still created and stay gated; when a replica returns they are entitled', async () => {
    await operator?.proc.stop();
    operator = undefined;
    const names = Array.from({ length: 20 }, (_, i) => `while-down-${i}`);
    for (const name of names) await teamCreates(labelledPod(name, 'app'));
    await sleep(1_000);
    const waiting = await Promise.all(names.map((name) => readPod(core, ns, name)));
    expect(waiting.filter((p) => !gated(p) || verdict(p) !== undefined)).toEqual([]);

    await start();
    const pods = await Promise.all(names.map(settled));
    expect(pods.filter((p) => verdict(p) !== 'Entitled' || gated(p))).toEqual([]);
    const status = await waitForPod('the product counts them', async () => {
      const product = await getProduct(custom, ns, 'app');
      return product.status?.entitledPods === 25 ? product.status : undefined;
    });
    expect(status).toMatchObject({ entitledPods: 25, pendingPods: 0 });
  });
});
