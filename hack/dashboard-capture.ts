// A real run for the dashboard's picture (config/grafana/dashboard.png): the built operator in
// webhook mode against a real API server and the fake AWS, on a simulated clock where an hour
// passes in a real minute, scraped by the built Prometheus every 2 s. It drives a workload
// (bursts of pods entitled, some refused, a minute of AWS throttling RegisterUsage, a metered
// hour whose MeterUsage fails for two hours' worth of the simulated clock), then writes every
// panel's queries over the run (the range API) as JSON, which hack/render-dashboard.py draws.
//   npm run build && node --experimental-transform-types --import ./test/support/ts-hooks.mjs hack/dashboard-capture.ts /tmp/dashboard.json
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { formatSimulatedClock, simulatedClock } from '../src/clock.js';
import { hourMs } from '../src/controllers/metering/ledger.js';
import { FakeAws } from '../test/fake-aws/server.js';
import { operatorNamespace } from '../test/support/bundle.js';
import { ControlPlane } from '../test/support/control-plane.js';
import { asPrometheusQuery, dashboard, startPrometheus } from '../test/support/monitoring.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess } from '../test/support/operator.js';
import { createProduct, labelledPod } from '../test/support/pods.js';

const out = process.argv[2] ?? '/tmp/dashboard.json';
const namespace = 'shop';
const log = (message: string): void => {
  process.stderr.write(`[dashboard ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

const plane = await ControlPlane.start();
let fake: FakeAws | undefined;
try {
  await installBundle(plane);
  // Half past an hour: the first hour closes half a minute in.
  const clockSetting = { startMs: (Math.floor(Date.now() / hourMs) + 10) * hourMs + 30 * 60_000, originMs: Date.now(), rate: 60 };
  fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')], clock: simulatedClock(clockSetting) });
  const kc = plane.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const operator = await startOperatorProcess(plane, fake, await serviceAccountKubeconfig(plane), { name: 'operator', env: { SIMULATED_CLOCK: formatSimulatedClock(clockSetting) } });
  const prometheus = await startPrometheus(plane, [{ job: 'entitlement-operator', namespace: operatorNamespace, address: new URL(operator.metricsUrl).host }], 2);
  const start = Date.now() / 1000;

  const spec = (code: string, metered: boolean) => ({ productCode: code, publicKey: { pem: fake?.publicKeyPem }, identity: { mode: 'Operator' }, ...(metered ? { metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } } : {}) });
  fake.setBehaviour('dash-trial', { error: 'CustomerNotEntitledException' });
  fake.setBehaviour('dash-paid', { delayMs: 40 });
  await createProduct(custom, namespace, 'paid', spec('dash-paid', true));
  await createProduct(custom, namespace, 'trial', spec('dash-trial', false));
  let made = 0;
  const burst = async (product: string, count: number): Promise<void> => {
    const names = Array.from({ length: count }, () => `${product}-${made++}`);
    await Promise.all(names.map((name) => core.createNamespacedPod({ namespace, body: labelledPod(name, product) })));
    log(`${count} pods of ${product}`);
  };
  const running = async (): Promise<void> => {
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: 'marketplace.entitlements.io/product=paid' })).items;
    await Promise.all(pods.filter((p) => !p.spec?.schedulingGates?.length && p.status?.phase !== 'Running').map((p) => core.patchNamespacedPodStatus({ name: p.metadata?.name ?? '', namespace, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))));
  };

  // Bursts of paid pods with a few refused ones among them, every 20 s.
  for (let round = 0; round < 3; round++) {
    await Promise.all([burst('paid', 100), burst('trial', 10)]);
    await sleep(20_000);
    await running();
  }
  // A minute of AWS throttling half the registrations, with a burst in it.
  fake.setBehaviour('dash-paid', { delayMs: 40, throttleShare: 0.5 });
  log('AWS throttles half the calls');
  await burst('paid', 150);
  await sleep(60_000);
  fake.setBehaviour('dash-paid', { delayMs: 40 });
  await running();
  // MeterUsage fails for two simulated hours (two real minutes): the oldest unreported hour's deadline comes closer.
  fake.setBehaviour('dash-paid', { delayMs: 40, serverErrorShare: 1 });
  log('AWS fails every call');
  await sleep(120_000);
  fake.setBehaviour('dash-paid', { delayMs: 40 });
  log('AWS answers again');
  await burst('paid', 50);
  await sleep(45_000);
  await running();
  await prometheus.scraped(2);

  const end = Date.now() / 1000;
  const board = await dashboard();
  const panels = [];
  for (const panel of board.panels) {
    const targets = [];
    for (const target of panel.targets ?? []) {
      // The metering deadline is in the operator's clock: "now" there is the simulated time.
      const simulatedNow = `(${clockSetting.startMs / 1000} + (time() - ${clockSetting.originMs / 1000}) * ${clockSetting.rate})`;
      const query = asPrometheusQuery(target.expr, '20s');
      const expr = query.includes('metering_report_deadline') ? query.replace('time()', simulatedNow) : query;
      targets.push({ expr: target.expr, legendFormat: target.legendFormat ?? '', series: await prometheus.queryRange(expr, start, end, 4) });
    }
    panels.push({ title: panel.title, type: panel.type, unit: panel.fieldConfig?.defaults?.unit ?? 'none', gridPos: panel.gridPos, targets });
  }
  const caption = `A real run: ${made} pods in ${Math.round((end - start) / 60)} minutes; the operator on a simulated clock (an hour a real minute; the metering deadline is shown in it), scraped every 2 s`;
  await writeFile(out, JSON.stringify({ start, end, caption, panels }));
  log(`wrote ${out}`);
  await operator.proc.stop();
} finally {
  await fake?.close();
  await plane.stop();
}
