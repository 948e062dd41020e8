// The shipped image as users run it: built from the Dockerfile, imported into a real node's
// containerd, installed with the README's overlay in one apply, two replicas. In the policy
// admission mode by default (REAL_NODE_ADMISSION=webhook runs the webhook mode's bundle, with
// its webhook-only tests). Tests run in order and share the cluster; the last one stops it and checks that the
// host is as it was.
import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, type V1Pod, type V1PodSpec } from '@kubernetes/client-node';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { productLabel } from '../../src/api/marketplace-product.js';
import { roleArnAnnotation, roleSessionName } from '../../src/aws/pod-identity.js';
import { storedLedger } from '../support/ledgers.js';
import { leaseName, webhookSecretName } from '../../src/api/names.js';
import { FakeAws, fakeCredentials } from '../fake-aws/server.js';
import { operatorNamespace, type AdmissionMode } from '../support/bundle.js';
import { hostStateChanges, readHostState, type HostState } from '../support/host-state.js';
import { buildImages, images, imagesUnavailable } from '../support/images.js';
import { installWithOverlay } from '../support/overlay-install.js';
import { helmInstall, helmUninstall, helmUpgrade, overlayDir, uninstallOverlay } from '../support/helm-install.js';
import { createProduct, gated, reason, verdict } from '../support/pods.js';
import { ApiHttp } from '../support/api-http.js';
import { fakeNodeTaint, nodeName, nodeNetwork, RealCluster, realNodeUnavailable } from '../support/real-cluster.js';
import { createMany, VerdictWatch } from '../support/scale.js';
import { operatorNonces } from '../support/seals.js';
import { waitFor } from '../support/wait.js';

const deployment = 'entitlement-operator-controller-manager';
const mode: AdmissionMode = process.env.REAL_NODE_ADMISSION === 'webhook' ? 'webhook' : 'policy';
const inMode = (wanted: AdmissionMode) => (mode === wanted ? it : it.skip);
const scalePods = 3_000;
const operatorPods = 'app.kubernetes.io/name=entitlement-operator';
const unavailable = realNodeUnavailable() ?? imagesUnavailable();
if (unavailable) process.stderr.write(`real-node cluster suite skipped: ${unavailable}\n`);

let hostBefore: HostState;
let cluster: RealCluster | undefined;
let fakeAws: FakeAws | undefined;
let workDir: string;
let core: CoreV1Api;
let apps: AppsV1Api;
let custom: CustomObjectsApi;
let leases: CoordinationV1Api;
let events: EventsV1Api;

const timings: Record<string, number> = {};
async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await step();
  } finally {
    timings[what] = Date.now() - started;
  }
}

