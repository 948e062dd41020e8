// A real Kubernetes node on this machine, beside a control plane: containerd (its own root, state
// and socket), a CNI bridge, kubelet and kube-proxy, set up as ../shared/notes/real-node-cluster.md
// found works here. Pods are real containers from images imported without a registry.
//
// Everything lives under one fixed directory and on addresses of the harness's own: the CNI
// bridge, made before the control plane starts, carries the API server's and the node's address
// as the pods' gateway (this kernel has no dummy interfaces), pods get a private /24 on it, and
// a raw-table rule drops whatever a pod sends outside the harness's /21, so no packet leaves the
// machine. stop() removes it all (processes, mounts, cgroups, interfaces, iptables
// chains, kernel settings, files under fixed host paths); a run killed before that is cleaned up
// by the next start.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ControlPlane } from './control-plane.js';
import { readHostState, restoreHostState, type HostState } from './host-state.js';
import { isAlive, killUntilGone, ManagedProcess } from './processes.js';
import { binary } from './testbin.js';
import { freePort, waitFor } from './wait.js';

const run = promisify(execFile);

/** The harness's addresses: one /21 of its own, split into the host, pod and Service ranges. */
export const nodeNetwork = {
  /** Everything the harness uses; pods may send to nothing outside it. */
  block: '172.30.248.0/21',
  /** The node's and the API server's address: the pods' gateway, on the bridge. */
  hostAddress: '172.30.251.1',
  podCidr: '172.30.251.0/24',
  serviceCidr: '172.30.252.0/24',
  bridge: 'eo-cni0',
} as const;

export const nodeName = 'real-node';
const baseDir = '/tmp/entitlement-operator-node';
const cgroupRoot = 'entitlement-operator-node';
const cgroupBase = '/sys/fs/cgroup';
const cniNetwork = 'entitlement-operator-node';
const egressRule = ['-s', nodeNetwork.podCidr, '!', '-d', nodeNetwork.block, '-m', 'comment', '--comment', 'entitlement-operator test node: pods stay on this machine', '-j', 'DROP'];

/** Why a real node cannot run here, or undefined when it can. */
export function realNodeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a real node needs root';
  if (existsSync(path.join(cgroupBase, 'cgroup.controllers'))) return 'the real node is set up for cgroup v1 (this machine has v2)';
  const needed: Record<string, string> = {
    '/usr/bin/containerd': 'containerd',
    '/usr/bin/containerd-shim-runc-v2': 'containerd',
    '/usr/bin/ctr': 'containerd',
    '/usr/sbin/runc': 'runc',
    '/usr/lib/cni/bridge': 'containernetworking-plugins',
    '/usr/sbin/iptables': 'iptables',
    '/usr/sbin/conntrack': 'conntrack',
  };
  const missing = [...new Set(Object.entries(needed).filter(([file]) => !existsSync(file)).map(([, pkg]) => pkg))];
  return missing.length ? `a real node needs the Debian packages ${missing.join(', ')}` : undefined;
}

function file(...parts: string[]): string {
  return path.join(baseDir, ...parts);
}

export class RealNode {
  private readonly processes: ManagedProcess[] = [];

  private constructor(
    private readonly plane: ControlPlane,
    private readonly before: HostState,
  ) {}

  /**
   * Makes the node's interface before the control plane starts (the API server binds its
   * address), and returns the host's state to restore at the end; start() comes next, once the
   * control plane runs. The state is also kept on disk for the next start, should this process
   * die before it can clean up.
   */
  static async prepareHost(): Promise<HostState> {
    await removeNode(undefined);
    const before = await readHostState();
    await mkdir(baseDir, { recursive: true });
    await writeFile(file('owner'), String(process.pid));
    await writeFile(file('host-state.json'), JSON.stringify(before));
    // The CNI bridge plugin adopts a bridge that exists and already has the gateway address.
    await ip('link', 'add', nodeNetwork.bridge, 'type', 'bridge');
    await ip('addr', 'add', `${nodeNetwork.hostAddress}/24`, 'dev', nodeNetwork.bridge);
    await ip('link', 'set', nodeNetwork.bridge, 'up');
    await run('iptables', ['-w', '-t', 'raw', '-I', 'PREROUTING', ...egressRule]);
    return before;
  }

  static async start(plane: ControlPlane, before: HostState): Promise<RealNode> {
    const node = new RealNode(plane, before);
    try {
      await node.startContainerd();
      await node.startKubelet();
      await node.startKubeProxy();
      await plane.kubectlOk(['wait', '--for=condition=Ready', `node/${nodeName}`, '--timeout=120s']);
      return node;
    } catch (error) {
      await node.stop();
      throw error;
    }
  }

