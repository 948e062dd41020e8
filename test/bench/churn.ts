// The churn benchmark (npm run bench:churn): a day of pods coming and going, accelerated. The
// built operator runs as installed (the bundle's ServiceAccount, its Deployment's memory limit
// and NODE_OPTIONS) against a real API server and the fake AWS, and each cycle churns pods of
// both identity modes: new pods registered and deleted, pods replaced under the same name, pods
// refused (in Pod mode by a role AWS refuses, onRevocation: Evict), a ServiceAccount and role of
// its own, and products made and deleted with pods of their own. After each cycle, with its pods
// gone and the machine quiet, it has V8 collect garbage (through the inspector) and reads the
// operator's heap, RSS, anonymous RSS and cgroup memory. It prints them per cycle, their slopes
// in MiB per 10,000 pods churned (after the warm-up cycles), and whether RSS stayed flat.
//   npm run bench:churn -- --cycles 20 --pods 500
import os from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { annotations, productLabel } from '../../src/api/marketplace-product.js';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { FakeAws } from '../fake-aws/server.js';
import { ApiHttp } from '../support/api-http.js';
import { managerRuntime } from '../support/bundle.js';
import { Cgroup, parseBytes, residentBytes } from '../support/cgroup.js';
import { benchPreamble, numberFlag } from '../support/bench-cli.js';
import { ControlPlane } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess } from '../support/operator.js';
import { productManifest } from '../support/products.js';
import { freePort } from '../support/wait.js';

const usage = `Usage: npm run bench:churn -- [flags]
  --cycles N           churn cycles (20)
  --warm-up N          first cycles left out of the slopes: caches, JIT and heap sizing settle (3)
  --pods N             new labelled pods per cycle, half in each identity mode (500)
  --replaced N         pods deleted and created again under the same name each cycle (50)
  --refused N          pods per cycle of a role AWS refuses (Pod mode, onRevocation: Evict) (20)
  --products N         products made and deleted per cycle, 5 pods each (2)
  --aws-latency-ms N   how long the fake AWS takes to answer (20)
  --concurrency N      creates in flight at once (16)
  --memory-limit Q     memory cgroup limit of the operator (the bundle's Deployment limit)
  --threshold-mib N    flat: RSS grows by at most this many MiB per 10,000 pods churned (4)
  --snapshots DIR      write heap snapshots of the operator after the warm-up and after the last
                       cycle to DIR (to compare in Chrome DevTools: what the churn left behind);
                       taking one raises RSS by about 100 MiB for good, so RSS slopes only compare
                       between runs without it
The operator runs with the environment the bundle's Deployment sets, plus --inspect on a loopback
port (garbage collection before each sample). Exit code 0 when flat, 1 when not.
`;

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '20' },
    'warm-up': { type: 'string', default: '3' },
    pods: { type: 'string', default: '500' },
    replaced: { type: 'string', default: '50' },
    refused: { type: 'string', default: '20' },
    products: { type: 'string', default: '2' },
    'aws-latency-ms': { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '16' },
    'memory-limit': { type: 'string' },
    'threshold-mib': { type: 'string', default: '4' },
    snapshots: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
benchPreamble('bench:churn', usage, values.help);
const number = (name: keyof typeof values): number => numberFlag(values, name, usage);
const runtime = managerRuntime();
const settings = {
  cycles: number('cycles'),
  warmUp: number('warm-up'),
  pods: number('pods'),
  replaced: number('replaced'),
  refused: number('refused'),
  products: number('products'),
  awsLatencyMs: number('aws-latency-ms'),
  concurrency: Math.max(1, number('concurrency')),
  memoryLimitBytes: parseBytes(values['memory-limit'] ?? runtime.memoryLimit),
  thresholdMib: number('threshold-mib'),
};
if (settings.cycles - settings.warmUp < 3) {
  process.stderr.write('--cycles must leave at least 3 cycles after --warm-up for a slope\n');
  process.exit(2);
}

const namespace = 'churn';
const productCode = 'prod-churn0001';
const account = '123456789012';
const role = (name: string): string => `arn:aws:iam::${account}:role/${name}`;
const cycleLabel = 'bench.churn/cycle';
const started = Date.now();
const log = (line: string): void => {
  process.stderr.write(`[churn ${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${line}\n`);
};

/** The verdict of every labelled pod of the namespace by uid, from a watch; a deleted pod leaves it. */
class Verdicts {
  readonly byUid = new Map<string, string | undefined>();
  private stream: { stop: () => void } | undefined;