(unavailable ? describe.skip : describe)('the shipped image in a real single-node cluster', () => {
  beforeAll(async () => {
    hostBefore = await readHostState();
    const built = await timed('images', buildImages);
    const started = await timed('cluster', () => RealCluster.start());
    cluster = started;
    const plane = started.controlPlane;
    const toImport = [built.archives.pause, built.archives.busybox, built.archives.operator];
    await timed('image import', async () => {
      for (const archive of toImport) await started.node.importImage(archive);
    });
    const fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] }, 0, nodeNetwork.hostAddress);
    fakeAws = fake;
    const kc = plane.kubeConfig();
    [core, apps, custom, leases, events] = [kc.makeApiClient(CoreV1Api), kc.makeApiClient(AppsV1Api), kc.makeApiClient(CustomObjectsApi), kc.makeApiClient(CoordinationV1Api), kc.makeApiClient(EventsV1Api)];
    workDir = await mkdtemp(path.join(os.tmpdir(), 'real-cluster-install-'));
    await timed('install to 2 Ready replicas', async () => {
      await plane.kubectlOk(['create', 'namespace', operatorNamespace]);
      await plane.kubectlOk(['-n', operatorNamespace, 'create', 'secret', 'generic', 'aws-keys', `--from-literal=access_key_id=${fakeCredentials.accessKeyId}`, `--from-literal=secret_access_key=${fakeCredentials.secretAccessKey}`]);
      const [name, tag] = images.operator.split(':') as [string, string];
      await installWithOverlay(plane, workDir, { bundle: mode, image: { name, tag }, region: 'us-east-1', endpoint: fake.url, credentialsSecret: 'aws-keys' });
      await plane.kubectlOk(['-n', operatorNamespace, 'rollout', 'status', `deployment/${deployment}`, '--timeout=180s']);
    });
  }, 1_200_000);

  afterAll(async () => {
    process.stderr.write(`real-node cluster timings (ms): ${JSON.stringify(timings)}\n`);
    await fakeAws?.close();
    await cluster?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }, 120_000);

  const aws = (): FakeAws => {
    if (!fakeAws) throw new Error('the fake AWS did not start');
    return fakeAws;
  };
  const cluster_ = (): RealCluster => {
    if (!cluster) throw new Error('the cluster did not start');
    return cluster;
  };
  const kubectl = (args: string[]): Promise<string> => cluster_().controlPlane.kubectlOk(args);
  const operatorPodList = async (): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace: operatorNamespace, labelSelector: operatorPods })).items;
  const leader = async (): Promise<string | undefined> => (await leases.readNamespacedLease({ name: leaseName, namespace: operatorNamespace })).spec?.holderIdentity ?? undefined;
  const podsOf = async (namespace: string, app: string): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` })).items;

  /** A pod spec of the busybox image that the `restricted` Pod Security level admits. */
  const busyboxSpec = (command: string[], serviceAccountName?: string): V1PodSpec => ({
    ...(serviceAccountName ? { serviceAccountName } : {}),
    automountServiceAccountToken: false,
    terminationGracePeriodSeconds: 1,
    securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [{
      name: 'app',
      image: images.busybox,
      imagePullPolicy: 'Never',
      command: ['/bin/busybox', ...command],
      securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    }],
  });
  const sleeper = (name: string, labels: Record<string, string> = {}): V1Pod => ({ metadata: { name, labels }, spec: busyboxSpec(['sleep', '3600']) });

  async function deployBusybox(namespace: string, name: string, product: string | undefined, extra: { serviceAccountName?: string; replicas?: number } = {}): Promise<void> {
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name },
        spec: {
          replicas: extra.replicas ?? 2,
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name, ...(product ? { [productLabel]: product } : {}) } },
            spec: busyboxSpec(['httpd', '-f', '-p', '8080', '-h', '/'], extra.serviceAccountName),
          },
        },
      },
    });
  }

  async function runningContainers(namespace: string, app: string, count: number): Promise<V1Pod[]> {
    return waitFor(`${count} pods of ${app} with running containers`, async () => {
      const pods = await podsOf(namespace, app);
      const running = pods.filter((p) => p.status?.containerStatuses?.every((c) => c.state?.running && c.ready));
      return running.length === count ? running : undefined;
    }, 120_000, 500);
  }

  async function namespace(name: string): Promise<string> {
    await core.createNamespace({ body: { metadata: { name } } });
    await waitFor(`the default ServiceAccount in ${name}`, async () => ((await core.listNamespacedServiceAccount({ namespace: name })).items.some((sa) => sa.metadata?.name === 'default') ? true : undefined));
    return name;
  }

  it('runs two Ready replicas of the shipped image on the real node, exactly one of them the leader', async () => {
    const pods = await operatorPodList();
    expect(pods).toHaveLength(2);
    for (const pod of pods) {
      expect(pod.spec?.nodeName).toBe(nodeName);
      expect(pod.spec?.containers[0]?.image).toBe(images.operator);
      expect(pod.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    }
    const holder = await waitFor('a leader', leader);
    expect(pods.map((p) => p.metadata?.name)).toContain(holder);
    // Configured before it rolled out: one apply, one ReplicaSet, no replica started half-configured.
    const replicaSets = (await apps.listNamespacedReplicaSet({ namespace: operatorNamespace, labelSelector: operatorPods })).items;
    expect(replicaSets).toHaveLength(1);
    expect((await apps.readNamespacedDeployment({ name: deployment, namespace: operatorNamespace })).metadata?.generation).toBe(1);
  });

  it('entitles a Deployment of a real image, whose containers then run', async () => {
    const ns = await namespace('paid');
    await createProduct(custom, ns, 'paid', { publicKey: { pem: aws().publicKeyPem }, identity: { mode: 'Operator' }, productCode: 'paid-code' });
    await deployBusybox(ns, 'paid', 'paid');
    const pods = await timed('entitled Deployment to running containers', () => runningContainers(ns, 'paid', 2));
    for (const pod of pods) expect([verdict(pod), gated(pod), pod.spec?.nodeName]).toEqual(['Entitled', false, nodeName]);
    expect(aws().calls('RegisterUsage').filter((c) => c.productCode === 'paid-code' && c.status === 200)).toHaveLength(2);
    let table = '';
    await waitFor('the product status in kubectl get mpp', async () => {
      table = await kubectl(['get', 'mpp', '-n', ns]);
      return /^paid\s+paid-code\s+True\s+SignatureVerified\s+2\s+0\s+\S+$/m.test(table) ? true : undefined;
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}; it printed:\n${table}`);
    });
    expect(table.split('\n')[0]).toMatch(/^NAME\s+PRODUCT CODE\s+ENTITLED\s+REASON\s+ENTITLED PODS\s+BLOCKED\s+AGE$/);
  });

  it('keeps the pods of a product that is not entitled gated, with annotations and Events', async () => {
    const ns = await namespace('unpaid');
    aws().setBehaviour('unpaid-code', { error: 'CustomerNotEntitledException' });
    await createProduct(custom, ns, 'unpaid', { publicKey: { pem: aws().publicKeyPem }, identity: { mode: 'Operator' }, productCode: 'unpaid-code' });
    await deployBusybox(ns, 'unpaid', 'unpaid');
    const pods = await waitFor('2 verdicts', async () => {
      const list = await podsOf(ns, 'unpaid');
      return list.length === 2 && list.every((p) => verdict(p) === 'NotEntitled') ? list : undefined;
    }, 120_000, 500);
    for (const pod of pods) {
      expect([reason(pod), gated(pod), pod.spec?.nodeName, pod.status?.phase]).toEqual(['CustomerNotEntitled', true, undefined, 'Pending']);
      expect(pod.status?.conditions?.find((c) => c.type === 'PodScheduled')).toMatchObject({ status: 'False', reason: 'SchedulingGated' });
      const podEvents = await waitFor('the NotEntitled Event', async () => {
        const list = (await events.listNamespacedEvent({ namespace: ns, fieldSelector: `regarding.name=${pod.metadata?.name ?? ''}` })).items;
        return list.some((e) => e.reason === 'NotEntitled') ? list : undefined;
      });
      expect(podEvents.find((e) => e.reason === 'NotEntitled')).toMatchObject({ type: 'Warning' });
    }
  });

  it("Pod identity: the pod's ServiceAccount token, verified by the fake's STS against the cluster's key", async () => {
    const ns = await namespace('podid');
    const role = 'arn:aws:iam::123456789012:role/podid-metering';
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: role } } } });
    await createProduct(custom, ns, 'podid', { publicKey: { pem: aws().publicKeyPem }, identity: { mode: 'Pod' }, productCode: 'podid-code' });
    await deployBusybox(ns, 'podid', 'podid', { serviceAccountName: 'app' });
    const pods = await runningContainers(ns, 'podid', 2);
    for (const pod of pods) {
      const session = roleSessionName({ namespace: ns, name: pod.metadata?.name ?? '' });
      expect(aws().calls('AssumeRoleWithWebIdentity').find((c) => c.roleSessionName === session)).toMatchObject({ status: 200, roleArn: role });
      expect(aws().calls('RegisterUsage').find((c) => c.roleSessionName === session)).toMatchObject({ status: 200, productCode: 'podid-code', roleArn: role });
    }
  });

  it('with the gate guard in place, controllers and kubectl work on product pods as before: a rollout, a StatefulSet pod recreated under its name, the garbage collector, kubectl debug and label', async () => {
    // A ReplicaSet rollout: a new template, new pods entitled and running, the old ones gone.
    const before = new Set((await podsOf('paid', 'paid')).map((p) => p.metadata?.uid));
    await kubectl(['-n', 'paid', 'patch', 'deployment/paid', '--type=merge', '-p', JSON.stringify({ spec: { template: { metadata: { annotations: { 'example.com/rollout': '2' } } } } })]);
    await kubectl(['-n', 'paid', 'rollout', 'status', 'deployment/paid', '--timeout=120s']);
    const rolled = await runningContainers('paid', 'paid', 2);
    for (const pod of rolled) expect([before.has(pod.metadata?.uid), verdict(pod)]).toEqual([false, 'Entitled']);

    // A StatefulSet pod deleted: the controller recreates it under the same name, and it is registered afresh.
    await core.createNamespacedService({ namespace: 'paid', body: { metadata: { name: 'db' }, spec: { clusterIP: 'None', selector: { app: 'db' }, ports: [{ port: 8080 }] } } });
    await apps.createNamespacedStatefulSet({
      namespace: 'paid',
      body: { metadata: { name: 'db' }, spec: { serviceName: 'db', replicas: 1, selector: { matchLabels: { app: 'db' } }, template: { metadata: { labels: { app: 'db', [productLabel]: 'paid' } }, spec: busyboxSpec(['sleep', '3600']) } } },
    });
    const [first] = await runningContainers('paid', 'db', 1);
    await core.deleteNamespacedPod({ name: 'db-0', namespace: 'paid' });
    const [second] = await waitFor('db-0 recreated and running', async () => {
      const pods = await runningContainers('paid', 'db', 1);
      return pods[0]?.metadata?.uid !== first?.metadata?.uid ? pods : undefined;
    }, 120_000, 500);
    // Registered afresh: its own nonce (another uid), which AWS saw.
    const nonceOf = await operatorNonces(core, operatorNamespace);
    const registered = aws().calls('RegisterUsage', 'ok').some((c) => c.request.Nonce === nonceOf(second ?? {}));
    expect([second?.metadata?.name, verdict(second ?? {}), nonceOf(second ?? {}) === nonceOf(first ?? {}), registered]).toEqual(['db-0', 'Entitled', false, true]);

    // kubectl label and annotate (other keys), and kubectl debug (an ephemeral container).
    const pod = rolled[0]?.metadata?.name ?? '';
    await kubectl(['-n', 'paid', 'label', 'pod', pod, 'tier=web']);
    await kubectl(['-n', 'paid', 'annotate', 'pod', pod, 'example.com/owner=payments']);
    await kubectl(['-n', 'paid', 'debug', pod, `--image=${images.busybox}`, '--image-pull-policy=Never', '-c', 'debugger', '--', '/bin/busybox', 'sleep', '30']);
    await waitFor('the debug container running', async () => {
      const current = await core.readNamespacedPod({ name: pod, namespace: 'paid' });
      return current.status?.ephemeralContainerStatuses?.find((c) => c.name === 'debugger')?.state?.running ? true : undefined;
    }, 60_000, 500);

    // The garbage collector: orphaning removes db-0's owner reference; deleting cascades.
    await kubectl(['-n', 'paid', 'delete', 'statefulset', 'db', '--cascade=orphan']);
    await waitFor("db-0's owner reference removed", async () => ((await core.readNamespacedPod({ name: 'db-0', namespace: 'paid' })).metadata?.ownerReferences?.length ?? 0) === 0 ? true : undefined, 60_000, 500);
    await kubectl(['-n', 'paid', 'delete', 'pod', 'db-0', '--wait=true', '--timeout=60s']);
    await kubectl(['-n', 'paid', 'delete', 'service', 'db']);
  }, 300_000);

  it('deleting the leader pod: the other replica leads, and a new labelled pod is entitled', async () => {
    const old = await waitFor('a leader', leader);
    await timed('failover', async () => {
      await core.deleteNamespacedPod({ name: old, namespace: operatorNamespace });
      await waitFor('another leader', async () => {
        const now = await leader();
        return now && now !== old ? now : undefined;
      }, 60_000, 200);
    });
    await kubectl(['-n', 'paid', 'scale', 'deployment/paid', '--replicas=3']);
    await runningContainers('paid', 'paid', 3);
    await kubectl(['-n', operatorNamespace, 'rollout', 'status', `deployment/${deployment}`, '--timeout=120s']);
  });

  it("a replica deleted while it starts stops at once: tini, PID 1 in its container, forwards the kubelet's SIGTERM to the operator", async () => {
    const before = new Set((await operatorPodList()).map((p) => p.metadata?.name));
    await kubectl(['-n', operatorNamespace, 'rollout', 'restart', `deployment/${deployment}`]);
    const starting = await waitFor('a new replica whose container runs but is not Ready yet', async () => {
      const pods = await operatorPodList();
      return pods.find((p) => !before.has(p.metadata?.name) && p.status?.containerStatuses?.[0]?.state?.running && !p.status.containerStatuses[0].ready);
    }, 60_000, 50);
    const name = starting.metadata?.name ?? '';
    const api = new ApiHttp(cluster_().controlPlane);
    let exitCode: number | undefined;
    const gone = new Promise<void>((resolve) => {
      const watch = api.watch(`/api/v1/namespaces/${operatorNamespace}/pods?fieldSelector=metadata.name%3D${name}`, starting.metadata?.resourceVersion ?? '0', (type, object) => {
        const terminated = (object as unknown as V1Pod).status?.containerStatuses?.[0]?.state?.terminated;
        if (terminated) exitCode = terminated.exitCode;
        if (type === 'DELETED') {
          watch.stop();
          resolve();
        }
      });
    });
    // The default grace period (30 s): a process that ignored SIGTERM would be SIGKILLed (137) after it.
    await core.deleteNamespacedPod({ name, namespace: operatorNamespace });
    await gone;
    api.close();
    expect({ pod: name, exitCode }).toEqual({ pod: name, exitCode: 0 });
    await kubectl(['-n', operatorNamespace, 'rollout', 'status', `deployment/${deployment}`, '--timeout=120s']);
  });

  inMode('policy')('with the operator scaled to 0, labelled pods are still created and wait gated; with a replica back they are entitled and run', async () => {
    await kubectl(['-n', operatorNamespace, 'scale', `deployment/${deployment}`, '--replicas=0']);
    await waitFor('no operator pods', async () => ((await operatorPodList()).length === 0 ? true : undefined), 90_000, 500);
    const label = { [productLabel]: 'paid' };
    const names = ['while-down-0', 'while-down-1', 'while-down-2'];
    for (const name of names) expect(gated(await core.createNamespacedPod({ namespace: 'paid', body: sleeper(name, label) }))).toBe(true);
    await kubectl(['-n', operatorNamespace, 'scale', `deployment/${deployment}`, '--replicas=2']);
    const running = await waitFor('the pods created while no replica ran, running', async () => {
      const pods = await Promise.all(names.map((name) => core.readNamespacedPod({ name, namespace: 'paid' })));
      return pods.every((p) => p.status?.containerStatuses?.[0]?.state?.running) ? pods : undefined;
    }, 180_000, 500);
    expect(running.map(verdict)).toEqual(['Entitled', 'Entitled', 'Entitled']);
    await kubectl(['-n', operatorNamespace, 'rollout', 'status', `deployment/${deployment}`, '--timeout=120s']);
  });

  inMode('webhook')('with the operator scaled to 0, labelled pods are refused (fail closed) and other pods are not', async () => {
    await kubectl(['-n', operatorNamespace, 'scale', `deployment/${deployment}`, '--replicas=0']);
    await waitFor('no operator pods', async () => ((await operatorPodList()).length === 0 ? true : undefined), 90_000, 500);
    const label = { [productLabel]: 'paid' };
    await expect(core.createNamespacedPod({ namespace: 'paid', body: sleeper('refused', label) })).rejects.toThrow(/failed calling webhook/);
    await core.createNamespacedPod({ namespace: 'paid', body: sleeper('plain') });
    // The operator's own namespace is outside the webhook, so the operator can always come back.
    await core.createNamespacedPod({ namespace: operatorNamespace, body: sleeper('own-namespace', label) });
    await core.deleteNamespacedPod({ name: 'own-namespace', namespace: operatorNamespace, gracePeriodSeconds: 0 });
    await kubectl(['-n', operatorNamespace, 'scale', `deployment/${deployment}`, '--replicas=2']);
    await kubectl(['-n', operatorNamespace, 'rollout', 'status', `deployment/${deployment}`, '--timeout=120s']);
    await core.createNamespacedPod({ namespace: 'paid', body: sleeper('after-scale-up', label) });
    const pod = await waitFor('the new pod running', async () => {
      const p = await core.readNamespacedPod({ name: 'after-scale-up', namespace: 'paid' });
      return p.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
    }, 120_000, 500);
    expect(verdict(pod)).toBe('Entitled');
  });

  inMode('webhook')('deleting the webhook certificate Secret: it is made again and admissions go on', async () => {
    const name = webhookSecretName;
    const { uid } = (await core.readNamespacedSecret({ name, namespace: operatorNamespace })).metadata ?? {};
    await core.deleteNamespacedSecret({ name, namespace: operatorNamespace });
    await timed('certificate Secret recreated', () => waitFor('the Secret again', async () => {
      const again = await core.readNamespacedSecret({ name, namespace: operatorNamespace }).catch(() => undefined);
      return again && again.metadata?.uid !== uid ? again : undefined;
    }, 120_000, 500));
    for (let i = 0; i < 5; i++) {
      await core.createNamespacedPod({ namespace: 'paid', body: sleeper(`after-rotation-${i}`, { [productLabel]: 'paid' }) });
    }
    await waitFor('5 verdicts after the Secret came back', async () => {
      const pods = await Promise.all([0, 1, 2, 3, 4].map((i) => core.readNamespacedPod({ name: `after-rotation-${i}`, namespace: 'paid' })));
      return pods.every((p) => verdict(p) === 'Entitled') ? true : undefined;
    }, 60_000, 500);
  }, 240_000);

  it(`gates and entitles ${scalePods} labelled pods on kwok nodes and keeps their usage in the ledger, the operator running under the bundle's limits`, async () => {
    for (let i = 0; i < Math.ceil(scalePods / 100); i++) await cluster_().addFakeNode(`kwok-node-${i}`);
    const ns = await namespace('scale');
    // Metered too: the ledger of thousands of running pods must fit the operator's limits as well.
    const metering = { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'memory', unit: 'MemoryGiB' }] };
    await createProduct(custom, ns, 'scale', { publicKey: { pem: aws().publicKeyPem }, identity: { mode: 'Operator' }, productCode: 'scale-code', metering });
    const api = new ApiHttp(cluster_().controlPlane);
    const watch = new VerdictWatch(() => undefined, ns);
    await watch.start(api);
    const body = (index: number): object => ({
      metadata: { name: `scale-${String(index).padStart(5, '0')}`, labels: { [productLabel]: 'scale' } },
      spec: {
        nodeSelector: { type: 'kwok' },
        tolerations: [{ ...fakeNodeTaint, operator: 'Equal' }],
        containers: [{ name: 'app', image: images.busybox, resources: { requests: { cpu: '10m', memory: '16Mi' } } }],
      },
    });
    try {
      await timed(`${scalePods} pods created and entitled`, async () => {
        await createMany(api, ns, 0, scalePods, { concurrency: 16 }, body);
        await watch.until(scalePods, 600_000, () => true);
      });
    } finally {
      watch.stop();
    }
    const registrations = aws().calls('RegisterUsage').filter((c) => c.productCode === 'scale-code' && c.status === 200);
    expect(registrations).toHaveLength(scalePods);
    const product = (await custom.getNamespacedCustomObject({ group: 'marketplace.entitlements.io', version: 'v1alpha1', plural: 'marketplaceproducts', namespace: ns, name: 'scale' })) as { metadata: { uid: string } };
    const ledgerBytes = await timed(`${scalePods} running pods in the usage ledger`, () =>
      waitFor('every running pod in the ledger', async () => {
        const stored = await storedLedger(core, product.metadata.uid);
        return stored && Object.keys(stored.ledger.pods).length === scalePods ? stored.bytes : undefined;
      }, 120_000, 1_000),
    );
    process.stderr.write(`usage ledger of ${scalePods} pods: ${ledgerBytes} bytes\n`);
    for (const pod of await operatorPodList()) {
      const memory = await cluster_().node.podMemory(pod.metadata?.uid ?? '');
      process.stderr.write(`operator pod ${pod.metadata?.name ?? ''}: memory limit ${memory.limit}, peak ${memory.peak}\n`);
      expect(memory.limit).toBe(256 * 1024 * 1024);
      expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    }
  }, 900_000);

  it('the operator pods never restarted', async () => {
    const pods = await operatorPodList();
    expect(pods).toHaveLength(2);
    for (const pod of pods) {
      expect({ pod: pod.metadata?.name, restarts: pod.status?.containerStatuses?.[0]?.restartCount }).toEqual({ pod: pod.metadata?.name, restarts: 0 });
    }
  });

  // The chart, as the README's first way to install: the kustomize install goes (its CRD and
  // namespace stay, with every product and the operator's state), helm install takes over.
  const helmValues = (): object => {
    const [repository, tag] = images.operator.split(':') as [string, string];
    return { image: { repository, tag }, admission: { mode }, aws: { region: 'us-east-1', endpoints: { metering: aws().url, sts: aws().url }, credentialsSecret: 'aws-keys' } };
  };

  it('helm install: the chart takes over from the kustomize install, and a new labelled Deployment is entitled', async () => {
    const plane = cluster_().controlPlane;
    await timed('kustomize uninstall (CRD and namespace kept)', () => uninstallOverlay(plane, overlayDir(workDir)));
    expect(await operatorPodList()).toEqual([]);
    const notes = await timed('helm install to 2 Ready replicas', () => helmInstall(plane, helmValues()));
    expect(notes).toMatch(/STATUS: deployed/);
    expect(notes).toContain(`kubectl -n ${operatorNamespace} rollout status deployment/${deployment}`);
    const pods = await operatorPodList();
    expect(pods.map((p) => [p.spec?.containers[0]?.image, p.metadata?.labels?.['app.kubernetes.io/component']])).toEqual([[images.operator, 'controller-manager'], [images.operator, 'controller-manager']]);
    await deployBusybox('paid', 'paid-helm', 'paid');
    for (const pod of await runningContainers('paid', 'paid-helm', 2)) expect([verdict(pod), gated(pod)]).toEqual(['Entitled', false]);
  }, 300_000);

  it('helm upgrade: a changed value rolls out, and a labelled pod in a namespace it exempts is never gated', async () => {
    const plane = cluster_().controlPlane;
    const ns = await namespace('tools');
    await timed('helm upgrade', () => helmUpgrade(plane, { admission: { exemptNamespaces: [ns] } }));
    const manager = (await apps.readNamespacedDeployment({ name: deployment, namespace: operatorNamespace })).spec?.template.spec?.containers[0];
    expect(manager?.args).toContain(`--exempt-namespaces=${ns}`);
    const pod = await core.createNamespacedPod({ namespace: ns, body: sleeper('tool', { [productLabel]: 'paid' }) });
    expect(gated(pod)).toBe(false);
    const running = await waitFor('the exempt pod running', async () => {
      const current = await core.readNamespacedPod({ name: 'tool', namespace: ns });
      return current.status?.containerStatuses?.[0]?.state?.running ? current : undefined;
    }, 120_000, 500);
    expect(verdict(running)).toBeUndefined();
    // Outside it, pods are gated and checked as before.
    await deployBusybox('paid', 'paid-upgraded', 'paid', { replicas: 1 });
    for (const p of await runningContainers('paid', 'paid-upgraded', 1)) expect(verdict(p)).toBe('Entitled');
  }, 300_000);

  it('helm uninstall leaves nothing of the release behind but the CRD, as Helm does; products and the operator state stay', async () => {
    const plane = cluster_().controlPlane;
    await timed('helm uninstall', () => helmUninstall(plane));
    const clusterWide = await kubectl(['get', 'clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings,mutatingadmissionpolicies,mutatingadmissionpolicybindings,mutatingwebhookconfigurations', '-o', 'name']);
    expect(clusterWide.split('\n').filter((name) => name.includes('entitlement-operator'))).toEqual([]);
    expect(await kubectl(['get', 'crd', '-o', 'name', '-l', 'app.kubernetes.io/part-of=entitlement-operator'])).toBe('customresourcedefinition.apiextensions.k8s.io/marketplaceproducts.marketplace.entitlements.io\n');
    expect(await kubectl(['get', 'mpp', '-n', 'paid', '-o', 'name'])).toBe('marketplaceproduct.marketplace.entitlements.io/paid\n');
    // Left in the namespace: what the operator itself made at run time, until the namespace is
    // deleted (the Lease, the MAC key its verdict seals need after a reinstall, the webhook's
    // certificate in that mode, the usage ledgers with hours not yet reported), the test's
    // credentials Secret, and what Kubernetes puts in every namespace.
    const expected = [`lease.coordination.k8s.io/${leaseName}`, 'secret/aws-keys', 'secret/entitlement-operator-mac-key', 'configmap/kube-root-ca.crt', 'serviceaccount/default', ...(mode === 'webhook' ? [`secret/${webhookSecretName}`] : [])].sort();
    const kinds = 'deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies,configmaps,secrets,leases';
    const left = await waitFor('the operator pods gone', async () => {
      const names = (await kubectl(['get', kinds, '-n', operatorNamespace, '-o', 'name'])).trim().split('\n').filter((name) => !name.startsWith('configmap/entitlement-usage-')).sort();
      return names.some((name) => name.startsWith('pod/')) ? undefined : names;
    }, 60_000, 500);
    expect(left).toEqual(expected);
  }, 300_000);

  it('stopping the cluster leaves nothing on the host', async () => {
    await fakeAws?.close();
    fakeAws = undefined;
    await cluster_().stop();
    cluster = undefined;
    expect(hostStateChanges(hostBefore, await readHostState())).toEqual([]);
  }, 120_000);
});
