// The operator under faults: SIGKILL in a burst, the leader killed with a standby ready, and the
// webhook certificate rotated while pods are being created.
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, CoordinationV1Api, EventsV1Api, V1MicroTime, type CoreV1Api, type CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { annotations, productLabel } from '../../src/api/marketplace-product.js';
import { createLogger } from '../../src/observability/logger.js';
import { leaseName, webhookConfigurationName, webhookSecretName, webhookServiceName } from '../../src/api/names.js';
import { CertificateStore } from '../../src/webhook/certificates.js';
import type { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { operatorNonces } from '../support/seals.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod, waitForGating, type OperatorProcess } from '../support/operator.js';
import { createProduct, gated, getProduct, labelledPod, verdict } from '../support/pods.js';
import { TcpBalancer } from '../support/tcp-balancer.js';
import { freePort } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let kubeconfig: string;
const fastLease = { LEASE_DURATION_SECONDS: '6', CERTIFICATE_CHECK_SECONDS: '1' };

beforeAll(async () => {
  ({ fake, core, custom, kubeconfig } = await prepareOperatorEnvironment(controlPlane()));
}, 120_000);

// Every operator a test starts is stopped after it, also when the test fails half-way: a
// leftover leader would otherwise do the next test's work.
const started: OperatorProcess[] = [];
afterEach(async () => {
  for (const operator of started.splice(0)) await operator.proc.stop();
});
async function start(options: Parameters<typeof startOperatorProcess>[3]): Promise<OperatorProcess> {
  const operator = await startOperatorProcess(controlPlane(), fake, kubeconfig, options);
  started.push(operator);
  return operator;
}

/** Replicas behind a TCP balancer that stands in for the webhook Service. */
async function startReplicas(prefix: string, count: number): Promise<{ replicas: OperatorProcess[]; ports: number[]; balancer: TcpBalancer }> {
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const balancer = await TcpBalancer.start(ports);
  const replicas: OperatorProcess[] = [];
  for (const [i, port] of ports.entries()) {
    replicas.push(await start({ name: `${prefix}-${i}`, webhookPort: port, webhookUrl: `https://127.0.0.1:${balancer.port}`, env: fastLease }));
  }
  return { replicas, ports, balancer };
}
afterAll(async () => fake.close());

/** A namespace with one Operator-mode product whose RegisterUsage answers take delayMs (code `<product>-code`). */
async function slowProduct(namespace: string, product: string, delayMs: number): Promise<void> {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  fake.setBehaviour(`${product}-code`, { delayMs });
  await createProduct(custom, namespace, product, { publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' }, productCode: `${product}-code` });
}

async function createPods(namespace: string, product: string, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `${product}-${i}`);
  for (let i = 0; i < names.length; i += 25) {
    await Promise.all(names.slice(i, i + 25).map((name) => core.createNamespacedPod({ namespace, body: labelledPod(name, product) })));
  }
  return names;
}

const podsOf = async (namespace: string, product: string): Promise<V1Pod[]> =>
  (await core.listNamespacedPod({ namespace, labelSelector: `${productLabel}=${product}` })).items;

/** For every pod: successful RegisterUsage calls with its nonce, and whether one came after its verdict. */
async function registrations(pods: V1Pod[], productCode: string): Promise<{ pod: string; successes: number; afterVerdict: number }[]> {
  const calls = fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === productCode);
  const nonceOf = await operatorNonces(core, operatorNamespace);
  return pods.map((pod) => {
    const nonce = nonceOf(pod);
    const registeredAt = Date.parse(pod.metadata?.annotations?.[annotations.registeredAt] ?? '');
    const mine = calls.filter((c) => c.request.Nonce === nonce);
    return { pod: pod.metadata?.name ?? '', successes: mine.length, afterVerdict: mine.filter((c) => Date.parse(c.time) > registeredAt).length };
  });
}

it('SIGKILL in the middle of a 200-pod burst: after a restart every pod gets a verdict, none is registered again after a success', async () => {
  const namespace = 'crash';
  // Slow enough (16 calls in flight → 64 verdicts/s) that the kill lands mid-burst even on a fast run.
  await slowProduct(namespace, 'crash', 250);
  const port = await freePort();
  const first = await start({ name: 'crashy', webhookPort: port, env: fastLease });
  await createPods(namespace, 'crash', 200);
  await waitForPod('some verdicts', async () => ((await podsOf(namespace, 'crash')).filter((p) => verdict(p)).length >= 40 ? true : undefined));
  first.proc.kill();
  const doneAtKill = (await podsOf(namespace, 'crash')).filter((p) => verdict(p)).length;
  expect(doneAtKill).toBeLessThan(200);

  const second = await start({ name: 'crashy', webhookPort: port, env: fastLease });
  const pods = await waitForPod('200 verdicts', async () => {
    const list = await podsOf(namespace, 'crash');
    return list.filter((p) => verdict(p) === 'Entitled').length === 200 ? list : undefined;
  }, 120_000);
  expect(pods.filter(gated)).toEqual([]);
  const perPod = await registrations(pods, 'crash-code');
  expect(perPod.filter((r) => r.successes === 0)).toEqual([]);
  expect(perPod.filter((r) => r.afterVerdict > 0)).toEqual([]);
  // A call AWS answered just before the kill, whose verdict was not yet written, is repeated
  // with the same nonce: at most one per worker that was busy (32).
  expect(perPod.filter((r) => r.successes > 1).length).toBeLessThanOrEqual(32);
  expect(second.proc.running).toBe(true);
}, 240_000);

it('two replicas: killing the leader lets the other finish the work within the lease duration', async () => {
  const namespace = 'ha';
  await slowProduct(namespace, 'ha', 150);
  const { replicas, balancer } = await startReplicas('replica', 2);
  try {
    const leaders = await waitForPod('one leader', async () => {
      const flags = await Promise.all(replicas.map((r) => r.metric('entitlement_leader')));
      return flags.filter((f) => f === 1).length === 1 ? flags : undefined;
    });
    const leader = replicas[leaders.indexOf(1)] as OperatorProcess;
    const standby = replicas[leaders.indexOf(0)] as OperatorProcess;

    await createPods(namespace, 'ha', 120);
    await waitForPod('the leader to be busy', async () => ((await podsOf(namespace, 'ha')).filter((p) => verdict(p)).length >= 10 ? true : undefined));
    leader.proc.kill();
    const killedAt = Date.now();
    await waitForPod('the standby to lead', async () => ((await standby.metric('entitlement_leader')) === 1 ? true : undefined), 30_000);
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(6_000 + 1_200 + 1_000); // lease duration + retry period + polling slack

    const pods = await waitForPod('all verdicts', async () => {
      const list = await podsOf(namespace, 'ha');
      return list.filter((p) => verdict(p) === 'Entitled').length === 120 ? list : undefined;
    }, 120_000);
    expect((await registrations(pods, 'ha-code')).filter((r) => r.successes === 0 || r.afterVerdict > 0)).toEqual([]);
  } finally {
    await balancer.close();
  }
}, 240_000);

/** Creates labelled pods one after another until stopped; counts creates and failed admissions (an error, or a pod not gated). */
function keepCreatingPods(namespace: string, prefix: string): { stop: () => Promise<{ created: number; failures: number }> } {
  const counts = { created: 0, failures: 0 };
  const state = { stopped: false };
  const loop = (async () => {
    for (let i = 0; !state.stopped; i++) {
      await core.createNamespacedPod({ namespace, body: labelledPod(`${prefix}-${i}`, prefix) }).then(
        (pod) => {
          counts.created++;
          if (!gated(pod)) counts.failures++;
        },
        (error: unknown) => {
          counts.failures++;
          if (counts.failures === 1) process.stderr.write(`first failed admission: ${String(error).slice(0, 600)}\n`);
        },
      );
    }
  })();
  return {
    stop: async () => {
      state.stopped = true;
      await loop;
      return counts;
    },
  };
}

/** The fingerprint of the certificate a replica serves on a port. */
function served(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
}

/** A certificate store as a replica behind the balancer has it, with a shortened CA overlap. */
function replicaStore(caOverlapMs?: number): CertificateStore {
  const dnsNames = [`${webhookServiceName}.${operatorNamespace}.svc`, `${webhookServiceName}.${operatorNamespace}.svc.cluster.local`];
  return new CertificateStore(
    controlPlane().client(),
    { namespace: operatorNamespace, secretName: webhookSecretName, dnsNames, ipAddresses: ['127.0.0.1'], ...(caOverlapMs ? { caOverlapMs } : {}) },
    createLogger({ level: 'error' }),
  );
}

/**
 * Two replicas behind a balancer, labelled pods created before, during and after `rotate`; then no
 * admission failed, the load was real, and both replicas still run.
 */
async function rotateUnderLoad(namespace: string, rotate: (ports: number[]) => Promise<void>): Promise<void> {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const { replicas, ports, balancer } = await startReplicas(namespace, 2);
  try {
    await waitForGating(controlPlane());
    const creator = keepCreatingPods(namespace, namespace);
    await sleep(1_000);
    await rotate(ports);
    await sleep(1_500);
    const { created, failures } = await creator.stop();
    expect(created).toBeGreaterThan(20);
    expect(failures).toBe(0);
    expect(replicas.every((r) => r.proc.running)).toBe(true);
  } finally {
    await balancer.close();
  }
}

const bothServe = (ports: number[], fingerprint: string): Promise<true> =>
  waitForPod('both replicas to serve the new certificate', async () => ((await Promise.all(ports.map(served))).every((f) => f === fingerprint) ? true : undefined), 20_000);

it('certificate rotation while pods are being created: no admission fails', async () => {
  await rotateUnderLoad('rotation', async (ports) => {
    const before = await Promise.all(ports.map(served));
    // Rotate as a replica renewing the certificate would.
    const rotated = await replicaStore().rotate();
    const fingerprint = new X509Certificate(rotated.certPem).fingerprint256;
    expect(before.every((f) => f !== fingerprint)).toBe(true);
    await bothServe(ports, fingerprint);
  });
}, 240_000);

it('a CA rotation while pods are being created: both CAs trusted in between, no admission fails', async () => {
  const admissionregistration = controlPlane().kubeConfig().makeApiClient(AdmissionregistrationV1Api);
  const caBundle = async (): Promise<string> => {
    const config = await admissionregistration.readMutatingWebhookConfiguration({ name: webhookConfigurationName });
    return Buffer.from(config.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString();
  };
  const certificatesIn = (pem: string): X509Certificate[] => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
  await rotateUnderLoad('ca-rotation', async (ports) => {
    const overlapMs = 60_000;
    const store = replicaStore(overlapMs);
    const [oldCa] = certificatesIn((await store.ensure()).caPem);

    // As if the CA had a year left (it rotates with a third of its life left), then each step an overlap later.
    const due = Date.parse(oldCa?.validTo ?? '') - 365 * 24 * 3600 * 1000;
    const step1 = await store.ensure(due);
    const [newCa, previous] = certificatesIn(step1.caPem);
    expect(previous?.fingerprint256).toBe(oldCa?.fingerprint256);
    expect(new X509Certificate(step1.certPem).checkIssued(oldCa as X509Certificate)).toBe(true);
    await waitForPod('the webhook to trust both CAs', async () => ((await caBundle()) === step1.caPem ? true : undefined), 20_000);
    await sleep(1_500);

    const step2 = await store.ensure(due + overlapMs);
    expect(new X509Certificate(step2.certPem).checkIssued(newCa as X509Certificate)).toBe(true);
    await bothServe(ports, new X509Certificate(step2.certPem).fingerprint256);
    await sleep(1_500);

    const step3 = await store.ensure(due + 2 * overlapMs);
    expect(certificatesIn(step3.caPem).map((c) => c.fingerprint256)).toEqual([newCa?.fingerprint256]);
    await waitForPod('the webhook to trust the new CA alone', async () => ((await caBundle()) === step3.caPem ? true : undefined), 20_000);
  });
}, 240_000);

it('SIGTERM in a burst: in-flight registrations finish and are recorded, the process exits 0', async () => {
  const namespace = 'graceful';
  await slowProduct(namespace, 'graceful', 300);
  const port = await freePort();
  const operator = await start({ name: 'graceful', webhookPort: port, env: fastLease });
  await createPods(namespace, 'graceful', 100);
  await waitForPod('registrations in flight', async () => ((await podsOf(namespace, 'graceful')).filter((p) => verdict(p)).length >= 5 ? true : undefined));
  operator.proc.terminate();
  expect(await operator.proc.exited()).toBe(0);

  // Every registration AWS answered before the exit is recorded on its pod.
  const pods = await podsOf(namespace, 'graceful');
  const answered = new Set(fake.calls('RegisterUsage', 'ok').filter((c) => c.productCode === 'graceful-code').map((c) => c.request.Nonce));
  const nonceOf = await operatorNonces(core, operatorNamespace);
  const recorded = new Set(pods.filter((p) => verdict(p) === 'Entitled').map(nonceOf));
  expect([...answered].filter((nonce) => !recorded.has(nonce as string))).toEqual([]);
  expect(recorded.size).toBeLessThan(100);

  await start({ name: 'graceful', webhookPort: port, env: fastLease });
  const done = await waitForPod('all verdicts', async () => {
    const list = await podsOf(namespace, 'graceful');
    return list.filter((p) => verdict(p) === 'Entitled').length === 100 ? list : undefined;
  }, 120_000);
  expect((await registrations(done, 'graceful-code')).filter((r) => r.successes !== 1)).toEqual([]);
}, 240_000);

it('a deposed leader stops at once: registrations in flight are aborted, nothing is written after, the Lease is not won back, exit 1', async () => {
  const namespace = 'deposed';
  const leases = controlPlane().kubeConfig().makeApiClient(CoordinationV1Api);
  // AWS answers long after the old leader may still write (its renew deadline, 4 s).
  await slowProduct(namespace, 'deposed', 20_000);
  const operator = await start({ name: 'deposed', webhookPort: await freePort(), env: fastLease });
  await createPods(namespace, 'deposed', 5);
  await waitForPod('registrations in flight', () => Promise.resolve((fake.state.delayed.get('deposed-code') ?? 0) >= 5 ? true : undefined));

  // Another replica takes the Lease (as one would after a network partition).
  const lease = await leases.readNamespacedLease({ name: leaseName, namespace: operatorNamespace });
  const renewTime = new V1MicroTime();
  await leases.replaceNamespacedLease({
    name: leaseName,
    namespace: operatorNamespace,
    body: { ...lease, spec: { ...lease.spec, holderIdentity: 'usurper', renewTime, acquireTime: renewTime, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } },
  });
  expect(await operator.proc.exited()).toBe(1);
  // It exited while AWS was still to answer: it did not wait out its registrations.
  expect(fake.state.delayed.get('deposed-code')).toBe(5);
  expect((await podsOf(namespace, 'deposed')).filter((p) => verdict(p) !== undefined)).toEqual([]);
  // Nobody renews the usurper's Lease, yet the deposed leader never took it back before it exited.
  expect((await leases.readNamespacedLease({ name: leaseName, namespace: operatorNamespace })).spec?.holderIdentity).toBe('usurper');
  // Leave the next leader nothing slow to finish.
  await leases.deleteNamespacedLease({ name: leaseName, namespace: operatorNamespace });
  fake.setBehaviour('deposed-code', {});
  await core.deleteCollectionNamespacedPod({ namespace });
}, 120_000);

it('SIGTERM at any moment of start-up ends the process at once, exit 0, the Lease released or never taken', async () => {
  const leases = controlPlane().kubeConfig().makeApiClient(CoordinationV1Api);
  // From module loading to after start-up finished. (The first few tens of milliseconds, before
  // any JavaScript runs, are out of reach of a handler.)
  for (const delayMs of [120, 400, 800, 1_500, 3_000]) {
    const name = `early-sigterm-${delayMs}`;
    const operator = await start({ name, waitReady: false });
    await sleep(delayMs);
    const signalled = Date.now();
    operator.proc.terminate();
    const code = await operator.proc.exited();
    const tookMs = Date.now() - signalled;
    expect({ delayMs, code, withinASecond: tookMs < 1_000 }).toEqual({ delayMs, code: 0, withinASecond: true });
    const lease = await leases.readNamespacedLease({ name: 'entitlement-operator-leader', namespace: operatorNamespace }).catch(() => undefined);
    expect(lease?.spec?.holderIdentity === name).toBe(false);
  }
}, 120_000);

it('a leader without credentials leaves pods Unknown/Retrying, with one Event saying why; a correctly configured leader then entitles them', async () => {
  const namespace = 'no-credentials';
  const events = controlPlane().kubeConfig().makeApiClient(EventsV1Api);
  await slowProduct(namespace, 'creds', 0);
  // Nothing the SDK's default chain could find: no keys, no files, no instance metadata.
  const unconfigured = await start({
    name: 'unconfigured',
    env: { ...fastLease, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' },
  });
  const names = await createPods(namespace, 'creds', 3);
  await waitForPod('the product to say Unknown/Retrying', async () => {
    const condition = (await getProduct(custom, namespace, 'creds')).status?.conditions?.find((c) => c.type === 'Entitled');
    return condition?.status === 'Unknown' && condition.reason === 'Retrying' ? condition : undefined;
  }, 60_000);
  for (const pod of await podsOf(namespace, 'creds')) expect([verdict(pod), gated(pod)]).toEqual([undefined, true]);
  expect(fake.calls('RegisterUsage').filter((c) => c.productCode === 'creds-code')).toEqual([]);
  // One Event on the product that says what is missing, however many pods and retries.
  const productEvents = await waitForPod('the Retrying Event on the product', async () => {
    const list = (await events.listNamespacedEvent({ namespace, fieldSelector: 'regarding.name=creds' })).items.filter((e) => e.reason === 'Retrying');
    return list.length > 0 ? list : undefined;
  });
  await sleep(2_000);
  expect((await events.listNamespacedEvent({ namespace, fieldSelector: 'regarding.name=creds' })).items.filter((e) => e.reason === 'Retrying')).toHaveLength(1);
  expect(productEvents[0]).toMatchObject({ type: 'Warning', regarding: { kind: 'MarketplaceProduct', name: 'creds' } });
  expect(productEvents[0]?.note).toMatch(/credentials/i);

  await unconfigured.proc.stop();
  await start({ name: 'configured', env: fastLease });
  const pods = await waitForPod('all entitled', async () => {
    const list = await podsOf(namespace, 'creds');
    return list.every((p) => verdict(p) === 'Entitled' && !gated(p)) ? list : undefined;
  }, 60_000);
  expect(pods.map((p) => p.metadata?.name).sort()).toEqual(names.sort());
}, 180_000);
