// Hourly metering over 9 simulated hours (15 real seconds each): 20 pods of two products (Pod
// mode and Operator mode, different dimensions and units), pods coming and going, a leader
// failover, a 3-hour AWS outage and an operator restart long enough that one hour leaves AWS's
// 6-hour window. The fake's records must hold exactly one record per caller, dimension and hour
// for every other hour, with the right quantities; the lost hour shows in status, Events and
// metrics.
import { setTimeout as sleep } from 'node:timers/promises';
import { EventsV1Api, PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { formatSimulatedClock, type Clock } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { ledgerName } from '../../src/controllers/metering/ledger-store.js';
import { operatorNamespace } from '../support/bundle.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { fakeCredentials } from '../support/fake-aws.js';
import { startOperatorProcess, waitForPod, type OperatorProcess } from '../support/operator.js';
import { createProduct, getProduct, labelledPod, verdict } from '../support/pods.js';
import { simulatedHoursForSuite } from '../support/simulated-hours.js';
import { TcpBalancer } from '../support/tcp-balancer.js';
import { freePort } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
const namespace = 'shop';
const role = 'arn:aws:iam::123456789012:role/shop-app';
const rate = 240; // one simulated hour in 15 real seconds
const minute = 60_000;
// Hour 0 of the test: a whole hour, 59 minutes after the simulated clock starts (set once the
// control plane is up).
const h0 = (Math.floor(Date.now() / hourMs) + 10) * hourMs;
const hoursOf = simulatedHoursForSuite(controlPlane, h0, rate);
let clock: Clock;
const at = (hours: number, minutes = 0): number => h0 + hours * hourMs + minutes * minute;
const until = (time: number): Promise<void> => sleep(clock.realMsUntil(time));

const products = {
  pods: { name: 'per-pod', code: 'metered-per-pod', mode: 'Pod', dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }] },
  total: { name: 'total', code: 'metered-total', mode: 'Operator', dimensions: [{ name: 'memory_gib', unit: 'MemoryGiB' }, { name: 'vcpu', unit: 'vCPU' }] },
} as const;
type ProductName = keyof typeof products;
// Requests by pod index, and what they count as.
const sizes = [
  { cpu: '250m', memory: '512Mi', vCPU: 1, MemoryGiB: 1 },
  { cpu: '1', memory: '1Gi', vCPU: 1, MemoryGiB: 1 },
  { cpu: '1500m', memory: '3Gi', vCPU: 2, MemoryGiB: 3 },
] as const;
const size = (i: number) => sizes[i % sizes.length] as (typeof sizes)[number];

let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const operators: OperatorProcess[] = [];
let balancer: TcpBalancer | undefined;

beforeAll(() => {
  ({ fake, clock, core, custom } = hoursOf());
});
afterAll(async () => {
  for (const operator of operators) await operator.proc.stop();
  await balancer?.close();
});

/** A replica on `port`, behind the balancer that stands in for the webhook Service. */
function start(name: string, port: number, webhook: TcpBalancer): Promise<OperatorProcess> {
  const env = { SIMULATED_CLOCK: formatSimulatedClock(hoursOf().clockSetting), LEASE_DURATION_SECONDS: '3' };
  return startOperatorProcess(controlPlane(), fake, hoursOf().kubeconfig, { name, webhookPort: port, webhookUrl: `https://127.0.0.1:${webhook.port}`, env }).then((operator) => {
    operators.push(operator);
    return operator;
  });
}

/** Which pod (by name) was running in which hours, as the test drives them. */
const running = new Map<string, { product: ProductName; index: number; from: number; to: number }>();

