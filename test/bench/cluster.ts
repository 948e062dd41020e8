// The cluster benchmark (npm run bench:cluster): the built operator as installed, under the
// Deployment's memory limit, against a real API server and thousands of pods, in each admission
// mode one after the other (each on a control plane of its own), and in Pod identity (each pod's
// calls signed with its own credentials, as on EKS). Prints every figure of every run side by
// side, each target met or missed line by line, and writes the figures as JSON.
//   npm run bench:cluster -- --known-pods 5000 --total-pods 10000 --memory-limit 256Mi
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { managerRuntime, type AdmissionMode } from '../support/bundle.js';
import { parseBytes } from '../support/cgroup.js';
import { benchPreamble, numberFlag } from '../support/bench-cli.js';
import { runScale, underLoadRounds, type ScaleResult } from '../support/scale.js';

const usage = `Usage: npm run bench:cluster -- [flags]
  --burst-pods N       labelled pods in the timed burst, and unlabelled in its baseline (500)
  --known-pods N       labelled pods known to the operator when its memory is read (5000;
                       at least 4 × --burst-pods: a burst, then three more while probing admission)
  --total-pods N       labelled pods in all; those past --known-pods come at --rate (10000)
  --rate N             pods per second after --known-pods (50)
  --concurrency N      creates in flight at once (16)
  --aws-latency-ms N   how long the fake AWS takes to answer RegisterUsage (20)
  --memory-limit Q     memory cgroup limit of the operator (the bundle's Deployment limit, 256Mi)
  --cpu-limit CORES    CPU limit of the operator, e.g. 0.5 (none)
  --dry-runs N         serial dry-run creates measuring admission on a quiet cluster, half of
                       them labelled (4000)
  --identity MODES     the product's identity.mode: Operator, Pod, or both (both, the default:
                       every admission mode in Operator identity, then Pod identity in the last)
  --admission MODES    webhook, policy, or both (both: the webhook mode, then the policy mode)
  --json PATH          where to write the figures (a file in the temp directory)
The operator runs with the environment the bundle's Deployment sets (NODE_OPTIONS, ...); OPERATOR_NODE_OPTIONS
replaces them (for example '--cpu-prof --cpu-prof-dir=/tmp/prof' to profile it).
`;

const runtime = managerRuntime();

