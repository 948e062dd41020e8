// Metering in the cases sellers meet, over simulated hours (15 real seconds each), with the
// operator as the bundle's ServiceAccount against a real API server:
// - one product code in two namespaces (Operator mode): one record per dimension and hour, the
//   sum, with each namespace's part as a UsageAllocation;
// - the leader killed while that record is in flight, and one product's dimensions changed
//   before its successor resends the hour: the resend is the same request, byte for byte;
// - in Pod mode, a pod whose records can never go (it ended, and its ServiceAccount was deleted
//   before its hour was reported; or it ended in a namespace whose ended pods the operator's
//   limits give no token): it is reported, and the other pods' records go out;
// - a pod that starts while an hour's records go out (AWS slow to take them): registered before
//   they are all in, not behind them;
// - pods revoked while running (their budget holds their eviction) and entitled again: metered
//   for the hours they counted, and a zero for the hour between.
import { setTimeout as sleep } from 'node:timers/promises';
import { EventsV1Api, PatchStrategy, PolicyV1Api, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { formatSimulatedClock, type Clock } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { startOperatorProcess, waitForPod, type OperatorProcess } from '../support/operator.js';
import { createProduct, getProduct, labelledPod, verdict } from '../support/pods.js';
import { storedLedger } from '../support/ledgers.js';
import { simulatedHoursForSuite } from '../support/simulated-hours.js';
import { freePort } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
const role = 'arn:aws:iam::123456789012:role/solo-app';
const rate = 240;
const minute = 60_000;
const h0 = (Math.floor(Date.now() / hourMs) + 10) * hourMs;
const hoursOf = simulatedHoursForSuite(controlPlane, h0, rate);
const at = (hours: number, minutes = 0): number => h0 + hours * hourMs + minutes * minute;

let fake: FakeAws;
let clock: Clock;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let port: number;
const operators: OperatorProcess[] = [];

beforeAll(async () => {
  ({ fake, clock, core, custom } = hoursOf());
  port = await freePort();
});
afterAll(async () => {
  for (const operator of operators) await operator.proc.stop();
});

async function start(name: string): Promise<OperatorProcess> {
  const env = { SIMULATED_CLOCK: formatSimulatedClock(hoursOf().clockSetting), LEASE_DURATION_SECONDS: '3' };
  const operator = await startOperatorProcess(controlPlane(), fake, hoursOf().kubeconfig, { name, webhookPort: port, env });
  operators.push(operator);
  return operator;
}

/** Pods of a product, entitled, then reported Running (no kubelet here). */
async function runPods(namespace: string, product: string, names: string[], serviceAccountName = 'default'): Promise<void> {
  for (const name of names) {
    const body = labelledPod(name, product, { serviceAccountName, containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '1500m', memory: '1Gi' } } }] });
    await core.createNamespacedPod({ namespace, body });
  }
  for (const name of names) {
    await waitForPod(`${namespace}/${name} entitled`, async () => (verdict(await core.readNamespacedPod({ name, namespace })) === 'Entitled' ? true : undefined));
    await core.patchNamespacedPodStatus({ name, namespace, body: { status: { phase: 'Running' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }
}

async function reportedThrough(namespace: string, product: string, hour: number, timeoutMs = 60_000): Promise<void> {
  await waitForPod(`${namespace}/${product}: hour ${hour} reported`, async () => {
    const status = (await getProduct(custom, namespace, product)).status as { metering?: { lastReportedHour?: string } } | undefined;
    // Or a later one: the hours after a held one go out with it.
    return Date.parse(status?.metering?.lastReportedHour ?? '') >= at(hour) ? true : undefined;
  }, timeoutMs);
}

/** Waits for an hour to begin, so that what a test does next happens within one hour (15 s here). */
async function freshHour(): Promise<number> {
  await waitForPod('a fresh hour', () => Promise.resolve(clock.now() % hourMs < 5 * minute ? true : undefined), 30_000);
  return Math.floor(clock.now() / hourMs) - h0 / hourMs;
}

async function meteredCondition(namespace: string, product: string): Promise<{ status: string; reason: string; message: string } | undefined> {
  const status = (await getProduct(custom, namespace, product)).status as { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined;
  return status?.conditions?.find((c) => c.type === 'Metered');
}

const dimensions = [{ name: 'pods', unit: 'Pod' }, { name: 'cores', unit: 'vCPU' }];

it('one product code in two namespaces is billed as one sum an hour, split by namespace; a resend after a failover and a spec change is the same request', async () => {
  for (const namespace of ['team-a', 'team-b']) {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await createProduct(custom, namespace, 'app', { productCode: 'shared-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, metering: { dimensions } });
  }
  await start('shared-0');
  // Hour -1: two pods in team-a, three in team-b (2 cores each).
  await runPods('team-a', 'app', ['a-0', 'a-1']);
  await runPods('team-b', 'app', ['b-0', 'b-1', 'b-2']);
  expect(clock.now()).toBeLessThan(at(-1, 50));
  for (const namespace of ['team-a', 'team-b']) await reportedThrough(namespace, 'app', -1);
  const records = (hour: number) =>
    fake
      .records()
      .filter((r) => r.productCode === 'shared-code' && r.hour === at(hour))
      .sort((a, b) => (a.dimension < b.dimension ? -1 : 1))
      .map((r) => [r.dimension, r.quantity, r.allocations]);
  const split = (a: number, b: number) => [{ quantity: a, tags: ['namespace=team-a', 'product=app'] }, { quantity: b, tags: ['namespace=team-b', 'product=app'] }];
  expect(records(-1)).toEqual([['cores', 10, split(4, 6)], ['pods', 5, split(2, 3)]]);

  // Hour 0's record is in flight at AWS when the leader is killed; team-a's spec then changes
  // (another dimension), and a new leader resends hour 0.
  fake.setBehaviour('shared-code', { delayMs: 3_000 });
  await waitForPod('hour 0 in flight', () => Promise.resolve((fake.state.delayed.get('shared-code') ?? 0) > 0 ? true : undefined), 60_000);
  operators[0]?.proc.kill();
  await sleep(3_500);
  fake.setBehaviour('shared-code', {});
  await custom.patchNamespacedCustomObject(
    { group: 'marketplace.entitlements.io', version: 'v1alpha1', plural: 'marketplaceproducts', namespace: 'team-a', name: 'app', body: { spec: { metering: { dimensions: [...dimensions, { name: 'memory', unit: 'MemoryGiB' }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await start('shared-1');
  for (const namespace of ['team-a', 'team-b']) await reportedThrough(namespace, 'app', 1);

  expect(records(0)).toEqual([['cores', 10, split(4, 6)], ['pods', 5, split(2, 3)]]);
  // Hour 1 closed with team-a's new dimension: its own record, with team-a's part alone.
  expect(records(1)).toEqual([['cores', 10, split(4, 6)], ['memory', 2, [{ quantity: 2, tags: ['namespace=team-a', 'product=app'] }]], ['pods', 5, split(2, 3)]]);
  const calls = fake.calls('MeterUsage').filter((c) => c.productCode === 'shared-code' && Number(c.request.Timestamp) * 1000 === at(0));
  expect(calls.filter((c) => c.errorCode !== undefined)).toEqual([]);
  for (const dimension of ['pods', 'cores']) {
    const bodies = calls.filter((c) => c.request.UsageDimension === dimension).map((c) => JSON.stringify(c.request));
    expect(bodies.length).toBeGreaterThanOrEqual(2); // sent before the kill, and again after
    expect(new Set(bodies).size).toBe(1);
  }
}, 300_000);

/**
 * A Pod-mode product in its own namespace, with two pods that keep running and one, `ending`,
 * that ends (then `afterEnd`) before its hour is reported. Returns who AWS billed for that hour
 * and the product's UsageRejected Events.
 */
async function podEndsBeforeItsHour(namespace: string, options: { labelled: boolean; endingAccount: string; afterEnd?: () => Promise<void>; reportedWithinMs?: number }) {
  const labels: Record<string, string> = options.labelled ? { 'marketplace.entitlements.io/meter-ended-pods': 'true' } : {};
  await core.createNamespace({ body: { metadata: { name: namespace, labels } } });
  for (const account of new Set(['app', options.endingAccount])) await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: account, annotations: { [roleArnAnnotation]: role } } } });
  await createProduct(custom, namespace, 'metered', { productCode: `${namespace}-code`, publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Pod' }, metering: { dimensions } });
  // The pods run, and one ends, within this hour: its records are then sent as an ended pod's.
  const hour = await freshHour();
  await runPods(namespace, 'metered', ['keep-0', 'keep-1'], 'app');
  await runPods(namespace, 'metered', ['ending'], options.endingAccount);
  const productUid = ((await getProduct(custom, namespace, 'metered')) as { metadata: { uid?: string } }).metadata.uid ?? '';
  const endingUid = (await core.readNamespacedPod({ name: 'ending', namespace })).metadata?.uid ?? '';
  await waitForPod('the ending pod counted in the ledger', async () => ((await storedLedger(core, productUid))?.ledger.pods[endingUid] ? true : undefined));
  await core.deleteNamespacedPod({ name: 'ending', namespace, gracePeriodSeconds: 0 });
  await options.afterEnd?.();
  await reportedThrough(namespace, 'metered', hour, options.reportedWithinMs);
  const billed = fake
    .records()
    .filter((r) => r.productCode === `${namespace}-code` && r.hour === at(hour))
    .map((r) => `${r.caller}|${r.dimension}|${r.quantity}`)
    .sort();
  const events = (await controlPlane().kubeConfig().makeApiClient(EventsV1Api).listNamespacedEvent({ namespace })).items.filter((e) => e.regarding?.name === 'metered' && e.reason === 'UsageRejected');
  return { billed, events, condition: await meteredCondition(namespace, 'metered') };
}

const keptPodsBilled = (namespace: string): string[] => [`${role}/${namespace}.keep-0|cores|2`, `${role}/${namespace}.keep-0|pods|1`, `${role}/${namespace}.keep-1|cores|2`, `${role}/${namespace}.keep-1|pods|1`];

it("in Pod mode a pod whose records can never go is reported, and the others' hour goes out", async () => {
  // An ended pod is reported with an unbound token of its account, which the operator's limits allow
  // where a cluster admin labelled the namespace; here its ServiceAccount goes too.
  const { billed, events, condition } = await podEndsBeforeItsHour('solo', { labelled: true, endingAccount: 'lonely', afterEnd: () => core.deleteNamespacedServiceAccount({ name: 'lonely', namespace: 'solo' }).then(() => undefined) });
  expect(billed).toEqual(keptPodsBilled('solo'));
  expect(events).toHaveLength(1);
  expect(events[0]?.note).toMatch(/2 records of hour .* from 1 pod cannot be sent and are not billed \(first, pod ending: (TokenRequest for ServiceAccount solo\/lonely failed|cannot read ServiceAccount solo\/lonely)/);
  const leader = operators.find((o) => o.proc.running);
  expect(await leader?.metric('entitlement_metering_records_total', { outcome: 'rejected' })).toBeGreaterThanOrEqual(2);
  expect(condition).toMatchObject({ status: 'False', reason: 'UsageRejected', message: events[0]?.note });
}, 300_000);

it("in Pod mode, in a namespace not labelled meter-ended-pods, a pod that ended before its hour was reported is not billed, and the others' records go out", async () => {
  // Its token would be bound to nothing, which the operator's limits refuse here: retried (a cluster
  // admin may still label the namespace) for two hours past the hour's end, 30 s here, then given up.
  const { billed, events, condition } = await podEndsBeforeItsHour('unlabelled', { labelled: false, endingAccount: 'app', reportedWithinMs: 120_000 });
  expect(billed).toEqual(keptPodsBilled('unlabelled'));
  expect(events).toHaveLength(1);
  expect(events[0]?.note).toMatch(/2 records of hour .* from 1 pod cannot be sent and are not billed \(first, pod ending: TokenRequest for ServiceAccount unlabelled\/app failed: .*labelled marketplace\.entitlements\.io\/meter-ended-pods=true/);
  expect(condition).toMatchObject({ status: 'False', reason: 'UsageRejected', message: events[0]?.note });
}, 300_000);

it("a pod that starts while an hour's records go out is registered without waiting for them", async () => {
  const namespace = 'boundary';
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: role } } } });
  await createProduct(custom, namespace, 'busy', { productCode: 'busy-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Pod' }, metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } });
  await createProduct(custom, namespace, 'starter', { productCode: 'starter-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' } });
  const busy = Array.from({ length: 40 }, (_, i) => `busy-${i}`);
  await runPods(namespace, 'busy', busy, 'app');
  // From now on AWS takes 3 s over each of busy's records (the operator here gives up on a call after 5 s):
  // its hour takes 9 s or more to go out, at 16 in flight.
  fake.setBehaviour('busy-code', { delayMs: 3_000 });
  const hour = Math.floor(clock.now() / hourMs) - h0 / hourMs;
  const hourCalls = () => fake.calls('MeterUsage').filter((c) => c.productCode === 'busy-code' && Number(c.request.Timestamp) * 1000 === at(hour));
  await waitForPod(`the first record of hour ${hour} accepted`, () => Promise.resolve(hourCalls().length > 0 ? true : undefined));
  // A pod of another product starts while the rest of the hour's records are on their way.
  await core.createNamespacedPod({ namespace, body: labelledPod('starter-0', 'starter') });
  await waitForPod('starter-0 entitled', async () => (verdict(await core.readNamespacedPod({ name: 'starter-0', namespace })) === 'Entitled' ? true : undefined));
  // The calls in flight still take their 3 s; the hours after this one need not.
  fake.setBehaviour('busy-code', {});
  await reportedThrough(namespace, 'busy', hour);

  const registration = fake.calls('RegisterUsage', 'ok').find((c) => c.productCode === 'starter-code');
  const calls = hourCalls();
  expect(calls.filter((c) => c.status === 200)).toHaveLength(busy.length);
  // Registered while the hour's records were still going out, not behind them (seq: the order AWS answered in).
  expect(calls.filter((c) => c.seq > (registration?.seq ?? Infinity)).length).toBeGreaterThan(0);
}, 300_000);

it('a pod revoked (its eviction held by its budget) and entitled again is metered for the hours it counted, not those between', async () => {
  const namespace = 'flap';
  const now = (): number => Math.floor(clock.now() / hourMs) - h0 / hourMs;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await createProduct(custom, namespace, 'flap', { productCode: 'flap-code', publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, onRevocation: 'Evict', metering: { dimensions: [{ name: 'pods', unit: 'Pod' }] } });
  const budgets = controlPlane().kubeConfig().makeApiClient(PolicyV1Api);
  await budgets.createNamespacedPodDisruptionBudget({ namespace, body: { metadata: { name: 'flap' }, spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'paid' } } } } });
  // From the start of an hour, so that the pods count, and are revoked, within it.
  await sleep(clock.realMsUntil(h0 + (now() + 1) * hourMs + minute));
  const counted = now();
  await runPods(namespace, 'flap', ['flap-0', 'flap-1']);
  const productUid = ((await getProduct(custom, namespace, 'flap')) as { metadata: { uid?: string } }).metadata.uid ?? '';
  await waitForPod('both counted in the ledger', async () => (Object.keys((await storedLedger(core, productUid))?.ledger.pods ?? {}).length === 2 ? true : undefined));

  // A new pod is refused: the two running pods are revoked, and stay, their evictions refused by the budget.
  fake.setBehaviour('flap-code', { error: 'CustomerNotEntitledException' });
  await core.createNamespacedPod({ namespace, body: labelledPod('flap-2', 'flap') });
  for (const name of ['flap-0', 'flap-1']) await waitForPod(`${name} revoked`, async () => (verdict(await core.readNamespacedPod({ name, namespace })) === 'NotEntitled' ? true : undefined));
  expect(now()).toBe(counted);
  // A whole hour revoked; then AWS entitles them again, and a check is asked for.
  await sleep(clock.realMsUntil(h0 + (counted + 2) * hourMs + 5 * minute));
  fake.setBehaviour('flap-code', {});
  for (const name of ['flap-0', 'flap-1']) {
    await core.patchNamespacedPod({ name, namespace, body: { metadata: { annotations: { 'marketplace.entitlements.io/recheck': 'again' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }
  for (const name of ['flap-0', 'flap-1']) await waitForPod(`${name} entitled again`, async () => (verdict(await core.readNamespacedPod({ name, namespace })) === 'Entitled' ? true : undefined));
  await reportedThrough(namespace, 'flap', counted + 2);

  const quantity = (hour: number) => fake.records().find((r) => r.productCode === 'flap-code' && r.hour === at(hour))?.quantity;
  // flap-2, entitled too in the end, never ran (nothing reports it Running here).
  expect([quantity(counted), quantity(counted + 1), quantity(counted + 2)]).toEqual([2, 0, 2]);
}, 300_000);
