// The metrics the dashboard and the alerts name, against the built operator: it runs (webhook
// mode, leader-elected, on a simulated clock where an hour is a minute) through the states that
// make them appear: a pod entitled, one refused, one waiting at the gate for a slow AWS, a
// metered hour whose MeterUsage AWS fails. Then every metric name the PromQL of
// config/prometheus/alerts.yaml and config/grafana/entitlement-operator.json uses must be on its
// /metrics, and a real Prometheus scraping it evaluates every one of those expressions (each
// panel's with data).
import { CoordinationV1Api, PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { leaseName } from '../../src/api/names.js';
import { formatSimulatedClock, type Clock } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import type { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { alertRules, asPrometheusQuery, dashboard, dashboardQueries, exposedMetrics, metricNames, startPrometheus } from '../support/monitoring.js';
import { startOperatorProcess, waitForPod, type OperatorProcess } from '../support/operator.js';
import { createProduct, labelledPod, verdict } from '../support/pods.js';
import { simulatedHoursForSuite } from '../support/simulated-hours.js';

const controlPlane = controlPlaneForSuite();
const namespace = 'shop';
// The hour the test's usage counts in ends at h0, a simulated hour (a real minute) after the clock starts.
const h0 = (Math.floor(Date.now() / hourMs) + 10) * hourMs;
const hoursOf = simulatedHoursForSuite(controlPlane, h0, 60);
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let clock: Clock;
let operator: OperatorProcess;

const codes = { paid: 'monitored-paid', refused: 'monitored-refused', slow: 'monitored-slow' };

beforeAll(async () => {
  ({ fake, core, custom, clock } = hoursOf());
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const env = { SIMULATED_CLOCK: formatSimulatedClock(hoursOf().clockSetting) };
  operator = await startOperatorProcess(controlPlane(), fake, hoursOf().kubeconfig, { name: 'monitored', env });
}, 120_000);
afterAll(async () => {
  await operator.proc.stop();
});

const metric = (name: string, labels?: Record<string, string>): Promise<number> => operator.metric(name, labels);

async function product(name: keyof typeof codes, metered = false): Promise<void> {
  const metering = metered ? { metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } } : {};
  await createProduct(custom, namespace, name, { productCode: codes[name], publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, ...metering });
}

function verdictOn(name: string): Promise<string> {
  return waitForPod(`a verdict on ${name}`, async () => verdict(await core.readNamespacedPod({ name, namespace })));
}

async function podWithVerdict(name: string, productName: string): Promise<string> {
  await core.createNamespacedPod({ namespace, body: labelledPod(name, productName) });
  return verdictOn(name);
}

/** The states that make the metrics appear, in the order the simulated hour allows. */
async function driveStates(): Promise<void> {
  fake.setBehaviour(codes.refused, { error: 'CustomerNotEntitledException' });
  fake.setBehaviour(codes.slow, { delayMs: 3_000 });
  await Promise.all([product('paid', true), product('refused'), product('slow')]);
  // Entitled and running in the hour before h0, so that hour has a record to meter.
  expect(await podWithVerdict('paid-0', 'paid')).toBe('Entitled');
  await core.patchNamespacedPodStatus({ name: 'paid-0', namespace, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  expect(await podWithVerdict('refused-0', 'refused')).toBe('NotEntitled');
  // Held while AWS takes 3 s to answer: the gauges of pods waiting show it.
  await core.createNamespacedPod({ namespace, body: labelledPod('slow-0', 'slow') });
  await waitForPod('slow-0 waiting at the gate', async () => ((await metric('entitlement_gated_pods_waiting')) === 1 && (await metric('entitlement_gated_pod_longest_wait_seconds')) > 0.5 ? true : undefined), 10_000);
  expect(await verdictOn('slow-0')).toBe('Entitled');
  expect(await metric('entitlement_gated_pods_waiting')).toBe(0);
  // AWS fails MeterUsage for the paid product when its hour closes.
  expect(clock.now()).toBeLessThan(h0 - 5 * 60_000);
  fake.setBehaviour(codes.paid, { serverErrorShare: 1 });
  await waitForPod('MeterUsage failing', async () => ((await metric('entitlement_metering_records_total', { outcome: 'failed' })) > 0 ? true : undefined), 90_000);
}

it('publishes every metric the alerts and the dashboard name, and Prometheus evaluates every expression of them', async () => {
  await driveStates();
  const text = await (await fetch(operator.metricsUrl)).text();

  // The values the states stand for.
  expect(await metric('entitlement_leader')).toBe(1);
  const lease = await controlPlane().kubeConfig().makeApiClient(CoordinationV1Api).readNamespacedLease({ name: leaseName, namespace: operatorNamespace });
  expect(lease.spec?.holderIdentity).toContain('monitored');
  expect(await metric('entitlement_verdicts_total', { verdict: 'Entitled', reason: 'SignatureVerified' })).toBe(2);
  // A refused pod is checked again from time to time (often, on this clock), and waits for each verdict again.
  expect(await metric('entitlement_verdicts_total', { verdict: 'NotEntitled', reason: 'CustomerNotEntitled' })).toBeGreaterThanOrEqual(1);
  expect(await metric('entitlement_gate_wait_seconds_count', { verdict: 'Entitled' })).toBe(2);
  expect(await metric('entitlement_gate_wait_seconds_count', { verdict: 'NotEntitled' })).toBeGreaterThanOrEqual(1);
  expect(await metric('entitlement_aws_calls_total', { operation: 'MeterUsage', outcome: 'InternalServiceErrorException' })).toBeGreaterThan(0);
  // The hour before h0 is lost once it leaves AWS's window, 6 hours after it began.
  expect(await metric('entitlement_metering_report_deadline_timestamp_seconds', { product: `${namespace}/paid` })).toBe((h0 - hourMs + 6 * hourMs) / 1000);
  const expiry = await metric('entitlement_webhook_certificate_expiration_timestamp_seconds');
  expect(expiry * 1000 - Date.now()).toBeGreaterThan(80 * 24 * hourMs); // the 90-day serving certificate just made

  // Every name the PromQL uses, on /metrics with a sample.
  const exposed = exposedMetrics(text);
  const rules = await alertRules();
  const board = await dashboard();
  const used = new Set([...rules.map((rule) => rule.expr), ...dashboardQueries(board)].flatMap(metricNames));
  expect(used.size).toBeGreaterThan(10);
  expect([...used].filter((name) => !exposed.has(name))).toEqual([]);

  // A real Prometheus scraping the operator: every alert evaluates, every panel has data.
  const prometheus = await startPrometheus(controlPlane(), [{ job: 'entitlement-operator', namespace: operatorNamespace, address: new URL(operator.metricsUrl).host }]);
  await prometheus.scraped(5);
  for (const rule of rules) await prometheus.query(rule.expr);
  const empty: string[] = [];
  for (const panel of board.panels) {
    for (const target of panel.targets ?? []) {
      if ((await prometheus.query(asPrometheusQuery(target.expr, '10s'))).length === 0) empty.push(`${panel.title}: ${target.expr}`);
    }
  }
  expect(empty).toEqual([]);

  // AWS answers again: the hour is reported and its deadline series goes, so the alert on it
  // cannot fire hours later for an hour that was billed.
  fake.setBehaviour(codes.paid, {});
  const deadlineShown = async (): Promise<boolean> => exposedMetrics(await (await fetch(operator.metricsUrl)).text()).has('entitlement_metering_report_deadline_timestamp_seconds');
  await waitForPod('the reported hour and its deadline series gone', async () => (!(await deadlineShown()) ? true : undefined), 120_000);
  expect(await metric('entitlement_metering_records_total', { outcome: 'sent' })).toBeGreaterThan(0);
}, 360_000);
