// Hourly metering at the hour boundary (npm run bench:hour-boundary): thousands of running pods of
// a metered product whose hour is reported the moment it closes (in Pod mode two MeterUsage calls
// a pod, each signed with the pod's own credentials), while new pods of the product start. The
// built operator as installed (policy mode, the bundle's ServiceAccount, the Deployment's memory
// limit), a real API server, the fake AWS answering every call after a set latency, and one
// simulated clock, running at the real rate, that the operator and the fake share, set so that
// the hour closes once the pods run. In each identity mode (each on a control plane of its own)
// it measures how long after the hour's close its last record is accepted, and how much longer
// pods take to start (create → gate removed) while the hour is reported than in a quiet moment
// just before; then prints both modes' figures and the targets met or missed, line by line.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { productLabel } from '../../src/api/marketplace-product.js';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { formatSimulatedClock, simulatedClock, type SimulatedClockSetting } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { FakeAws } from '../fake-aws/server.js';
import { ApiHttp } from '../support/api-http.js';
import { managerRuntime } from '../support/bundle.js';
import { Cgroup, parseBytes } from '../support/cgroup.js';
import { benchPreamble, numberFlag } from '../support/bench-cli.js';
import { ControlPlane } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess, type OperatorProcess } from '../support/operator.js';
import { productManifest } from '../support/products.js';
import { createMany, VerdictWatch } from '../support/scale.js';

const usage = `Usage: npm run bench:hour-boundary -- [flags]
  --identity MODES      Pod, Operator, or both (both: Pod mode, then Operator mode)
  --pods N              running pods of the metered product, two dimensions each (5000)
  --probe-rate N        pods started per second to measure pod starts (10)
  --probe-seconds N     how long pods start in the quiet moment before the boundary, and at least
                        how long from 2 s before it while the hour is reported (30)
  --setup-seconds N     from the operator's start to the hour's close (Pod 480, Operator 240)
  --restart-before N    restart the operator N s before the hour closes (0: no restart; 90). A new
                        process holds no pod's credentials, so every pod's records need a
                        TokenRequest and an STS exchange, as each hour does once the credentials
                        of the hour before have expired
  --report-timeout N    how long after the hour's close to wait for its last record (900)
  --aws-latency-ms N    how long the fake AWS takes to answer each call (20)
  --memory-limit Q      memory cgroup limit of the operator (the bundle's Deployment limit)
The operator runs with the environment the bundle's Deployment sets (NODE_OPTIONS, ...); OPERATOR_NODE_OPTIONS
replaces it (for example '--cpu-prof --cpu-prof-dir=/tmp/prof' to profile it; the run prints the boundary's
epoch milliseconds, to cut the profile at).
Targets: every record of the hour accepted within 10 minutes of its close; no pod start delayed by more
than 1 s while it is reported (its create → gate removed, less the quiet moment's median).
`;

