// One scale run of the operator as it is installed: a real API server with the install bundle
// applied, the built operator running as the bundle's ServiceAccount inside a memory cgroup of
// the Deployment's limit, a fake AWS that answers RegisterUsage after a set latency, and
// thousands of pods created over HTTPS. Used by `npm run bench:cluster` (every figure) and by the
// integration suite (a short form that fails on an OOM kill or a restart).
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { annotations, productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { isGated } from '../../src/api/pod-state.js';
import { roleArnAnnotation, roleSessionName } from '../../src/aws/pod-identity.js';
import { FakeAws } from '../fake-aws/server.js';
import { ApiHttp } from './api-http.js';
import { Cgroup, residentBytes } from './cgroup.js';
import type { AdmissionMode } from './bundle.js';
import { ControlPlane } from './control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess, type OperatorProcess } from './operator.js';
import { productManifest } from './products.js';

/**
 * Admission under load is probed while this many bursts' worth of pods are gated, one after
 * another at the same rate: one burst gives too few serial probes for a p99 that means anything.
 */
export const underLoadRounds = 3;

export interface ScaleOptions {
  /** Labelled pods in the timed burst (and unlabelled pods in its baseline). */
  burstPods: number;
  /** Labelled pods known to the operator when its memory is read (at least (1 + underLoadRounds) × burstPods). */
  knownPods: number;
  /** Labelled pods in all, the ones after knownPods created at ratePerSecond. */
  totalPods: number;
  ratePerSecond: number;
  /** Creates in flight at once. */
  concurrency: number;
  awsLatencyMs: number;
  memoryLimitBytes: number;
  cpuLimit?: number;
  /** Serial server-side dry-run creates, half labelled, half not. */
  dryRuns: number;
  identity: 'Operator' | 'Pod';
  /** Who gates: the operator's webhook, or the policy bundle's MutatingAdmissionPolicy. */
  admission: AdmissionMode;
  /** Extra arguments and environment for the operator process. */
  operatorArgs?: string[];
  operatorEnv?: Record<string, string>;
  log: (line: string) => void;
}

export interface Quantiles {
  p50: number;
  p99: number;
  mean: number;
}

export interface ScaleResult {
  options: Omit<ScaleOptions, 'log'>;
  burst: {
    unlabelledSeconds: number;
    labelledSeconds: number;
    ratio: number;
    /**
     * The ratio the burst would have had if the operator's CPU were free, with the machine as busy:
     * the share of the machine's CPU up to the last gate removed that was not the operator's.
     * An estimate that holds while the machine is saturated (machineBusyShare near 1).
     */
    ratioWithoutOperatorCpu: number;
    operatorCpuSeconds: number;
    cpuMsPerPod: number;
    /** Pod patches and Event creates per pod of the burst. */
    writesPerPod: number;
    /** Status writes of the product during the burst (at most about one a second). */
    statusWrites: number;
    /** How busy the whole machine was during the burst (0..1 of all its cores). */
    machineBusyShare: number;
    /** CPU the whole machine, and this process (the fake AWS, the pod creator), spent in the burst. */
    machineCpuSeconds: number;
    harnessCpuSeconds: number;
    /** CPU of the API server, etcd and the rest of the machine per pod, in each burst. */
    controlPlaneMsPerPod: { labelled: number; unlabelled: number };
  };
  /**
   * The pods created at ratePerSecond after knownPods, on a machine that is not saturated: what
   * each cost, less what the operator and the rest spend idle (CPU seconds per second, measured
   * just before) over the phase's length.
   */
  paced?: { pods: number; seconds: number; idlePerSecond: { operator: number; controlPlane: number }; operatorCpuMsPerPod: number; controlPlaneMsPerPod: number };
  admission: {
    /** Client-side create latency, ms, for serial dry runs on a quiet cluster. */
    serial: { labelled: Quantiles; unlabelled: Quantiles; overheadP50: number; overheadP99: number };
    /** The same while another burst of labelled pods is being gated. */
    underLoad: { labelled: Quantiles; unlabelled: Quantiles; overheadP50: number; overheadP99: number; samples: number };
    /** The API server's own webhook histogram over that second burst. */
    apiServer: { calls: number; meanMs: number; p99UpperBoundMs: number };
    /** The operator's own answer times over that second burst (its webhook histogram). */
    operator: { calls: number; meanMs: number; p99UpperBoundMs: number };
  };
  memory: {
    rssAtKnownBytes: number;
    /** The anonymous part of that RSS: heap and buffers, without the mapped node binary. */
    anonymousAtKnownBytes: number;
    cgroupAtKnownBytes: number;
    rssAtEndBytes: number;
    peakCgroupBytes: number;
    oomKills: number;
  };
  survived: boolean;
  exitCode: number | null | undefined;
  pods: {
    created: number;
    entitled: number;
    notEntitled: number;
    registrationsOk: number;
    distinctNonces: number;
    duplicateRegistrations: number;
    /**
     * Successful RegisterUsage calls signed with credentials the fake STS issued for a token bound
     * to the very pod the call was made for (its role session names the pod), and how many pods
     * those were: in Pod identity, every call and every pod.
     */
    signedForItsPod: number;
    podsSignedFor: number;
  };
}

const namespace = 'bench';
const productName = 'paid';
const productCode = 'prod-bench0001';
const serviceAccount = 'paid-workload';

function quantiles(samples: readonly number[]): Quantiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p99: at(0.99), mean: sorted.reduce((sum, x) => sum + x, 0) / Math.max(1, sorted.length) };
}