async function startPods(product: ProductName, indexes: number[], hour: number): Promise<void> {
  const names = indexes.map((i) => `${products[product].name}-${i}`);
  await Promise.all(
    indexes.map((i, n) => {
      const { cpu, memory } = size(i);
      const pod = labelledPod(names[n] as string, products[product].name, { serviceAccountName: 'app', containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu, memory } } }] });
      return core.createNamespacedPod({ namespace, body: pod });
    }),
  );
  // Entitled, then running (there is no kubelet here: the test reports the phase as one would).
  for (const name of names) {
    await waitForPod(`${name} entitled`, async () => (verdict(await core.readNamespacedPod({ name, namespace })) === 'Entitled' ? true : undefined));
    await core.patchNamespacedPodStatus({ name, namespace, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }
  for (const [n, name] of names.entries()) running.set(name, { product, index: indexes[n] as number, from: hour, to: Infinity });
}

async function deletePods(product: ProductName, indexes: number[], hour: number): Promise<void> {
  for (const i of indexes) {
    const name = `${products[product].name}-${i}`;
    await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
    const entry = running.get(name);
    if (entry) entry.to = hour;
  }
}

async function leaderOf(replicas: OperatorProcess[]): Promise<OperatorProcess> {
  return waitForPod('one leader', async () => {
    const flags = await Promise.all(replicas.map((r) => (r.proc.running ? r.metric('entitlement_leader') : Promise.resolve(0))));
    return flags.filter((f) => f === 1).length === 1 ? replicas[flags.indexOf(1)] : undefined;
  });
}

/** What the test expects AWS to hold for one hour: "caller|productCode|dimension" → quantity. */
function expectedRecords(hour: number): Map<string, number> {
  const expected = new Map<string, number>();
  const pods = [...running].filter(([, p]) => p.from <= hour && hour <= p.to);
  for (const [product, spec] of Object.entries(products) as [ProductName, (typeof products)[ProductName]][]) {
    const mine = pods.filter(([, p]) => p.product === product);
    for (const dimension of spec.dimensions) {
      const value = (i: number): number => (dimension.unit === 'Pod' ? 1 : size(i)[dimension.unit]);
      if (spec.mode === 'Operator') {
        expected.set(`${fakeCredentials.accessKeyId}|${spec.code}|${dimension.name}`, mine.reduce((sum, [, p]) => sum + value(p.index), 0));
      } else {
        for (const [name, p] of mine) expected.set(`${role}/${namespace}.${name}|${spec.code}|${dimension.name}`, value(p.index));
      }
    }
  }
  return expected;
}

it('reports every hour exactly once through a failover, an outage and a restart, and reports the hour it lost', async () => {
  // Pod identity reports a pod that has ended with an unbound token of its account, which the
  // operator's limits allow only in a namespace a cluster admin labelled for it.
  await core.createNamespace({ body: { metadata: { name: namespace, labels: { 'marketplace.entitlements.io/meter-ended-pods': 'true' } } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: role } } } });
  for (const spec of Object.values(products)) {
    await createProduct(custom, namespace, spec.name, { productCode: spec.code, publicKey: { pem: fake.publicKeyPem }, identity: { mode: spec.mode }, metering: { dimensions: spec.dimensions } });
  }
  // The ledger of a product deleted while no leader ran: the first leader removes it.
  const orphan = ledgerName('00000000-0000-4000-8000-00000000dead');
  await core.createNamespacedConfigMap({
    namespace: operatorNamespace,
    body: { metadata: { name: orphan, labels: { 'app.kubernetes.io/name': 'entitlement-operator', 'app.kubernetes.io/component': 'usage-ledger' } }, data: { 'ledger.json': '{}' } },
  });
  const ports = [await freePort(), await freePort()];
  const webhook = await TcpBalancer.start(ports);
  balancer = webhook;
  const replicas = await Promise.all([start('metering-0', ports[0] as number, webhook), start('metering-1', ports[1] as number, webhook)]);

  // Hour -1: ten pods of each product.
  const ten = Array.from({ length: 10 }, (_, i) => i);
  await Promise.all([startPods('pods', ten, -1), startPods('total', ten, -1)]);
  expect(clock.now()).toBeLessThan(at(-1, 55));

  // Hour 0: three pods of each go, two new ones come; then the leader is killed.
  await until(at(0, 10));
  await Promise.all([deletePods('pods', [0, 1, 2], 0), deletePods('total', [0, 1, 2], 0)]);
  await Promise.all([startPods('pods', [10, 11], 0), startPods('total', [10, 11], 0)]);
  await until(at(0, 20));
  const first = await leaderOf(replicas);
  first.proc.kill();
  const survivor = await leaderOf(replicas.filter((r) => r !== first));

  // From 0:50, a 3-hour AWS outage: hour 0 cannot be reported at 1:00, nor hours 1 and 2 later.
  await until(at(0, 50));
  expect(clock.now()).toBeLessThan(at(0, 55));
  for (const spec of Object.values(products)) fake.setBehaviour(spec.code, { serverErrorShare: 1 });
  await waitForPod('Metered=False while AWS fails', async () => {
    const status = (await getProduct(custom, namespace, products.total.name)).status;
    return status?.conditions?.find((c) => c.type === 'Metered' && c.status === 'False' && c.reason === 'ReportFailing') ? true : undefined;
  }, 30_000);

  // 2:30: two more pods of each go. Their hour 2 is reported after the restart, when they are
  // long gone (a Pod-mode pod's record then needs an unbound token of its ServiceAccount).
  await until(at(2, 30));
  await Promise.all([deletePods('pods', [3, 4], 2), deletePods('total', [3, 4], 2)]);

  // 3:20: the operator stops, while AWS still fails; AWS recovers at 3:50; the operator is back
  // at 6:20, when hour 0 is out of AWS's window and hours 1 to 5 are still in it.
  await until(at(3, 20));
  await survivor.proc.stop();
  await until(at(3, 50));
  for (const spec of Object.values(products)) fake.setBehaviour(spec.code, {});
  await until(at(6, 20));
  const restarted = await start('metering-2', ports[1] as number, webhook);

  // Until hour 7 is reported, at 8:00.
  for (const spec of Object.values(products)) {
    await waitForPod(`${spec.name}: hour 7 reported`, async () => {
      const status = (await getProduct(custom, namespace, spec.name)).status as { metering?: { lastReportedHour?: string } } | undefined;
      return status?.metering?.lastReportedHour === new Date(at(7)).toISOString().replace('.000Z', 'Z') ? true : undefined;
    }, 60_000);
  }

  // Exactly the expected records: hours -1 and 1 to 7, nothing for hour 0.
  const hours = [-1, 0, 1, 2, 3, 4, 5, 6, 7];
  const accepted = fake.records().filter((r) => r.productCode.startsWith('metered-'));
  for (const hour of hours) {
    const got = new Map(accepted.filter((r) => r.hour === at(hour)).map((r) => [`${r.caller}|${r.productCode}|${r.dimension}`, r.quantity]));
    expect([hour, Object.fromEntries(got)]).toEqual([hour, hour === 0 ? {} : Object.fromEntries(expectedRecords(hour))]);
  }
  expect(accepted).toHaveLength(hours.filter((h) => h !== 0).reduce((n, h) => n + expectedRecords(h).size, 0));
  // Never a different quantity for an hour already sent, and nothing for hour 0 once out of the window.
  const meterCalls = fake.calls('MeterUsage').filter((c) => String(c.productCode).startsWith('metered-'));
  expect(meterCalls.filter((c) => c.errorCode === 'DuplicateRequestException' || c.errorCode === 'IdempotencyConflictException')).toEqual([]);
  expect(meterCalls.filter((c) => Number(c.request.Timestamp) * 1000 === at(0) && c.status === 200)).toEqual([]);
  expect(meterCalls.filter((c) => c.errorCode === 'TimestampOutOfBoundsException')).toEqual([]);

  // The lost hour in status, Events and metrics.
  for (const spec of Object.values(products)) {
    const status = (await getProduct(custom, namespace, spec.name)).status as { metering?: { lostHours?: string[] }; conditions?: { type: string; status: string }[] };
    expect(status.metering?.lostHours).toEqual([new Date(at(0)).toISOString().replace('.000Z', 'Z')]);
    expect(status.conditions?.find((c) => c.type === 'Metered')?.status).toBe('True');
  }
  const events = (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace })).items;
  const reasons = (name: string) => events.filter((e) => e.regarding?.name === name).map((e) => e.reason);
  for (const spec of Object.values(products)) {
    expect(reasons(spec.name)).toEqual(expect.arrayContaining(['UsageLost', 'MeteringFailed']));
  }
  expect(await restarted.metric('entitlement_metering_hours_lost_total')).toBe(2);

  // One ledger per product, the orphan gone.
  const ledgers = (await core.listNamespacedConfigMap({ namespace: operatorNamespace, labelSelector: 'app.kubernetes.io/component=usage-ledger' })).items.map((m) => m.metadata?.name);
  const uids = await Promise.all(Object.values(products).map(async (spec) => ((await getProduct(custom, namespace, spec.name)) as { metadata: { uid?: string } }).metadata.uid ?? ''));
  expect(ledgers.sort()).toEqual(uids.map(ledgerName).sort());
  expect(ledgers).not.toContain(orphan);
  expect(await restarted.metric('entitlement_metering_records_total', { outcome: 'lost' })).toBe(expectedRecords(0).size);
}, 300_000);
