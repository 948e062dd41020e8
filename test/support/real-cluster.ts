// A whole cluster with one real node: the control plane with controller-manager, scheduler and
// kwok (KwokCluster, no fake nodes unless asked), and a RealNode whose kubelet runs real
// containers. kwok manages only its own nodes, so fake nodes can join beside the real one for
// thousands of pods the machine could not run; they carry a taint so that only pods that
// tolerate it land there.
import { KwokCluster } from './kwok-cluster.js';
import type { ControlPlane } from './control-plane.js';
import { nodeNetwork, RealNode, removeNode } from './real-node.js';

export { nodeName, nodeNetwork, realNodeUnavailable } from './real-node.js';

/** The taint on kwok nodes in a real cluster, and the toleration pods meant for them carry. */
export const fakeNodeTaint = { key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' } as const;

export class RealCluster {
  private constructor(
    readonly kwok: KwokCluster,
    readonly node: RealNode,
  ) {}

  static async start(): Promise<RealCluster> {
    const before = await RealNode.prepareHost();
    let kwok: KwokCluster | undefined;
    try {
      kwok = await KwokCluster.start({ nodes: 0, controlPlane: { address: nodeNetwork.hostAddress, serviceCidr: nodeNetwork.serviceCidr } });
      return new RealCluster(kwok, await RealNode.start(kwok.controlPlane, before));
    } catch (error) {
      await kwok?.stop();
      await removeNode(before);
      throw error;
    }
  }

  get controlPlane(): ControlPlane {
    return this.kwok.controlPlane;
  }

  /** Adds a kwok node, tainted so that only pods that tolerate fakeNodeTaint run there. */
  async addFakeNode(name: string): Promise<void> {
    await this.kwok.addNode(name, [fakeNodeTaint]);
  }

  /** Stops the node (its pods by force), then the control plane. */
  async stop(): Promise<void> {
    await this.node.stop();
    await this.kwok.stop();
  }
}
