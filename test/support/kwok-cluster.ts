// A whole local cluster without a kubelet: etcd and kube-apiserver (ControlPlane), plus
// kube-controller-manager, kube-scheduler and kwok, which fakes Nodes and moves pods bound to
// them to Running. Deployments, ReplicaSets and real scheduling work as in a real cluster.
import { ControlPlane, type ControlPlaneOptions } from './control-plane.js';
import { binary } from './testbin.js';
import { freePort, waitFor } from './wait.js';

const fakeNodeAnnotation = 'kwok.x-k8s.io/node';

export interface KwokClusterOptions {
  /** Fake nodes made at start (2). */
  nodes?: number;
  controlPlane?: Omit<ControlPlaneOptions, 'serviceAccountAdmission'>;
}

export class KwokCluster {
  private constructor(readonly controlPlane: ControlPlane) {}

  /** Starts the cluster; tries new ports when one it picked was taken before it was bound. */
  static async start(options: KwokClusterOptions = {}): Promise<KwokCluster> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await KwokCluster.startOnce(options);
      } catch (error) {
        if (attempt >= 3 || !/address already in use|EADDRINUSE/.test(String(error))) throw error;
      }
    }
  }

  private static async startOnce(options: KwokClusterOptions): Promise<KwokCluster> {
    const plane = await ControlPlane.start({ ...options.controlPlane, serviceAccountAdmission: true });
    try {
      const cluster = new KwokCluster(plane);
      await cluster.startComponents();
      for (let i = 0; i < (options.nodes ?? 2); i++) await cluster.addNode(`kwok-node-${i}`);
      return cluster;
    } catch (error) {
      await plane.stop();
      throw error;
    }
  }

  /** Creates a fake Node that kwok keeps Ready, and waits until it is. */
  async addNode(name: string, taints: readonly { key: string; value: string; effect: string }[] = []): Promise<void> {
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { [fakeNodeAnnotation]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
      },
      spec: { taints },
      status: { allocatable: { cpu: '32', memory: '256Gi', 'ephemeral-storage': '100Gi', pods: '110' }, capacity: { cpu: '32', memory: '256Gi', 'ephemeral-storage': '100Gi', pods: '110' } },
    };
    await this.controlPlane.kubectlOk(['apply', '-f', '-'], JSON.stringify(node));
    await this.controlPlane.kubectlOk(['wait', '--for=condition=Ready', `node/${name}`, '--timeout=60s']);
  }

  async stop(): Promise<void> {
    await this.controlPlane.stop();
  }

  private async startComponents(): Promise<void> {
    const plane = this.controlPlane;
    const kubeconfig = plane.kubeconfigPath;
    const delegated = [`--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`];
    const [kcmPort, schedulerPort, kwokPort] = [await freePort(), await freePort(), await freePort()];

    const kcm = plane.startProcess('kube-controller-manager', await binary('kube-controller-manager'), [
      ...delegated, '--bind-address=127.0.0.1', `--secure-port=${kcmPort}`, '--leader-elect=false',
      `--service-account-private-key-file=${plane.file('sa.key')}`, `--root-ca-file=${plane.file('ca.crt')}`,
      '--use-service-account-credentials=false',
    ]);
    const scheduler = plane.startProcess('kube-scheduler', await binary('kube-scheduler'), [
      ...delegated, '--bind-address=127.0.0.1', `--secure-port=${schedulerPort}`, '--leader-elect=false',
    ]);
    const kwok = plane.startProcess('kwok', await binary('kwok'), [
      `--kubeconfig=${kubeconfig}`, '--manage-all-nodes=false', `--manage-nodes-with-annotation-selector=${fakeNodeAnnotation}=fake`,
      `--server-address=127.0.0.1:${kwokPort}`, '--node-ip=127.0.0.1', '--node-name=kwok-controller', `--node-port=${kwokPort}`,
    ]);
    await plane.waitHealthy(kcm, `https://127.0.0.1:${kcmPort}/healthz`);
    await plane.waitHealthy(scheduler, `https://127.0.0.1:${schedulerPort}/healthz`);
    await plane.waitHealthy(kwok, `http://127.0.0.1:${kwokPort}/healthz`);
    // Pods need their namespace's default ServiceAccount, which the controller-manager creates.
    await waitFor('the default ServiceAccount', async () => ((await plane.kubectl(['get', 'serviceaccount', 'default'])).code === 0 ? true : undefined));
  }
}