function podBody(name: string, labelled: boolean, identity: ScaleOptions['identity']): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...(labelled ? { labels: { [productLabel]: productName, app: 'paid' } } : { labels: { app: 'free' } }) },
    spec: {
      ...(identity === 'Pod' ? { serviceAccountName: serviceAccount } : {}),
      containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
    },
  };
}

/** Creates pods named prefix-N for N in [from, to), `concurrency` at a time, at most `ratePerSecond`. */
function createPods(api: ApiHttp, prefix: string, from: number, to: number, labelled: boolean, options: Pick<ScaleOptions, 'concurrency' | 'identity'> & { ratePerSecond?: number }): Promise<number[]> {
  return createMany(api, namespace, from, to, options, (index) => podBody(`${prefix}-${String(index).padStart(5, '0')}`, labelled, options.identity));
}

/** Creates the pods body(N) for N in [from, to) in a namespace, `concurrency` at a time, at most `ratePerSecond`; returns each create's latency. */
export async function createMany(api: ApiHttp, podNamespace: string, from: number, to: number, options: { concurrency: number; ratePerSecond?: number }, body: (index: number) => object): Promise<number[]> {
  const latencies: number[] = [];
  let next = from;
  const started = Date.now();
  const worker = async (): Promise<void> => {
    while (next < to) {
      const index = next++;
      if (options.ratePerSecond) {
        const due = started + ((index - from) * 1000) / options.ratePerSecond;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      const response = await api.ok('POST', `/api/v1/namespaces/${podNamespace}/pods`, body(index));
      latencies.push(response.ms);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return latencies;
}

/** Follows labelled pods of a namespace through a watch and counts those that got their verdict. */
export class VerdictWatch {
  /** When each pod was first seen entitled and ungated (epoch ms), by name. */
  readonly entitled = new Map<string, number>();
  readonly notEntitled = new Set<string>();
  private waiters: { count: number; resolve: () => void }[] = [];
  private stream: { stop: () => void } | undefined;

  constructor(
    private readonly progress: (line: string) => void,
    private readonly podNamespace = namespace,
  ) {}

  async start(api: ApiHttp): Promise<void> {
    const list = JSON.parse((await api.ok('GET', `/api/v1/namespaces/${this.podNamespace}/pods?limit=1`)).body) as { metadata: { resourceVersion: string } };
    this.stream = api.watch(`/api/v1/namespaces/${this.podNamespace}/pods?labelSelector=${encodeURIComponent(productLabel)}`, list.metadata.resourceVersion, (type, object) => {
      if (type !== 'ADDED' && type !== 'MODIFIED') return;
      const pod = object as { metadata: { name: string; annotations?: Record<string, string> }; spec: { schedulingGates?: { name: string }[] } };
      const gated = isGated(pod);
      const verdict = pod.metadata.annotations?.[annotations.status];
      if (verdict === 'Entitled' && !gated && !this.entitled.has(pod.metadata.name)) this.entitled.set(pod.metadata.name, Date.now());
      if (verdict === 'NotEntitled') this.notEntitled.add(pod.metadata.name);
      this.waiters = this.waiters.filter((w) => {
        if (this.entitled.size < w.count) return true;
        w.resolve();
        return false;
      });
    });
  }

  /** Resolves once `count` pods are entitled and ungated; rejects after timeoutMs or if `alive` turns false. */
  async until(count: number, timeoutMs: number, alive: () => boolean): Promise<void> {
    if (this.entitled.size >= count) return;
    const reached = new Promise<void>((resolve) => this.waiters.push({ count, resolve }));
    const deadline = Date.now() + timeoutMs;
    let nextReport = Date.now() + 10_000;
    for (;;) {
      const done = await Promise.race([reached.then(() => true), sleep(250).then(() => false)]);
      if (done) return;
      if (Date.now() > nextReport) {
        nextReport += 10_000;
        this.progress(`${this.entitled.size} of ${count} pods entitled`);
      }
      if (!alive()) throw new Error(`the operator exited with ${this.entitled.size} of ${count} pods entitled`);
      if (Date.now() > deadline) throw new Error(`timed out with ${this.entitled.size} of ${count} pods entitled`);
    }
  }

  stop(): void {
    this.stream?.stop();
  }
}

interface Histogram {
  count: number;
  sum: number;
  buckets: Map<number, number>;
}

/** One Prometheus histogram from a /metrics text, summed over the series that contain `filter`. */
function parseHistogram(text: string, name: string, filter: string): Histogram {
  const histogram: Histogram = { count: 0, sum: 0, buckets: new Map() };
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_`) || !line.includes(filter)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${name}_count`)) histogram.count += value;
    else if (line.startsWith(`${name}_sum`)) histogram.sum += value;
    else {
      const le = /le="([^"]+)"/.exec(line)?.[1];
      if (le) histogram.buckets.set(Number(le), (histogram.buckets.get(Number(le)) ?? 0) + value);
    }
  }
  return histogram;
}

