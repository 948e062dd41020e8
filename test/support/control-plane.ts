// A real etcd and kube-apiserver on free loopback ports, with throwaway certificates and an
// admin kubeconfig. Everything it starts is stopped by stop(), and by the supervisor when the
// test process dies before that.
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { fromKubeconfigFile, KubeClient } from '../../src/kube/api.js';
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type IssuedCertificate } from '../../src/pki/certificates.js';
import { ManagedProcess } from './processes.js';
import { binary } from './testbin.js';
import { freePort, StopWaiting, waitFor } from './wait.js';

const day = 24 * 60 * 60 * 1000;

export interface ControlPlaneOptions {
  /** Enable the ServiceAccount admission plugin (needs a controller-manager to create accounts). */
  serviceAccountAdmission?: boolean;
  /**
   * The address the API server binds and advertises (127.0.0.1). A real node's pods reach it
   * through the `kubernetes` Service, so there it is an address of the harness's own interface.
   */
  address?: string;
  /** Service IPs (10.0.0.0/24); the first one is the `kubernetes` Service's, in the serving certificate. */
  serviceCidr?: string;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ControlPlane {
  private readonly processes: ManagedProcess[] = [];
  private admin: IssuedCertificate | undefined;

  private constructor(
    readonly dir: string,
    readonly ca: CertificateAuthority,
    readonly server: string,
    readonly kubeconfigPath: string,
  ) {}

  /**
   * Starts etcd and the API server. A free port can be taken by someone else before the server
   * binds it (ephemeral ports are shared with outgoing connections): then it tries new ports.
   */
  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ControlPlane.startOnce(options);
      } catch (error) {
        if (attempt >= 3 || !String(error).includes('address already in use')) throw error;
      }
    }
  }

  private static async startOnce(options: ControlPlaneOptions): Promise<ControlPlane> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'control-plane-'));
    const [etcdPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const ca = await createCertificateAuthority('test-control-plane-ca', day);
    const address = options.address ?? '127.0.0.1';
    const server = `https://${address}:${apiPort}`;
    const plane = new ControlPlane(dir, ca, server, path.join(dir, 'admin.kubeconfig'));
    try {
      await plane.writeCredentials([address, firstServiceIp(options.serviceCidr ?? defaultServiceCidr)]);
      await plane.startEtcd(etcdPort, etcdPeerPort);
      await plane.startApiServer(apiPort, etcdPort, options);
      return plane;
    } catch (error) {
      await plane.stop();
      throw error;
    }
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  /** The operator's own API client, as the admin user. */
  client(): KubeClient {
    return new KubeClient(fromKubeconfigFile(this.kubeconfigPath));
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  /** Runs kubectl against this control plane as the admin user. Never throws on a non-zero exit. */
  kubectl(args: readonly string[], input?: string): Promise<CommandResult> {
    return this.kubectlWith(this.kubeconfigPath, args, input);
  }

  /** Runs kubectl with another kubeconfig (another user). Never throws on a non-zero exit. */
  async kubectlWith(kubeconfig: string, args: readonly string[], input?: string): Promise<CommandResult> {
    const kubectl = await binary('kubectl');
    return new Promise((resolve, reject) => {
      const child = execFile(kubectl, ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(new Error(`kubectl could not run: ${error.message}`));
        else resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      });
      child.stdin?.end(input ?? '');
    });
  }

  /** Like kubectl(), but throws with kubectl's stderr when it fails. */
  async kubectlOk(args: readonly string[], input?: string): Promise<string> {
    const result = await this.kubectl(args, input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  /** Starts a process whose lifetime is tied to this control plane. */
  startProcess(name: string, command: string, args: readonly string[], env?: NodeJS.ProcessEnv): ManagedProcess {
    const proc = new ManagedProcess(name, command, args, { logFile: this.file(`${name}.log`), ...(env ? { env } : {}) });
    this.processes.push(proc);
    return proc;
  }

  /** Waits for a process's HTTP(S) health endpoint, failing fast with its log if it exits. */
  async waitHealthy(proc: ManagedProcess, url: string, timeoutMs = 90_000): Promise<void> {
    await waitFor(`${proc.name} at ${url}`, async () => {
      if (!proc.running) throw new StopWaiting(`${proc.name} exited`);
      return (await this.httpGet(url)) === 200 ? true : undefined;
    }, timeoutMs).catch((error: unknown) => {
      const keep = process.env.KEEP_CONTROL_PLANE_DIR ? `kept in ${this.dir}` : 'set KEEP_CONTROL_PLANE_DIR=1 to keep it';
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n--- ${proc.name} log (${keep}) ---\n${proc.logTail()}`);
    });
  }

  /**
   * CPU seconds (user and system) the processes of this control plane have spent so far: etcd,
   * the API server and whatever else it started, each a process group of its own.
   */
  async cpuSeconds(): Promise<number> {
    const groups = new Set(this.processes.map((proc) => proc.pid).filter((pid) => pid !== undefined));
    const ticksPerSecond = 100; // USER_HZ, 100 on every Linux this runs on
    let ticks = 0;
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // After "pid (comm) ": state, ppid, pgrp, ... utime is the 12th field after it, stime the 13th.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (groups.has(Number(fields[2]))) ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks / ticksPerSecond;
  }

  /** Stops everything in reverse start order and removes the working directory. */
  async stop(): Promise<void> {
    for (const proc of this.processes.reverse()) await proc.stop();
    this.processes.length = 0;
    if (!process.env.KEEP_CONTROL_PLANE_DIR) await rm(this.dir, { recursive: true, force: true });
  }

  /** A client certificate from the cluster's CA, for a user or a node. */
  issueClientCertificate(commonName: string, organizations: string[] = []): Promise<IssuedCertificate> {
    return issueCertificate(this.ca, { commonName, organizations, usage: 'client', validForMs: day });
  }

  /** A kubeconfig file of this cluster for a client certificate; returns its path. */
  async writeKubeconfig(name: string, user: IssuedCertificate): Promise<string> {
    await writeFile(this.file(`${name}.crt`), user.certPem, { mode: 0o600 });
    await writeFile(this.file(`${name}.key`), user.keyPem, { mode: 0o600 });
    const file = this.file(`${name}.kubeconfig`);
    await writeFile(file, kubeconfigYaml(this.server, this.file('ca.crt'), this.file(`${name}.crt`), this.file(`${name}.key`)), { mode: 0o600 });
    return file;
  }

  private async writeCredentials(ipAddresses: string[]): Promise<void> {
    const serving = await issueCertificate(this.ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
      ipAddresses: [...new Set(['127.0.0.1', ...ipAddresses])],
      usage: 'server',
      validForMs: day,
    });
    const admin = await this.issueClientCertificate('admin', ['system:masters']);
    this.admin = admin;
    // How the API server authenticates to kubelets (logs, exec).
    const kubeletClient = await this.issueClientCertificate('kube-apiserver-kubelet-client', ['system:masters']);
    const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const files: Record<string, string> = {
      'ca.crt': this.ca.certPem,
      'apiserver.crt': serving.certPem,
      'apiserver.key': serving.keyPem,
      'kubelet-client.crt': kubeletClient.certPem,
      'kubelet-client.key': kubeletClient.keyPem,
      'sa.key': serviceAccountKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      'sa.pub': serviceAccountKey.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
    for (const [name, content] of Object.entries(files)) await writeFile(this.file(name), content, { mode: 0o600 });
    await this.writeKubeconfig('admin', admin);
  }

  private async startEtcd(port: number, peerPort: number): Promise<void> {
    const client = `http://127.0.0.1:${port}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const etcd = this.startProcess('etcd', await binary('etcd'), [
      '--name=test', `--data-dir=${this.file('etcd-data')}`,
      `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=test=${peer}`,
      '--unsafe-no-fsync', '--log-level=warn',
    ]);
    await this.waitHealthy(etcd, `${client}/health`);
  }

  private async startApiServer(port: number, etcdPort: number, options: ControlPlaneOptions): Promise<void> {
    const address = new URL(this.server).hostname;
    const apiserver = this.startProcess('kube-apiserver', await binary('kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--cert-dir=${this.file('apiserver-certs')}`,
      `--tls-cert-file=${this.file('apiserver.crt')}`, `--tls-private-key-file=${this.file('apiserver.key')}`,
      `--client-ca-file=${this.file('ca.crt')}`,
      `--secure-port=${port}`, `--bind-address=${address}`, `--advertise-address=${address}`,
      // Since 1.37 a loopback address may not back the `kubernetes` Service's endpoints; nothing
      // here reaches the API server through that Service.
      ...(address.startsWith('127.') ? ['--endpoint-reconciler-type=none'] : []),
      `--service-cluster-ip-range=${options.serviceCidr ?? defaultServiceCidr}`,
      // Webhooks reached by endpoint IP (no route to Service IPs from the host without kube-proxy),
      // kubelets by their InternalIP (a node name would go to the host's resolver).
      '--enable-aggregator-routing=true', '--kubelet-preferred-address-types=InternalIP',
      `--kubelet-client-certificate=${this.file('kubelet-client.crt')}`, `--kubelet-client-key=${this.file('kubelet-client.key')}`,
      '--authorization-mode=Node,RBAC', '--allow-privileged=true',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${this.file('sa.pub')}`, `--service-account-signing-key-file=${this.file('sa.key')}`,
      ...(options.serviceAccountAdmission ? [] : ['--disable-admission-plugins=ServiceAccount']),
    ]);
    await this.waitHealthy(apiserver, `${this.server}/readyz`);
  }

  /** GET with the admin client certificate; resolves to the status code, 0 when unreachable. */
  private httpGet(url: string): Promise<number> {
    return new Promise((resolve) => {
      const done = (res: http.IncomingMessage): void => {
        res.resume();
        resolve(res.statusCode ?? 0);
      };
      const req = url.startsWith('https:')
        ? https.get(url, { ca: this.ca.certPem, cert: this.admin?.certPem, key: this.admin?.keyPem, rejectUnauthorized: url.startsWith(this.server) }, done)
        : http.get(url, done);
      req.setTimeout(5_000, () => {
        req.destroy();
      });
      req.on('error', () => {
        resolve(0);
      });
    });
  }
}

const defaultServiceCidr = '10.0.0.0/24';

/** The first usable address of an IPv4 CIDR: the `kubernetes` Service's cluster IP. */
function firstServiceIp(cidr: string): string {
  const octets = (cidr.split('/')[0] ?? '').split('.').map(Number);
  octets[3] = (octets[3] ?? 0) + 1;
  return octets.join('.');
}

function kubeconfigYaml(server: string, caFile: string, certFile: string, keyFile: string): string {
  return `apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: ${server}
      certificate-authority: ${caFile}
users:
  - name: admin
    user:
      client-certificate: ${certFile}
      client-key: ${keyFile}
contexts:
  - name: test
    context: {cluster: test, user: admin}
current-context: test
`;
}

/**
 * Starts a control plane before the suite's tests and stops it after them (also when starting
 * failed half-way). Returns an accessor for use inside tests and later hooks.
 */
export function controlPlaneForSuite(options: ControlPlaneOptions = {}): () => ControlPlane {
  let plane: ControlPlane | undefined;
  beforeAll(async () => {
    plane = await ControlPlane.start(options);
  }, 300_000);
  afterAll(async () => {
    await plane?.stop();
  });
  return () => {
    if (!plane) throw new Error('the control plane did not start');
    return plane;
  };
}