  /** containerd's socket, for ctr. */
  get containerdAddress(): string {
    return file('containerd', 'containerd.sock');
  }

  /** Imports an OCI archive into the node's image store (the kubelet's namespace). */
  async importImage(archive: string): Promise<void> {
    await run('ctr', ['--address', this.containerdAddress, '-n', 'k8s.io', 'images', 'import', '--no-unpack=false', archive], { maxBuffer: 16 * 1024 * 1024 });
  }

  /** A pod's memory limit and peak usage in bytes, from its cgroup on this node (the kernel's view). */
  async podMemory(uid: string): Promise<{ limit: number; peak: number }> {
    const memory = path.join(cgroupBase, 'memory');
    const dir = (await cgroupTree(memory)).find((d) => path.basename(d) === `pod${uid}`);
    if (!dir) throw new Error(`no memory cgroup for pod ${uid} on this node`);
    const read = async (name: string): Promise<number> => Number((await readFile(path.join(dir, name), 'utf8')).trim());
    return { limit: await read('memory.limit_in_bytes'), peak: await read('memory.max_usage_in_bytes') };
  }

  async stop(): Promise<void> {
    // Pods first, by their cgroups: graceful deletion through the API takes most of a minute.
    await killUntilGone(cgroupProcesses);
    for (const proc of [...this.processes].reverse()) await proc.stop(5_000);
    this.processes.length = 0;
    await removeNode(this.before);
  }

  private startProcess(name: string, command: string, args: readonly string[]): ManagedProcess {
    const proc = new ManagedProcess(name, command, args, { logFile: file(`${name}.log`) });
    this.processes.push(proc);
    return proc;
  }

  private async startContainerd(): Promise<void> {
    const dir = file('containerd');
    await mkdir(file('cni', 'net.d'), { recursive: true });
    await mkdir(dir, { recursive: true });
    await writeFile(file('cni', 'net.d', '10-bridge.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: cniNetwork,
      // No loopback plugin: containerd sets up lo itself.
      plugins: [{
        type: 'bridge', bridge: nodeNetwork.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: nodeNetwork.podCidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: file('cni', 'ipam') },
      }],
    }));
    await writeFile(path.join(dir, 'config.toml'), `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  # This VM lacks CAP_SYS_RESOURCE: without it runc fails on the pause container's oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "${dir}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${file('cni', 'net.d')}"
`);
    const containerd = this.startProcess('containerd', '/usr/bin/containerd', ['--config', path.join(dir, 'config.toml')]);
    await waitFor('containerd', async () => {
      if (!containerd.running) throw new Error(`containerd exited:\n${containerd.logTail()}`);
      const { stdout } = await run('ctr', ['--address', this.containerdAddress, 'version']);
      return stdout.includes('Server') ? true : undefined;
    }, 30_000, 100);
  }

  private async startKubelet(): Promise<void> {
    const dir = file('kubelet');
    await mkdir(path.join(dir, 'pki'), { recursive: true });
    await makeCgroupRoot();
    const kubeconfig = await this.plane.writeKubeconfig('kubelet', await this.plane.issueClientCertificate(`system:node:${nodeName}`, ['system:nodes']));
    // No cluster DNS here: a lookup inside a pod fails on this machine instead of reaching the host's resolver.
    await writeFile(file('resolv.conf'), 'nameserver 127.0.0.1\n');
    const [port, healthzPort] = [await freePort(), await freePort()];
    await writeFile(path.join(dir, 'config.yaml'), JSON.stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: nodeNetwork.hostAddress,
      port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: `/${cgroupRoot}`,
      failSwapOn: false,
      // This host has cgroup v1, which kubelets since 1.35 refuse unless told otherwise.
      failCgroupV1: false,
      containerRuntimeEndpoint: `unix://${this.containerdAddress}`,
      podLogsDir: file('pod-logs'),
      resolvConf: file('resolv.conf'),
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: this.plane.file('ca.crt') } },
      authorization: { mode: 'Webhook' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
      serializeImagePulls: false,
      syncFrequency: '10s',
      nodeStatusUpdateFrequency: '5s',
      maxPods: 110,
    }));
    const kubelet = this.startProcess('kubelet', await binary('kubelet'), [
      `--config=${path.join(dir, 'config.yaml')}`, `--kubeconfig=${kubeconfig}`, `--root-dir=${dir}`, `--cert-dir=${path.join(dir, 'pki')}`,
      `--hostname-override=${nodeName}`, `--node-ip=${nodeNetwork.hostAddress}`, '--v=1',
    ]);
    await this.plane.waitHealthy(kubelet, `http://127.0.0.1:${healthzPort}/healthz`, 60_000);
  }

  private async startKubeProxy(): Promise<void> {
    const kubeconfig = await this.plane.writeKubeconfig('kube-proxy', await this.plane.issueClientCertificate('system:kube-proxy'));
    const [healthzPort, metricsPort] = [await freePort(), await freePort()];
    await writeFile(file('kube-proxy.yaml'), JSON.stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      clientConnection: { kubeconfig },
      hostnameOverride: nodeName,
      healthzBindAddress: `127.0.0.1:${healthzPort}`,
      metricsBindAddress: `127.0.0.1:${metricsPort}`,
      clusterCIDR: nodeNetwork.podCidr,
      nodePortAddresses: [`${nodeNetwork.hostAddress}/32`],
      // Zeros leave the machine's conntrack settings alone.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      iptables: { localhostNodePorts: false, minSyncPeriod: '0s', syncPeriod: '30s' },
    }));
    const proxy = this.startProcess('kube-proxy', await binary('kube-proxy'), [`--config=${file('kube-proxy.yaml')}`, '--v=1']);
    await this.plane.waitHealthy(proxy, `http://127.0.0.1:${healthzPort}/healthz`, 60_000);
  }
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