async function apiServerWebhookHistogram(api: ApiHttp): Promise<Histogram> {
  return parseHistogram((await api.ok('GET', '/metrics')).body, 'apiserver_admission_webhook_admission_duration_seconds', 'operation="CREATE"');
}

/** The operator's own answer times to gated admissions (its entitlement_webhook_duration_seconds). */
async function operatorWebhookHistogram(metricsUrl: string): Promise<Histogram> {
  return parseHistogram(await (await fetch(metricsUrl)).text(), 'entitlement_webhook_duration_seconds', 'outcome="gated"');
}

function histogramDelta(before: Histogram, after: Histogram): { calls: number; meanMs: number; p99UpperBoundMs: number } {
  const calls = after.count - before.count;
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  // The smallest bucket bound below which 99% of the calls fell (the histogram's resolution).
  const p99 = bounds.find((le) => (after.buckets.get(le) ?? 0) - (before.buckets.get(le) ?? 0) >= 0.99 * calls) ?? Infinity;
  return { calls, meanMs: calls > 0 ? ((after.sum - before.sum) / calls) * 1000 : 0, p99UpperBoundMs: p99 * 1000 };
}

/** CPU seconds the whole machine has spent busy (all cores), from /proc/stat. */
async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ
}

interface CpuMark {
  machine: number;
  harness: NodeJS.CpuUsage;
  operator: number;
}

async function cpuMark(operator: Cgroup): Promise<CpuMark> {
  return { machine: await machineBusySeconds(), harness: process.cpuUsage(), operator: (await operator.usage()).cpuSeconds };
}

/** CPU seconds since `mark`: the machine's, this process's (the harness, with the fake AWS), the operator's, and the rest (the API server and etcd). */
async function cpuSince(mark: CpuMark, operator: Cgroup): Promise<{ machine: number; harness: number; operator: number; controlPlane: number }> {
  const now = await cpuMark(operator);
  const harnessUsage = process.cpuUsage(mark.harness);
  const machine = now.machine - mark.machine;
  const harness = (harnessUsage.user + harnessUsage.system) / 1e6;
  const operatorSeconds = now.operator - mark.operator;
  return { machine, harness, operator: operatorSeconds, controlPlane: machine - harness - operatorSeconds };
}