const { values } = parseArgs({
  options: {
    identity: { type: 'string', default: 'both' },
    pods: { type: 'string', default: '5000' },
    'probe-rate': { type: 'string', default: '10' },
    'probe-seconds': { type: 'string', default: '30' },
    'setup-seconds': { type: 'string' },
    'restart-before': { type: 'string', default: '90' },
    'report-timeout': { type: 'string', default: '900' },
    'aws-latency-ms': { type: 'string', default: '20' },
    'memory-limit': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
benchPreamble('bench:hour-boundary', usage, values.help);
type Identity = 'Pod' | 'Operator';
const modes: Identity[] | undefined = { both: ['Pod', 'Operator'] as Identity[], Pod: ['Pod'] as Identity[], Operator: ['Operator'] as Identity[] }[values.identity];
const number = (name: 'pods' | 'probe-rate' | 'probe-seconds' | 'setup-seconds' | 'restart-before' | 'report-timeout' | 'aws-latency-ms', fallback = 0): number => numberFlag(values, name, usage, fallback);
if (!modes) {
  process.stderr.write(`--identity: ${values.identity} is not Pod, Operator or both\n\n${usage}`);
  process.exit(2);
}
const pods = number('pods');
const probeRate = number('probe-rate');
const probeSeconds = number('probe-seconds');
const restartBeforeSeconds = number('restart-before');
const reportTimeoutMs = number('report-timeout') * 1000;
const awsLatencyMs = number('aws-latency-ms');
const runtime = managerRuntime();
const memoryLimitBytes = parseBytes(values['memory-limit'] ?? runtime.memoryLimit);
const namespace = 'bench';
const productCode = 'boundary-code';
/** The targets of issue 22. */
const lastRecordTargetMs = 10 * 60_000;
const startDelayTargetMs = 1_000;
const log = (line: string): void => void process.stderr.write(`[hour-boundary ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

function podBody(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { [productLabel]: 'app' } },
    spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '500m', memory: '256Mi' } } }] },
  };
}

/** Pods created at a steady rate, and their start latency (create → gate removed) from the verdict watch. */
class StartTimes {
  readonly created = new Map<string, number>();

  constructor(private readonly watch: VerdictWatch) {}

  /** Creates one pod every 1/rate s from now, named prefix-N, for at least minSeconds and then until `done`; returns their names. */
  async probe(api: ApiHttp, prefix: string, minSeconds: number, done: () => boolean = () => true): Promise<string[]> {
    const names: string[] = [];
    const started = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const index = next++;
        const due = started + (index * 1000) / probeRate;
        if (due - started >= minSeconds * 1000 && done()) return;
        if (due > Date.now()) await sleep(due - Date.now());
        const name = `${prefix}-${String(index).padStart(5, '0')}`;
        names.push(name);
        this.created.set(name, Date.now());
        await api.ok('POST', `/api/v1/namespaces/${namespace}/pods`, podBody(name));
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    return names;
  }

  latencies(names: readonly string[]): number[] {
    return names.map((n) => (this.watch.entitled.get(n) ?? Number.NaN) - (this.created.get(n) ?? 0)).sort((a, b) => a - b);
  }

  slowest(names: readonly string[], count: number): [string, number][] {
    return names.map((n): [string, number] => [n, (this.watch.entitled.get(n) ?? Number.POSITIVE_INFINITY) - (this.created.get(n) ?? 0)]).sort((x, y) => y[1] - x[1]).slice(0, count);
  }
}

/** Reports every pod Running, as a kubelet would (there is none here), 16 at a time. */
async function runningAll(api: ApiHttp): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pods) {
      const name = `running-${String(next++).padStart(5, '0')}`;
      await api.ok('PATCH', `/api/v1/namespaces/${namespace}/pods/${name}/status`, { status: { phase: 'Running' } }, 'application/merge-patch+json');
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  missing: number;
}

function summary(samples: readonly number[]): Summary {
  const known = samples.filter((x) => Number.isFinite(x));
  const at = (q: number): number => known[Math.min(known.length - 1, Math.floor(q * known.length))] ?? Number.NaN;
  return { count: samples.length, p50: at(0.5), p99: at(0.99), max: known.at(-1) ?? Number.NaN, missing: samples.length - known.length };
}

/** What one identity mode's run measured. */
interface ModeResult {
  identity: Identity;
  boundaryMs: number;
  expected: number;
  accepted: number;
  calls: number;
  /** From the hour's close to the last record accepted (NaN: not all were). */
  lastRecordMs: number;
  quiet: Summary;
  during: Summary;
  /** The slowest pod start while the hour was reported, less the quiet moment's median. */
  worstDelayMs: number;
  slowest: string;
  running: boolean;
  memory: Memory;
}

/** A control plane, the fake AWS, the bundle, the product and its ServiceAccount: what a mode's run stands on. */
class Stage {
  fake: FakeAws | undefined;
  operator: OperatorProcess | undefined;
  readonly api: ApiHttp;
  readonly watch = new VerdictWatch(log, namespace);

  private constructor(
    readonly plane: ControlPlane,
    readonly cgroup: Cgroup,
    readonly clock: SimulatedClockSetting,
    /** When the hour closes, in real epoch ms. */
    readonly boundaryReal: number,
  ) {
    this.api = new ApiHttp(plane);
  }

  static async start(setupSeconds: number): Promise<Stage> {
    const plane = await ControlPlane.start();
    const cgroup = await Cgroup.create('entitlement-operator-hour', { memoryBytes: memoryLimitBytes });
    // The hour closes setupSeconds from now; the clock starts in the hour before it.
    const boundaryReal = Date.now() + setupSeconds * 1000;
    const boundary = (Math.floor(Date.now() / hourMs) + 2) * hourMs;
    return new Stage(plane, cgroup, { startMs: boundary - setupSeconds * 1000, originMs: boundaryReal - setupSeconds * 1000, rate: 1 }, boundaryReal);
  }

  async install(identity: Identity): Promise<FakeAws> {
    const { plane, api } = this;
    const fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')], clock: simulatedClock(this.clock), products: { [productCode]: { delayMs: awsLatencyMs } } });
    this.fake = fake;
    await installBundle(plane, 'policy');
    await api.ok('POST', '/api/v1/namespaces', { metadata: { name: namespace } });
    await api.ok('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { metadata: { name: 'app', annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/paid-workload' } } });
    const product = productManifest('app', { productCode, publicKey: { pem: fake.publicKeyPem }, identity: { mode: identity }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }] } });
    await api.ok('POST', `/apis/marketplace.entitlements.io/v1alpha1/namespaces/${namespace}/marketplaceproducts`, { ...product, metadata: { name: 'app', namespace } });
    await this.startOperator();
    return fake;
  }

  async startOperator(): Promise<OperatorProcess> {
    if (!this.fake) throw new Error('no fake AWS');
    this.operator = await startOperatorProcess(this.plane, this.fake, await serviceAccountKubeconfig(this.plane), {
      admission: 'policy',
      launch: (command, args) => this.cgroup.wrap(command, args),
      // The Deployment's environment (NODE_OPTIONS); OPERATOR_NODE_OPTIONS replaces it (to profile, say).
      env: { ...runtime.env, ...(process.env.OPERATOR_NODE_OPTIONS !== undefined ? { NODE_OPTIONS: process.env.OPERATOR_NODE_OPTIONS } : {}), LOG_LEVEL: 'warn', SIMULATED_CLOCK: formatSimulatedClock(this.clock) },
    });
    return this.operator;
  }

  get running(): boolean {
    return this.operator?.proc.running ?? false;
  }

  /** The MeterUsage calls since `from` (an index into the fake's calls), and those accepted (sent now, or held already). */
  meterCalls(from: number): { calls: number; accepted: number; lastMs: number } {
    const calls = (this.fake?.calls('MeterUsage') ?? []).slice(from);
    const accepted = calls.filter((c) => c.status === 200 || c.errorCode === 'DuplicateRequestException');
    return { calls: calls.length, accepted: accepted.length, lastMs: Math.max(...accepted.map((c) => Date.parse(c.time))) };
  }

  async stop(): Promise<void> {
    this.watch.stop();
    this.api.close();
    await this.plane.stop();
    await this.cgroup.remove();
    await this.fake?.close();
  }
}

/** The operator's largest RSS and heap in use (MiB) while it reported, from its metrics. */
interface Memory {
  rssMiB: number;
  heapMiB: number;
}

/** Waits for the last of `expected` records after the boundary (or the timeout), polling the fake, and the operator's memory meanwhile. */
async function awaitRecords(stage: Stage, from: number, expected: number): Promise<Memory> {
  const deadline = stage.boundaryReal + reportTimeoutMs;
  const memory: Memory = { rssMiB: 0, heapMiB: 0 };
  let nextLog = Date.now() + 30_000;
  while (stage.meterCalls(from).accepted < expected && Date.now() < deadline && stage.running) {
    await sleep(1_000);
    const metric = (name: string): Promise<number> => stage.operator?.metric(name).catch(() => 0) ?? Promise.resolve(0);
    const [rss, heap] = await Promise.all([metric('process_resident_memory_bytes'), metric('nodejs_heap_size_used_bytes')]);
    memory.rssMiB = Math.max(memory.rssMiB, rss / 2 ** 20);
    memory.heapMiB = Math.max(memory.heapMiB, heap / 2 ** 20);
    if (Date.now() > nextLog) {
      nextLog += 30_000;
      log(`${stage.meterCalls(from).accepted} of ${expected} records accepted`);
    }
  }
  return memory;
}

async function runMode(identity: Identity): Promise<ModeResult> {
  const stage = await Stage.start(number('setup-seconds', identity === 'Pod' ? 480 : 240));
  const { api, watch, boundaryReal } = stage;
  const times = new StartTimes(watch);
  try {
    const fake = await stage.install(identity);
    log(`${identity} mode: ${pods} pods, entitled, then Running; the hour closes at ${new Date(boundaryReal).toISOString()} (${boundaryReal})`);
    await watch.start(api);
    await createMany(api, namespace, 0, pods, { concurrency: 16 }, (i) => podBody(`running-${String(i).padStart(5, '0')}`));
    await watch.until(pods, 900_000, () => stage.running);
    await runningAll(api);
    const quietAt = boundaryReal - (probeSeconds + 12) * 1000;
    const restartAt = Math.min(quietAt - 5_000, boundaryReal - restartBeforeSeconds * 1000);
    if (Date.now() > (restartBeforeSeconds > 0 ? restartAt : quietAt)) throw new Error(`the pods were ready only ${Math.round((boundaryReal - Date.now()) / 1000)} s before the hour closes: raise --setup-seconds`);
    if (restartBeforeSeconds > 0) {
      await sleep(restartAt - Date.now());
      log('restarting the operator: the new process holds no credentials');
      await stage.operator?.proc.stop(30_000);
      await stage.startOperator();
      if (Date.now() > quietAt) throw new Error('the operator took too long to restart: raise --restart-before');
    }

    log(`quiet: ${probeSeconds * probeRate} pods at ${probeRate}/s`);
    await sleep(Math.max(0, quietAt - Date.now()));
    const quiet = await times.probe(api, 'quiet', probeSeconds);
    const from = fake.calls('MeterUsage').length;
    await sleep(Math.max(0, boundaryReal - 2_000 - Date.now()));
    const expected = identity === 'Pod' ? pods * 2 : 2;
    log(`during the report: pods at ${probeRate}/s from 2 s before the boundary until the hour's ${expected} records are in`);
    let reported = false;
    const during = times.probe(api, 'during', probeSeconds, () => reported);
    const memory = await awaitRecords(stage, from, expected);
    reported = true;
    const duringNames = await during;
    await watch.until(pods + quiet.length + duringNames.length, 60_000, () => stage.running).catch((error: unknown) => {
      log(String(error));
    });
    return { ...measured(stage, identity, times, quiet, duringNames, from, expected), memory };
  } finally {
    await stage.stop();
  }
}

function measured(stage: Stage, identity: Identity, times: StartTimes, quietNames: string[], duringNames: string[], from: number, expected: number): Omit<ModeResult, 'memory'> {
  const records = stage.meterCalls(from);
  const quiet = summary(times.latencies(quietNames));
  const during = summary(times.latencies(duringNames));
  const slowest = times.slowest(duringNames, 5).map(([name, ms]) => `${(((times.created.get(name) ?? 0) - stage.boundaryReal) / 1000).toFixed(1)} s: ${ms.toFixed(0)} ms`);
  return {
    identity,
    boundaryMs: stage.boundaryReal,
    expected,
    accepted: records.accepted,
    calls: records.calls,
    lastRecordMs: records.accepted >= expected ? records.lastMs - stage.boundaryReal : Number.NaN,
    quiet,
    during,
    worstDelayMs: during.missing > 0 ? Number.POSITIVE_INFINITY : during.max - quiet.p50,
    slowest: slowest.join(', '),
    running: stage.running,
  };
}

/** One mode's figures, printed as soon as its run ends. */
function modeReport(r: ModeResult): string {
  const line = (s: Summary): string => `${s.count} pods, p50 ${s.p50.toFixed(0)} ms, p99 ${s.p99.toFixed(0)} ms, max ${s.max.toFixed(0)} ms${s.missing ? `, ${s.missing} not started` : ''}`;
  return [
    `${r.identity} mode (the hour closed at epoch ms ${r.boundaryMs}):`,
    `  records: ${r.accepted} of ${r.expected} accepted (${r.calls} MeterUsage calls); the last ${Number.isFinite(r.lastRecordMs) ? `${(r.lastRecordMs / 1000).toFixed(1)} s after the hour closed` : `not within ${reportTimeoutMs / 1000} s`}`,
    `  pod start (create → gate removed), quiet moment before the boundary: ${line(r.quiet)}`,
    `  pod start while the hour is reported: ${line(r.during)}`,
    `  worst pod-start delay (slowest while reported, less the quiet median): ${r.worstDelayMs.toFixed(0)} ms; slowest (created at, from the boundary: latency): ${r.slowest}`,
    `  operator while it reported: RSS at most ${r.memory.rssMiB.toFixed(0)} MiB, heap in use at most ${r.memory.heapMiB.toFixed(0)} MiB; still running at the end: ${r.running}`,
    '',
  ].join('\n');
}

/** The targets, each mode's figure and verdict on one line. */
function targets(results: readonly ModeResult[]): string {
  const verdict = (met: boolean): string => (met ? 'met' : 'MISSED');
  const each = (figure: (r: ModeResult) => string, met: (r: ModeResult) => boolean): string => results.map((r) => `${r.identity} ${figure(r)} ${verdict(met(r))}`).join('; ');
  return [
    'targets:',
    `  every record within ${lastRecordTargetMs / 60_000} min of the hour's close: ${each((r) => (Number.isFinite(r.lastRecordMs) ? `${(r.lastRecordMs / 1000).toFixed(1)} s` : 'incomplete'), (r) => r.lastRecordMs <= lastRecordTargetMs)}`,
    `  no pod start delayed by more than ${startDelayTargetMs / 1000} s meanwhile: ${each((r) => `${r.worstDelayMs.toFixed(0)} ms`, (r) => r.worstDelayMs <= startDelayTargetMs)}`,
    `  operator running at the end: ${each((r) => String(r.running), (r) => r.running)}`,
    '',
  ].join('\n');
}

process.stdout.write(
  `hour boundary: ${pods} running pods (2 dimensions), AWS answering in ${awsLatencyMs} ms, operator memory limit ${Math.round(memoryLimitBytes / 2 ** 20)} MiB, ${restartBeforeSeconds > 0 ? `operator restarted ${restartBeforeSeconds} s before the close (no credentials held)` : 'no restart'}, environment ${JSON.stringify(runtime.env)}\n`,
);
const results: ModeResult[] = [];
for (const identity of modes) {
  const result = await runMode(identity);
  results.push(result);
  process.stdout.write(modeReport(result));
}
process.stdout.write(targets(results));