  async start(api: ApiHttp): Promise<void> {
    const list = JSON.parse((await api.ok('GET', `/api/v1/namespaces/${namespace}/pods?limit=1`)).body) as { metadata: { resourceVersion: string } };
    this.stream = api.watch(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(productLabel)}`, list.metadata.resourceVersion, (type, object) => {
      const pod = object as { metadata: { uid: string; annotations?: Record<string, string> } };
      if (type === 'DELETED') this.byUid.delete(pod.metadata.uid);
      else this.byUid.set(pod.metadata.uid, pod.metadata.annotations?.[annotations.status]);
    });
  }

  /** Resolves once every pod of `uids` has a verdict (or, with `gone`, has been deleted). */
  async until(uids: readonly string[], what: 'verdict' | 'gone', alive: () => boolean, timeoutMs = 600_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const missing = (): number => uids.filter((uid) => (what === 'gone' ? this.byUid.has(uid) : this.byUid.get(uid) === undefined)).length;
    for (let left = missing(); left > 0; left = missing()) {
      if (!alive()) throw new Error(`the operator exited with ${left} pods still waiting for their ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out with ${left} of ${uids.length} pods still waiting for their ${what}`);
      await sleep(200);
    }
  }

  stop(): void {
    this.stream?.stop();
  }
}

/** One session of the operator's inspector: a full garbage collection and the heap's size after it. */
class Inspector {
  private next = 1;
  private readonly pending = new Map<number, (result: unknown) => void>();
  private chunks: string[] = [];

  private constructor(private readonly socket: WebSocket) {
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; method?: string; params?: { chunk?: string } };
      if (message.method === 'HeapProfiler.addHeapSnapshotChunk') this.chunks.push(message.params?.chunk ?? '');
      if (message.id !== undefined) this.pending.get(message.id)?.(message.result);
      if (message.id !== undefined) this.pending.delete(message.id);
    });
  }

  static async connect(port: number): Promise<Inspector> {
    for (let attempt = 0; ; attempt++) {
      try {
        const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
        if (!target) throw new Error('no inspector target');
        const socket = new WebSocket(target.webSocketDebuggerUrl);
        await new Promise((resolve, reject) => {
          socket.addEventListener('open', resolve, { once: true });
          socket.addEventListener('error', reject, { once: true });
        });
        return new Inspector(socket);
      } catch (error) {
        if (attempt >= 50) throw error;
        await sleep(200);
      }
    }
  }

  private call<T>(method: string, params: object = {}): Promise<T> {
    const id = this.next++;
    const answer = new Promise<T>((resolve) => {
      this.pending.set(id, (result) => {
        resolve(result as T);
      });
    });
    this.socket.send(JSON.stringify({ id, method, params }));
    return answer;
  }

  /** Heap in use after two full collections (the second takes what the first's finalizers freed). */
  async heapAfterGc(): Promise<number> {
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
    return (await this.call<{ usedSize: number }>('Runtime.getHeapUsage')).usedSize;
  }

  /** Writes a heap snapshot (for Chrome DevTools' Memory tab, or a comparison of two) to `file`. */
  async heapSnapshot(file: string): Promise<void> {
    this.chunks = [];
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    await writeFile(file, this.chunks.join(''));
    this.chunks = [];
  }

  close(): void {
    this.socket.close();
  }
}

interface Sample {
  cycle: number;
  churned: number;
  seconds: number;
  heap: number;
  rss: number;
  anonymous: number;
  cgroup: number;
}

/** Creates refused because the API server's call to the webhook failed in transport (the pod was not created), retried. */
let webhookTransportFailures = 0;

/** Creates the pods body(i) for i in [0, count), `concurrency` at a time; resolves to their uids. */
async function create(api: ApiHttp, count: number, body: (index: number) => object): Promise<string[]> {
  const uids: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const pod = body(next++);
      let response = await api.request('POST', `/api/v1/namespaces/${namespace}/pods`, pod);
      for (let retry = 0; retry < 3 && response.status === 500 && response.body.includes('failed to call webhook'); retry++) {
        webhookTransportFailures++;
        response = await api.request('POST', `/api/v1/namespaces/${namespace}/pods`, pod);
      }
      if (response.status !== 201) throw new Error(`creating a pod: HTTP ${response.status} ${response.body.slice(0, 500)}`);
      uids.push((JSON.parse(response.body) as { metadata: { uid: string } }).metadata.uid);
    }
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  return uids;
}

function pod(name: string, product: string, cycle: number, serviceAccount?: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { [productLabel]: product, [cycleLabel]: String(cycle) } },
    spec: {
      ...(serviceAccount ? { serviceAccountName: serviceAccount } : {}),
      containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
    },
  };
}

async function createProduct(api: ApiHttp, name: string, spec: Record<string, unknown>): Promise<void> {
  const manifest = productManifest(name, { productCode, ...spec });
  await api.ok('POST', `/apis/marketplace.entitlements.io/v1alpha1/namespaces/${namespace}/marketplaceproducts`, { ...manifest, metadata: { name, namespace } });
}

async function createServiceAccount(api: ApiHttp, name: string, roleArn: string): Promise<void> {
  await api.ok('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { metadata: { name, annotations: { [roleArnAnnotation]: roleArn } } });
}

/** One cycle's churn: everything it creates is gone again when it resolves, but the replaced pods. */
async function churnCycle(api: ApiHttp, verdicts: Verdicts, cycle: number, publicKeyPem: string, alive: () => boolean): Promise<number> {
  const workload = `workload-${cycle}`;
  const denied = `denied-${cycle}`;
  await createServiceAccount(api, workload, role(`churn-${cycle}`));
  await createServiceAccount(api, denied, role(`denied-${cycle}`));
  const temporary = Array.from({ length: settings.products }, (_, i) => `temporary-${cycle}-${i}`);
  for (const name of temporary) await createProduct(api, name, { publicKey: { pem: publicKeyPem }, identity: { mode: 'Operator' } });
  // Replaced under the same name: the previous cycle's go, and come back with a new uid.
  const stable = await api.ok('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent('bench.churn/stable')}`);
  const previous = (JSON.parse(stable.body) as { items: { metadata: { uid: string } }[] }).items.map((p) => p.metadata.uid);
  await api.ok('DELETE', `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent('bench.churn/stable')}&gracePeriodSeconds=0`);
  await verdicts.until(previous, 'gone', alive);
  const half = Math.ceil(settings.pods / 2);
  const uids = [
    ...(await create(api, settings.pods, (i) => (i < half ? pod(`operator-${cycle}-${i}`, 'operator-mode', cycle) : pod(`pod-${cycle}-${i}`, 'pod-mode', cycle, workload)))),
    ...(await create(api, settings.refused, (i) => pod(`refused-${cycle}-${i}`, 'pod-mode', cycle, denied))),
    ...(await create(api, settings.products * 5, (i) => pod(`temporary-${cycle}-${i}`, temporary[i % temporary.length] ?? '', cycle))),
  ];
  const replaced = await create(api, settings.replaced, (i) => {
    const body = pod(`stable-${i}`, i % 2 === 0 ? 'operator-mode' : 'pod-mode', cycle, i % 2 === 0 ? undefined : workload) as { metadata: { labels: Record<string, string> } };
    body.metadata.labels['bench.churn/stable'] = 'true';
    return body;
  });
  await verdicts.until([...uids, ...replaced], 'verdict', alive);
  await api.ok('DELETE', `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(`${cycleLabel}=${cycle},!bench.churn/stable`)}&gracePeriodSeconds=0`);
  for (const name of temporary) await api.ok('DELETE', `/apis/marketplace.entitlements.io/v1alpha1/namespaces/${namespace}/marketplaceproducts/${name}`);
  await verdicts.until(uids, 'gone', alive);
  await api.ok('DELETE', `/api/v1/namespaces/${namespace}/serviceaccounts/${denied}`);
  // The workload's ServiceAccount stays while its replaced pods run; the one of two cycles ago goes.
  if (cycle >= 2) await api.request('DELETE', `/api/v1/namespaces/${namespace}/serviceaccounts/workload-${cycle - 2}`);
  return uids.length + replaced.length;
}