/**
 * Waits until the machine is quiet again (under a quarter busy for half a second, at most 30 s),
 * so that a phase's trailing work (Events, status writes, watch events, the operator's own
 * follow-up) is counted in that phase and does not slow down the next.
 */
async function settle(maxMs = 30_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  const window = 500;
  while (Date.now() < deadline) {
    const before = await machineBusySeconds();
    await sleep(window);
    if ((await machineBusySeconds()) - before < 0.25 * (window / 1000) * os.cpus().length) return;
  }
}

/** Pod patches and Event creates, and product status writes, the API server has served (every client's, the operator's here). */
async function apiServerWrites(api: ApiHttp): Promise<{ pods: number; statuses: number }> {
  const text = (await api.ok('GET', '/metrics')).body;
  const writes = { pods: 0, statuses: 0 };
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const count = Number(line.slice(line.lastIndexOf(' ') + 1));
    const podPatch = line.includes('verb="PATCH"') && line.includes('resource="pods"') && line.includes('subresource=""');
    const eventCreate = line.includes('verb="POST"') && line.includes('resource="events"');
    if (podPatch || eventCreate) writes.pods += count;
    if (line.includes('verb="PUT"') && line.includes('resource="marketplaceproducts"') && line.includes('subresource="status"')) writes.statuses += count;
  }
  return writes;
}

/** Serial dry-run creates, labelled and unlabelled alternating, until `until` says stop. */
async function probeAdmission(api: ApiHttp, identity: ScaleOptions['identity'], until: (round: number) => boolean): Promise<{ labelled: number[]; unlabelled: number[] }> {
  const labelled: number[] = [];
  const unlabelled: number[] = [];
  for (let round = 0; !until(round); round++) {
    const isLabelled = round % 2 === 0;
    const response = await api.ok('POST', `/api/v1/namespaces/${namespace}/pods?dryRun=All`, podBody(isLabelled ? 'probe-labelled' : 'probe-unlabelled', isLabelled, identity));
    if (isLabelled && !response.body.includes(schedulingGate)) throw new Error('a labelled dry-run create came back without the scheduling gate');
    (isLabelled ? labelled : unlabelled).push(response.ms);
  }
  return { labelled, unlabelled };
}

function overhead(samples: { labelled: number[]; unlabelled: number[] }) {
  const labelled = quantiles(samples.labelled);
  const unlabelled = quantiles(samples.unlabelled);
  return { labelled, unlabelled, overheadP50: labelled.p50 - unlabelled.p50, overheadP99: labelled.p99 - unlabelled.p99 };
}

async function operatorPid(cgroup: Cgroup): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const [pid] = await cgroup.pids();
    if (pid !== undefined) return pid;
    await sleep(100);
  }
  throw new Error('no process in the operator cgroup');
}

