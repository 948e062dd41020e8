// The full local cluster harness: scheduler, controller-manager and kwok nodes behave like a
// real cluster for Deployments, and stopping it leaves nothing behind.
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import net from 'node:net';
import { KwokCluster } from '../support/kwok-cluster.js';
import { waitFor } from '../support/wait.js';

let started: KwokCluster | undefined;
beforeAll(async () => {
  started = await KwokCluster.start({ nodes: 2 });
}, 300_000);
afterAll(async () => {
  await started?.stop();
});
const cluster = (): KwokCluster => {
  if (!started) throw new Error('the cluster did not start');
  return started;
};

it('a Deployment of 3 replicas reaches 3 Running pods on kwok nodes', async () => {
  const kc = cluster().controlPlane.kubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  await apps.createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name: 'web' },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: { containers: [{ name: 'web', image: 'registry.invalid/web:1' }] },
        },
      },
    },
  });

  const running = await waitFor('3 Running pods', async () => {
    const pods = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items;
    const up = pods.filter((p) => p.status?.phase === 'Running');
    return up.length === 3 ? up : undefined;
  }, 120_000, 500);

  for (const pod of running) expect(pod.spec?.nodeName).toMatch(/^kwok-node-[01]$/);
  const deployment = await waitFor('the Deployment to report 3 available replicas', async () => {
    const d = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
    return d.status?.availableReplicas === 3 ? d : undefined;
  });
  expect(deployment.status?.readyReplicas).toBe(3);
});

it('stop() frees the API server port', async () => {
  const port = Number(new URL(cluster().controlPlane.server).port);
  await cluster().stop();
  const refused = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => {
      resolve(true);
    });
  });
  expect(refused).toBe(true);
});
