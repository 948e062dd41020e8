// The whole path in a cluster with a scheduler and (kwok) nodes: an entitled product's
// Deployment reaches Running pods; a product that is not entitled never gets scheduled.
import { AppsV1Api, type V1Pod } from '@kubernetes/client-node';
import { productLabel } from '../../src/api/marketplace-product.js';
import { operatorNamespace } from '../support/bundle.js';
import { KwokCluster } from '../support/kwok-cluster.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod, type OperatorEnvironment } from '../support/operator.js';
import { createProduct, gated, reason, verdict } from '../support/pods.js';

let cluster: KwokCluster | undefined;
let env: OperatorEnvironment;

beforeAll(async () => {
  cluster = await KwokCluster.start({ nodes: 2 });
  env = await prepareOperatorEnvironment(cluster.controlPlane);
  await startOperatorProcess(cluster.controlPlane, env.fake, env.kubeconfig);
}, 300_000);
afterAll(async () => {
  await env.fake.close();
  await cluster?.stop();
});

async function deploy(name: string, product: string): Promise<void> {
  const apps = cluster?.controlPlane.kubeConfig().makeApiClient(AppsV1Api);
  await apps?.createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name, [productLabel]: product } }, spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1' }] } },
      },
    },
  });
}
const podsOf = async (app: string): Promise<V1Pod[]> => (await env.core.listNamespacedPod({ namespace: 'default', labelSelector: `app=${app}` })).items;

it('an entitled product: its Deployment reaches 3 Running pods on kwok nodes', async () => {
  await createProduct(env.custom, 'default', 'paid', { publicKey: { pem: env.fake.publicKeyPem }, identity: { mode: 'Operator' }, productCode: 'paid-code' });
  await deploy('paid', 'paid');
  const running = await waitForPod('3 Running pods', async () => {
    const pods = await podsOf('paid');
    return pods.filter((p) => p.status?.phase === 'Running').length === 3 ? pods : undefined;
  }, 120_000);
  for (const pod of running) {
    expect([verdict(pod), gated(pod)]).toEqual(['Entitled', false]);
    expect(pod.spec?.nodeName).toMatch(/^kwok-node-/);
  }
});

it('a product that is not entitled: its pods stay gated, unscheduled', async () => {
  env.fake.setBehaviour('unpaid-code', { error: 'CustomerNotEntitledException' });
  await createProduct(env.custom, 'default', 'unpaid', { publicKey: { pem: env.fake.publicKeyPem }, identity: { mode: 'Operator' }, productCode: 'unpaid-code' });
  await deploy('unpaid', 'unpaid');
  const pods = await waitForPod('3 verdicts', async () => {
    const list = await podsOf('unpaid');
    return list.length === 3 && list.every((p) => verdict(p) === 'NotEntitled') ? list : undefined;
  }, 120_000);
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // give the scheduler its chance
  for (const pod of await podsOf('unpaid')) {
    expect([reason(pod), gated(pod), pod.spec?.nodeName, pod.status?.phase]).toEqual(['CustomerNotEntitled', true, undefined, 'Pending']);
    expect(pod.status?.conditions?.find((c) => c.type === 'PodScheduled')).toMatchObject({ status: 'False', reason: 'SchedulingGated' });
  }
  expect(pods).toHaveLength(3);
});

it("the bundle's two replicas of the operator land on different nodes", async () => {
  // Here they are kwok pods (the operator under test runs out of cluster); the scheduler places
  // them as it would real ones.
  const pods = await waitForPod('2 scheduled operator pods', async () => {
    const list = (await env.core.listNamespacedPod({ namespace: operatorNamespace, labelSelector: 'app.kubernetes.io/name=entitlement-operator' })).items;
    return list.length === 2 && list.every((p) => p.spec?.nodeName) ? list : undefined;
  }, 120_000);
  expect(new Set(pods.map((p) => p.spec?.nodeName)).size).toBe(2);
});