export async function runScale(options: ScaleOptions): Promise<ScaleResult> {
  const { log, ...settings } = options;
  if (options.knownPods < (1 + underLoadRounds) * options.burstPods) throw new Error(`knownPods must be at least ${1 + underLoadRounds} × burstPods`);
  const plane = await ControlPlane.start();
  const api = new ApiHttp(plane);
  let fake: FakeAws | undefined;
  let cgroup: Cgroup | undefined;
  let watch: VerdictWatch | undefined;
  let operator: OperatorProcess | undefined;
  try {
    log('control plane up; installing the bundle');
    fake = await FakeAws.start({
      serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')],
      products: { [productCode]: { delayMs: options.awsLatencyMs } },
    });
    await installBundle(plane, options.admission);
    const kubeconfig = await serviceAccountKubeconfig(plane);
    await api.ok('POST', '/api/v1/namespaces', { metadata: { name: namespace } });
    if (options.identity === 'Pod') {
      await api.ok('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { metadata: { name: serviceAccount, annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/paid-workload' } } });
    }
    const product = productManifest(productName, { productCode, publicKey: { pem: fake.publicKeyPem }, identity: { mode: options.identity } });
    await api.ok('POST', `/apis/marketplace.entitlements.io/v1alpha1/namespaces/${namespace}/marketplaceproducts`, { ...product, metadata: { name: productName, namespace } });

    cgroup = await Cgroup.create('entitlement-operator-scale', { memoryBytes: options.memoryLimitBytes, ...(options.cpuLimit ? { cpus: options.cpuLimit } : {}) });
    const group = cgroup;
    log(`starting the operator in cgroup ${group.name} (memory limit ${Math.round(options.memoryLimitBytes / 2 ** 20)} MiB${options.cpuLimit ? `, ${options.cpuLimit} CPU` : ''})`);
    operator = await startOperatorProcess(plane, fake, kubeconfig, {
      admission: options.admission,
      launch: (command, args) => group.wrap(command, args),
      extraArgs: options.operatorArgs ?? [],
      env: { LOG_LEVEL: 'warn', ...options.operatorEnv },
    });
    const proc = operator.proc;
    const pid = await operatorPid(group);
    const alive = (): boolean => proc.running;

    log(`admission: ${options.dryRuns} serial dry-run creates on a quiet cluster`);
    // Let start-up settle, and warm up connections and code, before measuring.
    await sleep(3_000);
    await probeAdmission(api, options.identity, (round) => round >= 40);
    const serial = await probeAdmission(api, options.identity, (round) => round >= options.dryRuns);

    watch = new VerdictWatch(log);
    await watch.start(api);

    log(`burst baseline: ${options.burstPods} unlabelled pods`);
    const asFastAsTheyGo = { concurrency: options.concurrency, identity: options.identity };
    await settle();
    let before = await cpuMark(group);
    let started = Date.now();
    await createPods(api, 'free', 0, options.burstPods, false, asFastAsTheyGo);
    const unlabelledSeconds = (Date.now() - started) / 1000;
    await settle();
    const unlabelledCpu = await cpuSince(before, group);

    log(`burst: ${options.burstPods} labelled pods`);
    const writesBefore = await apiServerWrites(api);
    before = await cpuMark(group);
    started = Date.now();
    await createPods(api, 'paid', 0, options.burstPods, true, asFastAsTheyGo);
    await watch.until(options.burstPods, 300_000, alive);
    const labelledSeconds = (Date.now() - started) / 1000;
    const untilUngated = await cpuSince(before, group);
    await settle();
    const labelledCpu = await cpuSince(before, group);
    const writesAfter = await apiServerWrites(api);
    const writesPerPod = (writesAfter.pods - writesBefore.pods) / options.burstPods;
    const statusWrites = writesAfter.statuses - writesBefore.statuses;

    const underLoadPods = underLoadRounds * options.burstPods;
    log(`admission under load: serial dry-run creates while ${underLoadPods} more labelled pods are gated`);
    const histogramBefore = await apiServerWebhookHistogram(api);
    const operatorHistogramBefore = await operatorWebhookHistogram(operator.metricsUrl);
    let loadDone = false;
    const probes = probeAdmission(api, options.identity, () => loadDone);
    await createPods(api, 'paid', options.burstPods, options.burstPods + underLoadPods, true, asFastAsTheyGo);
    await watch.until(options.burstPods + underLoadPods, 300_000, alive);
    loadDone = true;
    const underLoad = await probes;
    const histogramAfter = await apiServerWebhookHistogram(api);
    const operatorHistogramAfter = await operatorWebhookHistogram(operator.metricsUrl);

    log(`memory: up to ${options.knownPods} labelled pods`);
    await createPods(api, 'paid', options.burstPods + underLoadPods, options.knownPods, true, asFastAsTheyGo);
    await watch.until(options.knownPods, 600_000, alive);
    await settle(); // the last status writes
    // What the machine and the operator spend with nothing happening (leases, watches, timers,
    // metrics): taken off the paced phase below, so that its figures are per pod.
    const idleBefore = await cpuMark(group);
    await sleep(5_000);
    const idle = await cpuSince(idleBefore, group);
    const idlePerSecond = { operator: idle.operator / 5, controlPlane: idle.controlPlane / 5 };
    const { rss: rssAtKnownBytes, anonymous: anonymousAtKnownBytes } = await residentBytes(pid);
    const cgroupAtKnownBytes = (await group.usage()).memoryBytes;

    let paced: ScaleResult['paced'];
    if (options.totalPods > options.knownPods) {
      log(`survival: up to ${options.totalPods} labelled pods at ${options.ratePerSecond}/s`);
      const pacedBefore = await cpuMark(group);
      const pacedStarted = Date.now();
      await createPods(api, 'paid', options.knownPods, options.totalPods, true, { ...asFastAsTheyGo, ratePerSecond: options.ratePerSecond });
      await watch.until(options.totalPods, 600_000, alive);
      await settle();
      const pacedCpu = await cpuSince(pacedBefore, group);
      const pacedSeconds = (Date.now() - pacedStarted) / 1000;
      const pacedPods = options.totalPods - options.knownPods;
      paced = {
        pods: pacedPods,
        seconds: pacedSeconds,
        idlePerSecond,
        operatorCpuMsPerPod: ((pacedCpu.operator - idlePerSecond.operator * pacedSeconds) * 1000) / pacedPods,
        controlPlaneMsPerPod: ((pacedCpu.controlPlane - idlePerSecond.controlPlane * pacedSeconds) * 1000) / pacedPods,
      };
      await sleep(2_000);
    }
    const usage = await group.usage();
    const survived = proc.running && usage.oomKills === 0;
    const rssAtEndBytes = proc.running ? (await residentBytes(pid)).rss : 0;

    const registrations = fake.calls('RegisterUsage', 'ok');
    const nonces = new Set(registrations.map((call) => String(call.request.Nonce)));
    const signedForItsPod = registrations.filter((call) => call.boundPod && call.roleSessionName === roleSessionName(call.boundPod));
    return {
      options: settings,
      burst: {
        unlabelledSeconds,
        labelledSeconds,
        ratio: labelledSeconds / unlabelledSeconds,
        ratioWithoutOperatorCpu: (labelledSeconds / unlabelledSeconds) * ((untilUngated.machine - untilUngated.operator) / untilUngated.machine),
        operatorCpuSeconds: labelledCpu.operator,
        cpuMsPerPod: (labelledCpu.operator * 1000) / options.burstPods,
        writesPerPod,
        statusWrites,
        machineBusyShare: untilUngated.machine / (labelledSeconds * os.cpus().length),
        machineCpuSeconds: labelledCpu.machine,
        harnessCpuSeconds: labelledCpu.harness,
        controlPlaneMsPerPod: { labelled: (labelledCpu.controlPlane * 1000) / options.burstPods, unlabelled: (unlabelledCpu.controlPlane * 1000) / options.burstPods },
      },
      admission: { serial: overhead(serial), underLoad: { ...overhead(underLoad), samples: underLoad.labelled.length + underLoad.unlabelled.length }, apiServer: histogramDelta(histogramBefore, histogramAfter), operator: histogramDelta(operatorHistogramBefore, operatorHistogramAfter) },
      memory: { rssAtKnownBytes, anonymousAtKnownBytes, cgroupAtKnownBytes, rssAtEndBytes, peakCgroupBytes: usage.peakMemoryBytes, oomKills: usage.oomKills },
      ...(paced ? { paced } : {}),
      survived,
      exitCode: proc.running ? undefined : await proc.exited(),
      pods: {
        created: options.totalPods,
        entitled: watch.entitled.size,
        notEntitled: watch.notEntitled.size,
        registrationsOk: registrations.length,
        distinctNonces: nonces.size,
        duplicateRegistrations: registrations.length - nonces.size,
        signedForItsPod: signedForItsPod.length,
        podsSignedFor: new Set(signedForItsPod.map((call) => call.boundPod?.uid)).size,
      },
    };
  } catch (error) {
    if (operator && !operator.proc.running) {
      const usage = await cgroup?.usage().catch(() => undefined);
      throw new Error(`${error instanceof Error ? error.message : String(error)} (operator exit ${String(await operator.proc.exited())}, OOM kills ${usage?.oomKills ?? '?'})\n${operator.proc.logTail(10)}`);
    }
    throw error;
  } finally {
    watch?.stop();
    api.close();
    await plane.stop();
    await cgroup?.remove();
    await fake?.close();
  }
}