const { values } = parseArgs({
  options: {
    'burst-pods': { type: 'string', default: '500' },
    'known-pods': { type: 'string', default: '5000' },
    'total-pods': { type: 'string', default: '10000' },
    rate: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '16' },
    'aws-latency-ms': { type: 'string', default: '20' },
    'memory-limit': { type: 'string' },
    'cpu-limit': { type: 'string' },
    'dry-runs': { type: 'string', default: '4000' },
    identity: { type: 'string', default: 'both' },
    admission: { type: 'string', default: 'both' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
benchPreamble('bench:cluster', usage, values.help);
const number = (name: keyof typeof values): number => numberFlag(values, name, usage);
const modes: AdmissionMode[] = values.admission === 'both' ? ['webhook', 'policy'] : values.admission === 'webhook' || values.admission === 'policy' ? [values.admission] : [];
if (modes.length === 0) {
  process.stderr.write(`--admission: ${values.admission} is not webhook, policy or both\n`);
  process.exit(2);
}
type Identity = ScaleResult['options']['identity'];
interface Run {
  admission: AdmissionMode;
  identity: Identity;
  /** How it is named in the output: the admission mode, and the identity when both run. */
  name: string;
}
const lastMode = modes[modes.length - 1] ?? 'policy';
const plan: [AdmissionMode, Identity][] | undefined =
  values.identity === 'both' ? [...modes.map((m): [AdmissionMode, Identity] => [m, 'Operator']), [lastMode, 'Pod']] : values.identity === 'Operator' || values.identity === 'Pod' ? modes.map((m) => [m, values.identity as Identity]) : undefined;
if (!plan) {
  process.stderr.write(`--identity: ${values.identity} is not Operator, Pod or both\n`);
  process.exit(2);
}
const runs: Run[] = plan.map(([admission, identity]) => ({ admission, identity, name: values.identity === 'both' ? `${admission} ${identity}` : admission }));

const started = Date.now();
const results: [Run, ScaleResult][] = [];
for (const run of runs) {
  const { admission, identity } = run;
  const log = (line: string): void => {
    process.stderr.write(`[bench ${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s ${run.name}] ${line}\n`);
  };
  const result = await runScale({
    burstPods: number('burst-pods'),
    knownPods: Math.max(number('known-pods'), (1 + underLoadRounds) * number('burst-pods')),
    totalPods: Math.max(number('total-pods'), number('known-pods'), (1 + underLoadRounds) * number('burst-pods')),
    ratePerSecond: number('rate'),
    concurrency: number('concurrency'),
    awsLatencyMs: number('aws-latency-ms'),
    memoryLimitBytes: parseBytes(values['memory-limit'] ?? runtime.memoryLimit),
    ...(values['cpu-limit'] ? { cpuLimit: number('cpu-limit') } : {}),
    dryRuns: number('dry-runs'),
    identity,
    admission,
    operatorEnv: { ...runtime.env, ...(process.env.OPERATOR_NODE_OPTIONS !== undefined ? { NODE_OPTIONS: process.env.OPERATOR_NODE_OPTIONS } : {}) },
    log,
  });
  results.push([run, result]);
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const ms = (value: number): string => `${value.toFixed(1)} ms`;
const histogram = (h: { calls: number; meanMs: number; p99UpperBoundMs: number }): string => (h.calls === 0 ? 'none (no webhook call)' : `mean ${ms(h.meanMs)} over ${h.calls} calls, p99 ≤ ${ms(h.p99UpperBoundMs)} (bucket bound)`);

/** Every figure of one run, named as printed. */
function figuresOf(result: ScaleResult): [string, string][] {
  const { burst, admission, memory, pods, options } = result;
  return [
    ['operator CPU per gated pod', `${burst.cpuMsPerPod.toFixed(2)} ms (${burst.operatorCpuSeconds.toFixed(2)} s of CPU for ${options.burstPods} pods, until the machine was quiet again)`],
    ['API writes per gated pod (pod patches, Events)', `${burst.writesPerPod.toFixed(2)}, and ${burst.statusWrites} status writes of the product in the ${burst.labelledSeconds.toFixed(1)} s burst`],
    ['CPU of the whole machine for that burst', `${burst.machineCpuSeconds.toFixed(2)} s: operator ${burst.operatorCpuSeconds.toFixed(2)} s, fake AWS and pod creator ${burst.harnessCpuSeconds.toFixed(2)} s, API server, etcd and the rest ${(burst.machineCpuSeconds - burst.operatorCpuSeconds - burst.harnessCpuSeconds).toFixed(2)} s`],
    ['API server, etcd and the rest, CPU per pod', `${burst.controlPlaneMsPerPod.labelled.toFixed(2)} ms labelled, ${burst.controlPlaneMsPerPod.unlabelled.toFixed(2)} ms unlabelled (${(burst.controlPlaneMsPerPod.labelled / burst.controlPlaneMsPerPod.unlabelled).toFixed(1)}×)`],
    [`${options.burstPods} labelled pods, first create → last gate removed`, `${burst.labelledSeconds.toFixed(2)} s, against ${burst.unlabelledSeconds.toFixed(2)} s for ${options.burstPods} unlabelled pods (${burst.ratio.toFixed(2)}×); machine ${(burst.machineBusyShare * 100).toFixed(0)}% busy meanwhile`],
    ["the same if the operator's CPU were free (estimate)", `${burst.ratioWithoutOperatorCpu.toFixed(2)}× (the burst took ${(burst.ratio / burst.ratioWithoutOperatorCpu).toFixed(2)}× that): the machine's other work for labelled pods (API server, etcd, pod creator, fake AWS) alone`],
    ...(result.paced ? [[`operator CPU per pod at ${options.ratePerSecond}/s`, `${result.paced.operatorCpuMsPerPod.toFixed(2)} ms over ${result.paced.pods} pods in ${result.paced.seconds.toFixed(0)} s, less its idle ${(result.paced.idlePerSecond.operator * 1000).toFixed(0)} ms/s (API server, etcd and the rest ${result.paced.controlPlaneMsPerPod.toFixed(2)} ms, less ${(result.paced.idlePerSecond.controlPlane * 1000).toFixed(0)} ms/s)`] as [string, string]] : []),
    [`operator RSS with ${options.knownPods} labelled pods`, `${mib(memory.rssAtKnownBytes)}, of which anonymous ${mib(memory.anonymousAtKnownBytes)} (cgroup ${mib(memory.cgroupAtKnownBytes)})`],
    [`${options.totalPods} labelled pods (${options.ratePerSecond}/s after ${options.knownPods}) in a ${mib(options.memoryLimitBytes)} cgroup`, `${result.survived ? 'survived' : 'DIED'}: peak ${mib(memory.peakCgroupBytes)}, RSS at end ${mib(memory.rssAtEndBytes)}, OOM kills ${memory.oomKills}`],
    [`admission overhead, serial dry-run creates`, `p50 ${ms(admission.serial.overheadP50)}, p99 ${ms(admission.serial.overheadP99)} over ${options.dryRuns / 2} of each (labelled p99 ${ms(admission.serial.labelled.p99)}, unlabelled ${ms(admission.serial.unlabelled.p99)})`],
    [`admission overhead while another ${underLoadRounds * options.burstPods} are gated`, `p50 ${ms(admission.underLoad.overheadP50)}, p99 ${ms(admission.underLoad.overheadP99)} over ${admission.underLoad.samples} probes (labelled p99 ${ms(admission.underLoad.labelled.p99)}, unlabelled ${ms(admission.underLoad.unlabelled.p99)})`],
    ["the operator's own answer to those admissions", histogram(admission.operator)],
    ['API server webhook histogram meanwhile', histogram(admission.apiServer)],
    ['registrations', `${pods.registrationsOk} successful RegisterUsage for ${pods.created} pods, ${pods.distinctNonces} distinct nonces, ${pods.entitled} entitled, ${pods.notEntitled} not entitled`],
    ["signed with credentials issued for the pod's own bound token", `${pods.signedForItsPod} of ${pods.registrationsOk} calls, for ${pods.podsSignedFor} pods`],
  ];
}

/**
 * The Pod-identity targets: against the Operator-identity run of the same admission mode, when
 * there is one, for the burst (each as a ratio to its own unlabelled baseline, so that two
 * control planes compare).
 */
function podTargetsOf(run: Run, result: ScaleResult): [string, boolean][] {
  const { burst, memory, pods, options } = result;
  const operatorRun = results.find(([other]) => other.admission === run.admission && other.identity === 'Operator')?.[1];
  return [
    ['Pod identity: operator CPU ≤ 3.5 ms per gated pod', burst.cpuMsPerPod <= 3.5],
    ...(operatorRun
      ? [[`Pod identity: ${options.burstPods}-pod burst ≤ 1.5× the Operator-identity burst (${burst.ratio.toFixed(2)}× against ${operatorRun.burst.ratio.toFixed(2)}× of their unlabelled bursts)`, burst.ratio <= 1.5 * operatorRun.burst.ratio] as [string, boolean]]
      : []),
    [`Pod identity: ${options.totalPods} pods in ${mib(options.memoryLimitBytes)}, no OOM kill, no exit`, result.survived],
    [`Pod identity: RSS ≤ 160 MiB with ${options.knownPods} labelled pods`, memory.rssAtKnownBytes <= 160 * 2 ** 20],
    [
      'Pod identity: exactly one RegisterUsage per pod, every one signed with credentials issued for that pod',
      pods.registrationsOk === pods.created && pods.distinctNonces === pods.created && pods.entitled === pods.created && pods.signedForItsPod === pods.created && pods.podsSignedFor === pods.created,
    ],
  ];
}

/** The targets of one run: those both admission modes share, and each mode's own; in Pod identity, its own. */
function targetsOf(run: Run, result: ScaleResult): [string, boolean][] {
  if (run.identity === 'Pod') return podTargetsOf(run, result);
  const mode = run.admission;
  const { burst, admission, memory, pods, options } = result;
  const controlPlaneRatio = burst.controlPlaneMsPerPod.labelled / burst.controlPlaneMsPerPod.unlabelled;
  const shared: [string, boolean][] = [
    [`RSS ≤ 150 MiB with ${options.knownPods} labelled pods`, memory.rssAtKnownBytes <= 150 * 2 ** 20],
    [`survives ${options.totalPods} labelled pods in ${mib(options.memoryLimitBytes)} (no OOM kill, no exit)`, result.survived],
    ['exactly one successful RegisterUsage per pod, every pod entitled', pods.registrationsOk === pods.created && pods.distinctNonces === pods.created && pods.entitled === pods.created],
  ];
  if (mode === 'webhook') {
    return [
      ...shared,
      ['operator CPU ≤ 1.5 ms per gated pod', burst.cpuMsPerPod <= 1.5],
      [`${options.burstPods} labelled pods ≤ 4× the time of ${options.burstPods} unlabelled`, burst.ratio <= 4],
      ['admission overhead p99 ≤ 2 ms, serial', admission.serial.overheadP99 <= 2],
      ['admission overhead p99 ≤ 10 ms during the burst (client)', admission.underLoad.overheadP99 <= 10],
      ['admission mean ≤ 10 ms during the burst (API server histogram)', admission.apiServer.meanMs <= 10],
    ];
  }
  return [
    ...shared,
    [`admission overhead p50 ≤ 0.8 ms and p99 ≤ 2 ms, serial (${options.dryRuns / 2} of each)`, admission.serial.overheadP50 <= 0.8 && admission.serial.overheadP99 <= 2],
    [`admission overhead p99 ≤ 5 ms while ${underLoadRounds * options.burstPods} other pods are gated`, admission.underLoad.overheadP99 <= 5],
    ['API server and etcd CPU per gated pod ≤ 3.5× an unlabelled pod', controlPlaneRatio <= 3.5],
    [`${options.burstPods} labelled pods ≤ 5× the time of ${options.burstPods} unlabelled`, burst.ratio <= 5],
    ["… and ≤ 1.3× what the same run estimates with the operator's CPU taken out", burst.ratio <= 1.3 * burst.ratioWithoutOperatorCpu],
  ];
}

const [first] = results;
if (!first) throw new Error('no run');
const { options } = first[1];
const perRun = results.map(([run, result]) => ({ name: run.name, figures: figuresOf(result), targets: targetsOf(run, result) }));
const width = Math.max(...runs.map((r) => r.name.length));
const identities = [...new Set(runs.map((r) => r.identity))].join(' and ');
let out = `\nCluster benchmark (${os.cpus().length} cores, AWS latency ${options.awsLatencyMs} ms, concurrency ${options.concurrency}, identity ${identities}, environment ${JSON.stringify(options.operatorEnv ?? {})})\n\n`;
for (const [index, [name]] of perRun[0]?.figures.entries() ?? []) {
  out += `  ${name}\n`;
  for (const run of perRun) out += `    ${run.name.padEnd(width)}  ${run.figures[index]?.[1] ?? ''}\n`;
}
out += '\nTargets\n';
for (const run of perRun) for (const [name, met] of run.targets) out += `  ${met ? 'met   ' : 'MISSED'}  ${run.name.padEnd(width)}  ${name}\n`;
const file = values.json ?? path.join(os.tmpdir(), `bench-cluster-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
await writeFile(file, JSON.stringify({ date: new Date().toISOString(), runs: results.map(([run, result], i) => ({ mode: run.admission, identity: run.identity, ...result, targets: Object.fromEntries(perRun[i]?.targets ?? []) })) }, null, 2));
out += `\nFigures written to ${file}\n`;
process.stdout.write(out);
process.exit(perRun.every((run) => run.targets.every(([, met]) => met)) ? 0 : 1);
