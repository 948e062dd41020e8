// Pod starts at the hour boundary (npm run bench:hour-boundary): thousands of running Pod-mode
// pods whose hour is reported (a TokenRequest, an STS exchange and two MeterUsage calls each)
// the moment it closes, while new pods of the product start. The built operator as installed
// (policy mode, the bundle's ServiceAccount, the Deployment's memory limit), a real API server,
// the fake AWS answering every call after a set latency, and one simulated clock, running at the
// real rate, that the operator and the fake share, set so that the hour closes once the pods
// run. Prints the latency from create to gate removed of pods started at a steady rate well
// before the boundary and across it, and how long the hour's reporting took.
//   npm run bench:hour-boundary -- --pods 5000
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { productLabel } from '../../src/api/marketplace-product.js';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { formatSimulatedClock, simulatedClock } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { FakeAws } from '../fake-aws/server.js';
import { ApiHttp } from '../support/api-http.js';
import { managerRuntime } from '../support/bundle.js';
import { Cgroup, parseBytes } from '../support/cgroup.js';
import { ControlPlane } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess } from '../support/operator.js';
import { productManifest } from '../support/products.js';
import { createMany, VerdictWatch } from '../support/scale.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '5000' },
    'probe-rate': { type: 'string', default: '10' },
    'probe-seconds': { type: 'string', default: '30' },
    'setup-seconds': { type: 'string', default: '300' },
    'aws-latency-ms': { type: 'string', default: '20' },
    'memory-limit': { type: 'string' },
  },
});
const pods = Number(values.pods);
const probeRate = Number(values['probe-rate']);
const probeSeconds = Number(values['probe-seconds']);
const setupSeconds = Number(values['setup-seconds']);
const awsLatencyMs = Number(values['aws-latency-ms']);
const runtime = managerRuntime();
const memoryLimitBytes = parseBytes(values['memory-limit'] ?? runtime.memoryLimit);
const namespace = 'bench';
const productCode = 'boundary-code';
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

  /** Creates one pod every 1/rate s from now for `seconds`, named prefix-N; returns their names. */
  async probe(api: ApiHttp, prefix: string, seconds: number): Promise<string[]> {
    const names: string[] = [];
    const count = Math.round(seconds * probeRate);
    await createMany(api, namespace, 0, count, { concurrency: 4, ratePerSecond: probeRate }, (i) => {
      const name = `${prefix}-${String(i).padStart(4, '0')}`;
      names.push(name);
      this.created.set(name, Date.now());
      return podBody(name);
    });
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

function summary(samples: readonly number[]): { p50: number; p99: number; max: number; missing: number } {
  const known = samples.filter((x) => Number.isFinite(x));
  const at = (q: number): number => known[Math.min(known.length - 1, Math.floor(q * known.length))] ?? Number.NaN;
  return { p50: at(0.5), p99: at(0.99), max: known.at(-1) ?? Number.NaN, missing: samples.length - known.length };
}

async function main(): Promise<void> {
  const plane = await ControlPlane.start();
  const api = new ApiHttp(plane);
  const cgroup = await Cgroup.create('entitlement-operator-hour', { memoryBytes: memoryLimitBytes });
  const watch = new VerdictWatch(log, namespace);
  const times = new StartTimes(watch);
  let fake: FakeAws | undefined;
  try {
    // The hour closes setupSeconds from now; the clock starts in the hour before it.
    const boundaryReal = Date.now() + setupSeconds * 1000;
    const boundary = (Math.floor(Date.now() / hourMs) + 2) * hourMs;
    const clockSetting = { startMs: boundary - setupSeconds * 1000, originMs: boundaryReal - setupSeconds * 1000, rate: 1 };
    fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')], clock: simulatedClock(clockSetting), products: { [productCode]: { delayMs: awsLatencyMs } } });
    await installBundle(plane, 'policy');
    await api.ok('POST', '/api/v1/namespaces', { metadata: { name: namespace } });
    await api.ok('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { metadata: { name: 'app', annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/paid-workload' } } });
    const product = productManifest('app', { productCode, publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Pod' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }] } });
    await api.ok('POST', `/apis/marketplace.entitlements.io/v1alpha1/namespaces/${namespace}/marketplaceproducts`, { ...product, metadata: { name: 'app', namespace } });
    const operator = await startOperatorProcess(plane, fake, await serviceAccountKubeconfig(plane), {
      admission: 'policy',
      launch: (command, args) => cgroup.wrap(command, args),
      // The Deployment's environment (NODE_OPTIONS); OPERATOR_NODE_OPTIONS replaces it (to profile, say).
      env: { ...runtime.env, ...(process.env.OPERATOR_NODE_OPTIONS !== undefined ? { NODE_OPTIONS: process.env.OPERATOR_NODE_OPTIONS } : {}), LOG_LEVEL: 'warn', SIMULATED_CLOCK: formatSimulatedClock(clockSetting) },
    });

    log(`${pods} Pod-mode pods, entitled, then Running`);
    await watch.start(api);
    await createMany(api, namespace, 0, pods, { concurrency: 16 }, (i) => podBody(`running-${String(i).padStart(5, '0')}`));
    await watch.until(pods, 600_000, () => operator.proc.running);
    await runningAll(api);
    const leftMs = boundaryReal - Date.now();
    if (leftMs < (probeSeconds + 15) * 1000) throw new Error(`the pods were ready only ${Math.round(leftMs / 1000)} s before the hour closes: raise --setup-seconds`);

    log(`before the boundary: ${probeSeconds * probeRate} pods at ${probeRate}/s`);
    await sleep(leftMs - (probeSeconds + 12) * 1000);
    const before = await times.probe(api, 'before', probeSeconds);
    const sentBefore = fake.calls('MeterUsage').length;
    await sleep(Math.max(0, boundaryReal - 2_000 - Date.now()));
    log(`across the boundary: ${probeSeconds * probeRate} pods at ${probeRate}/s from 2 s before it`);
    const across = await times.probe(api, 'across', probeSeconds);
    await sleep(5_000);
    const meterCalls = fake.calls('MeterUsage').slice(sentBefore);
    const records = meterCalls.filter((c) => c.status === 200).length;
    const lastRecordMs = Math.max(...meterCalls.map((c) => Date.parse(c.time))) - boundaryReal;

    const b = summary(times.latencies(before));
    const a = summary(times.latencies(across));
    const line = (label: string, s: ReturnType<typeof summary>): string => `${label}: p50 ${s.p50.toFixed(0)} ms, p99 ${s.p99.toFixed(0)} ms, max ${s.max.toFixed(0)} ms${s.missing ? `, ${s.missing} not started` : ''}`;
    process.stdout.write(
      [
        `hour boundary, ${pods} running Pod-mode pods (2 dimensions), AWS answering in ${awsLatencyMs} ms, operator memory limit ${Math.round(memoryLimitBytes / 2 ** 20)} MiB, environment ${JSON.stringify(runtime.env)}`,
        line(`pod start (create → gate removed), ${before.length} pods well before the boundary`, b),
        line(`pod start, ${across.length} pods across the boundary`, a),
        `ratio across/before: p50 ${(a.p50 / b.p50).toFixed(2)}×, p99 ${(a.p99 / b.p99).toFixed(2)}×`,
        `slowest across the boundary (created at, from the boundary: latency): ${times.slowest(across, 5).map(([name, ms]) => `${(((times.created.get(name) ?? 0) - boundaryReal) / 1000).toFixed(1)} s: ${ms.toFixed(0)} ms`).join(', ')}`,
        `the hour's MeterUsage: ${records} of its ${pods * 2} records accepted by ${(lastRecordMs / 1000).toFixed(1)} s after the boundary (${meterCalls.length} calls; the rest go on after the window measured)`,
        `operator still running: ${operator.proc.running}`,
        '',
      ].join('\n'),
    );
  } finally {
    watch.stop();
    api.close();
    await plane.stop();
    await cgroup.remove();
    await fake?.close();
  }
}

await main();