/** The kubelet's cgroup root, in every v1 hierarchy; cpuset needs its parent's CPUs and memory nodes. */
async function makeCgroupRoot(): Promise<void> {
  for (const hierarchy of await cgroupHierarchies()) {
    const dir = path.join(hierarchy, cgroupRoot);
    await mkdir(dir, { recursive: true });
    if (path.basename(hierarchy) === 'cpuset') {
      for (const name of ['cpuset.cpus', 'cpuset.mems']) await writeFile(path.join(dir, name), await readFile(path.join(hierarchy, name)));
    }
  }
}

async function cgroupHierarchies(): Promise<string[]> {
  const entries = await readdir(cgroupBase).catch(() => []);
  return entries.map((entry) => path.join(cgroupBase, entry)).filter((dir) => existsSync(path.join(dir, 'cgroup.procs')));
}

/** Directories under the node's cgroup root in one hierarchy, deepest first. */
async function cgroupTree(hierarchy: string): Promise<string[]> {
  const top = path.join(hierarchy, cgroupRoot);
  const entries = await readdir(top, { recursive: true, withFileTypes: true }).catch(() => undefined);
  if (!entries) return [];
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => path.join(e.parentPath, e.name));
  return [...dirs.sort((a, b) => b.length - a.length), top];
}

/** Every process in the node's cgroups (pods, pause containers). */
async function cgroupProcesses(): Promise<number[]> {
  const pids: number[] = [];
  for (const dir of await cgroupTree(path.join(cgroupBase, 'pids'))) {
    const procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    pids.push(...procs.split('\n').filter(Boolean).map(Number));
  }
  return pids;
}

/** Processes whose command line names the node's directory (containerd shims outlive containerd). */
async function nodeProcesses(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(baseDir)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Removes everything a node makes and puts back the host state it changed since `before`.
 * Without `before` (at start) it removes what an earlier run that was killed left, using the
 * state that run saved.
 */
export async function removeNode(before: HostState | undefined): Promise<void> {
  const owner = Number(await readFile(file('owner'), 'utf8').catch(() => ''));
  if (!before && owner && owner !== process.pid && isAlive(owner)) {
    throw new Error(`another real node (pid ${owner}) is running on this machine`);
  }
  before ??= await readFile(file('host-state.json'), 'utf8').then((text) => JSON.parse(text) as HostState, () => undefined);
  await killUntilGone(cgroupProcesses);
  await killUntilGone(nodeProcesses, 30);
  // Mounts under the node: container root filesystems, network namespaces, projected volumes.
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mount) => mount === baseDir || mount.startsWith(`${baseDir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mount of mounts) await run('umount', ['-l', mount]).catch(() => undefined);
  for (const hierarchy of await cgroupHierarchies()) {
    for (const dir of await cgroupTree(hierarchy)) await rmdir(dir).catch(() => undefined);
  }
  if (existsSync(`/sys/class/net/${nodeNetwork.bridge}`)) await ip('link', 'del', nodeNetwork.bridge).catch(() => undefined);
  while (await run('iptables', ['-w', '-t', 'raw', '-D', 'PREROUTING', ...egressRule]).then(() => true, () => false));
  const kubeProxy = await binary('kube-proxy').catch(() => undefined);
  if (kubeProxy && existsSync(kubeProxy)) await run(kubeProxy, ['--cleanup']).catch(() => undefined);
  if (before) await restoreHostState(before);
  await rm(baseDir, { recursive: true, force: true });
}