/** Waits until the machine is quiet (under a quarter busy for a second, at most 30 s). */
async function quiet(): Promise<void> {
  const busy = async (): Promise<number> => {
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / 100;
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const before = await busy();
    await sleep(1_000);
    if ((await busy()) - before < 0.25 * os.cpus().length) return;
  }
}

/** Least-squares slope of y over x. */
function slope(points: readonly [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

async function run(): Promise<Sample[]> {
  const plane = await ControlPlane.start();
  const api = new ApiHttp(plane);
  const verdicts = new Verdicts();
  let fake: FakeAws | undefined;
  let cgroup: Cgroup | undefined;
  let inspector: Inspector | undefined;
  try {
    log('control plane up; installing the bundle');
    fake = await FakeAws.start({
      serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')],
      products: { [productCode]: { delayMs: settings.awsLatencyMs, notEntitledRoles: Array.from({ length: settings.cycles }, (_, c) => role(`denied-${c}`)) } },
    });
    await installBundle(plane, 'webhook');
    const kubeconfig = await serviceAccountKubeconfig(plane);
    await api.ok('POST', '/api/v1/namespaces', { metadata: { name: namespace } });
    await createProduct(api, 'operator-mode', { publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' } });
    await createProduct(api, 'pod-mode', { publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Pod' }, onRevocation: 'Evict' });
    const group = (cgroup = await Cgroup.create('entitlement-operator-churn', { memoryBytes: settings.memoryLimitBytes }));
    const inspectPort = await freePort();
    const nodeOptions = `${runtime.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:${inspectPort}`.trim();
    log(`starting the operator in cgroup ${group.name} (memory limit ${Math.round(settings.memoryLimitBytes / 2 ** 20)} MiB, NODE_OPTIONS ${nodeOptions})`);
    const operator = await startOperatorProcess(plane, fake, kubeconfig, { launch: (command, args) => group.wrap(command, args), env: { ...runtime.env, NODE_OPTIONS: nodeOptions, LOG_LEVEL: 'warn' } });
    const [pid] = await group.pids();
    if (pid === undefined) throw new Error('no process in the operator cgroup');
    inspector = await Inspector.connect(inspectPort);
    await verdicts.start(api);
    const alive = (): boolean => operator.proc.running;
    const samples: Sample[] = [];
    let churned = 0;
    for (let cycle = 0; cycle < settings.cycles; cycle++) {
      const cycleStarted = Date.now();
      churned += await churnCycle(api, verdicts, cycle, fake.publicKeyPem, alive);
      await quiet();
      const heap = await inspector.heapAfterGc();
      const { rss, anonymous } = await residentBytes(pid);
      const usage = await group.usage();
      if (usage.oomKills > 0 || !alive()) throw new Error(`the operator was OOM-killed or exited in cycle ${cycle} (OOM kills ${usage.oomKills})\n${operator.proc.logTail(10)}`);
      const sample = { cycle, churned, seconds: (Date.now() - cycleStarted) / 1000, heap, rss, anonymous, cgroup: usage.memoryBytes };
      samples.push(sample);
      if (values.snapshots && (cycle === settings.warmUp - 1 || cycle === settings.cycles - 1)) await inspector.heapSnapshot(path.join(values.snapshots, `operator-cycle-${cycle}.heapsnapshot`));
      log(`cycle ${cycle}: ${churned} pods churned, heap ${mib(heap)}, RSS ${mib(rss)} (anonymous ${mib(anonymous)}), cgroup ${mib(usage.memoryBytes)}`);
    }
    return samples;
  } finally {
    inspector?.close();
    verdicts.stop();
    api.close();
    await plane.stop();
    await cgroup?.remove();
    await fake?.close();
  }
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

const samples = await run();
const measured = samples.slice(settings.warmUp);
const perTenThousand = (field: 'heap' | 'rss' | 'anonymous' | 'cgroup'): number => slope(measured.map((s) => [s.churned, s[field] / 2 ** 20])) * 10_000;
let out = `\nChurn benchmark (${os.cpus().length} cores, AWS latency ${settings.awsLatencyMs} ms, memory limit ${mib(settings.memoryLimitBytes)}, NODE_OPTIONS ${runtime.env.NODE_OPTIONS ?? ''})\n`;
out += `  each cycle: ${settings.pods} new pods (half Operator mode, half Pod mode with a ServiceAccount and role of the cycle), ${settings.refused} refused (Pod mode, a role AWS refuses, onRevocation: Evict), ${settings.replaced} replaced under the same name, ${settings.products} products made and deleted with 5 pods each\n\n`;
out += '  cycle  pods churned  seconds   heap after GC   RSS         anonymous   cgroup\n';
for (const s of samples) {
  out += `  ${String(s.cycle).padStart(5)}  ${String(s.churned).padStart(12)}  ${s.seconds.toFixed(0).padStart(7)}   ${mib(s.heap).padStart(13)}   ${mib(s.rss).padStart(10)}  ${mib(s.anonymous).padStart(10)}  ${mib(s.cgroup).padStart(10)}\n`;
}
const rssSlope = perTenThousand('rss');
out += `\nSlopes over cycles ${settings.warmUp}-${settings.cycles - 1} (${(measured.at(-1)?.churned ?? 0) - (measured[0]?.churned ?? 0)} pods), MiB per 10,000 pods churned:\n`;
out += `  heap after GC ${perTenThousand('heap').toFixed(2)}, RSS ${rssSlope.toFixed(2)}, anonymous ${perTenThousand('anonymous').toFixed(2)}, cgroup ${perTenThousand('cgroup').toFixed(2)}\n`;
if (webhookTransportFailures > 0) out += `\nCreates retried after the API server's call to the webhook failed in transport (connection reset): ${webhookTransportFailures}\n`;
const flat = rssSlope <= settings.thresholdMib;
out += `\n${flat ? 'FLAT' : 'NOT FLAT'}: RSS grows ${rssSlope.toFixed(2)} MiB per 10,000 pods churned (threshold ${settings.thresholdMib})\n`;
process.stdout.write(out);
process.exit(flat ? 0 : 1);
