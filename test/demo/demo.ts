// `make demo`: the operator doing its job on this machine, without AWS, Docker or root. A local
// cluster (etcd, API server, controller-manager, scheduler, kwok nodes), the fake AWS with two
// products (one customer subscribed, one not yet), the install bundle of the policy admission mode
// (Kubernetes 1.37: the API server gates labelled pods itself), the built operator, and a
// Deployment of each product. Then the second customer subscribes and its pods turn entitled on
// their own. Runs until Ctrl-C (or, with DEMO_EXIT=1, until the story is told), then removes
// everything it started.
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel } from '../../src/api/marketplace-product.js';
import { runPlugin } from '../../src/cli/kubectl-marketplace.js';
import { FakeAws } from '../fake-aws/server.js';
import { binaries, binary } from '../support/testbin.js';
import { KwokCluster } from '../support/kwok-cluster.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess } from '../support/operator.js';
import path from 'node:path';

const namespace = 'demo';
const started = Date.now();
const say = (text: string): void => {
  process.stdout.write(`[demo ${String(Math.round((Date.now() - started) / 1000)).padStart(3)}s] ${text}\n`);
};
const show = (text: string): void => {
  process.stdout.write(`${text.replace(/^/gm, '    ')}\n`);
};

class Stopped extends Error {}

/** Polls `check` until it is true; gives up at `timeoutMs` or when the demo is stopped. */
async function until(what: string, check: () => Promise<boolean>, signal: AbortSignal, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (signal.aborted) throw new Stopped();
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250, undefined, { signal }).catch(() => undefined);
  }
}

function manifests(publicKeyPem: string): string {
  const product = (name: string, code: string): string => `apiVersion: marketplace.entitlements.io/v1alpha1
kind: MarketplaceProduct
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  productCode: ${code}
  publicKeyVersion: 1
  publicKey:
    pem: |
${publicKeyPem.trim().replace(/^/gm, '      ')}
  identity: {mode: Operator}
  metering:
    dimensions: [{name: pods, unit: Pod}]
`;
  const deployment = (name: string): string => `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  replicas: 2
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}, ${productLabel}: ${name}}}
    spec: {containers: [{name: app, image: registry.invalid/${name}:1.0, resources: {requests: {cpu: 250m, memory: 256Mi}}}]}
`;
  return [`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${namespace}}\n`, product('analytics', 'demo-analytics'), product('reports', 'demo-reports'), deployment('analytics'), deployment('reports')].join('---\n');
}

async function main(): Promise<void> {
  const stop = new AbortController();
  const once = (): void => {
    if (!stop.signal.aborted) say('stopping: removing everything the demo started');
    stop.abort();
  };
  process.once('SIGINT', once);
  process.once('SIGTERM', once);

  say('finding or building the binaries the demo runs (etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok; a few minutes the first time, then cached)');
  await binaries(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'kwok']);
  const kubectl = await binary('kubectl');
  say('starting a local cluster: etcd, kube-apiserver, controller-manager, scheduler, 2 kwok nodes');
  const cluster = await KwokCluster.start({ nodes: 2 });
  let fake: FakeAws | undefined;
  try {
    const plane = cluster.controlPlane;
    say('starting the fake AWS Marketplace Metering: product demo-analytics (subscribed), demo-reports (customer not subscribed yet)');
    fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] });
    fake.setBehaviour('demo-reports', { error: 'CustomerNotEntitledException' });
    say('applying the install bundle of the policy admission mode (config/install-policy-mode.yaml)');
    await installBundle(plane, 'policy');
    say('starting the operator (dist/main.js --admission=policy) as the bundle\'s ServiceAccount; checks of refused pods again every 10 s at most');
    await startOperatorProcess(plane, fake, await serviceAccountKubeconfig(plane), { name: 'operator', admission: 'policy', env: { RECHECK_MAX_INTERVAL_SECONDS: '10', LOG_LEVEL: 'warn' } });
    const samples = path.join(plane.dir, 'demo-samples.yaml');
    await writeFile(samples, manifests(fake.publicKeyPem));
    say(`applying two MarketplaceProducts and a Deployment of each (${samples})`);
    await plane.kubectlOk(['apply', '-f', samples]);

    const core = plane.kubeConfig().makeApiClient(CoreV1Api);
    const pods = async (product: string): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace, labelSelector: `${productLabel}=${product}` })).items;
    const verdicts = async (product: string, wanted: string, phase?: string): Promise<boolean> => {
      const list = await pods(product);
      return list.length === 2 && list.every((p) => p.metadata?.annotations?.[annotations.status] === wanted && (phase === undefined || p.status?.phase === phase));
    };
    // The products' status too (written within a second of the pods' verdicts).
    const entitled = (product: string): Promise<string> =>
      plane.kubectlOk(['get', 'mpp', product, '-n', namespace, '-o', 'jsonpath={.status.conditions[?(@.type=="Entitled")].status}/{.status.entitledPods}/{.status.blockedPods}']);
    await until(
      'analytics running, reports refused',
      async () => (await verdicts('analytics', 'Entitled', 'Running')) && (await verdicts('reports', 'NotEntitled')) && (await entitled('analytics')) === 'True/2/0' && (await entitled('reports')) === 'False/0/2',
      stop.signal,
    );
    const plugin = async (args: string[]): Promise<string> => {
      let out = '';
      await runPlugin([...args, '--kubeconfig', plane.kubeconfigPath], { stdout: (t) => (out += t), stderr: (t) => (out += t) });
      return out;
    };
    const tables = async (): Promise<void> => {
      show(`$ kubectl get mpp -n ${namespace}\n${(await plane.kubectlOk(['get', 'mpp', '-n', namespace])).trimEnd()}`);
      show(`$ kubectl get pods -n ${namespace}\n${(await plane.kubectlOk(['get', 'pods', '-n', namespace])).trimEnd()}`);
    };
    say('one product entitled, its pods running; the other refused, its pods held by the scheduling gate:');
    await tables();
    say(
      `explore it yourself, in another shell:\n    export KUBECONFIG=${plane.kubeconfigPath}\n    alias kubectl=${kubectl}\n` +
        `    npm run --silent kubectl-marketplace -- status -n ${namespace}    # the kubectl plugin; why POD, recheck POD`,
    );
    show(`$ kubectl marketplace status -n ${namespace}\n${(await plugin(['status', '-n', namespace])).trimEnd()}`);
    const gatedPod = (await pods('reports'))[0]?.metadata?.name ?? '';
    show(`$ kubectl marketplace why ${gatedPod} -n ${namespace}\n${(await plugin(['why', gatedPod, '-n', namespace])).trimEnd()}`);

    if (!stop.signal.aborted) {
      await sleep(process.env.DEMO_EXIT === '1' ? 0 : 5_000, undefined, { signal: stop.signal }).catch(() => undefined);
    }
    if (!stop.signal.aborted) {
      say('the reports customer subscribes (in the fake AWS); nobody touches the pods');
      fake.setBehaviour('demo-reports', {});
      await until('reports entitled and running', async () => (await verdicts('reports', 'Entitled', 'Running')) && (await entitled('reports')) === 'True/2/0', stop.signal, 60_000);
      say('the operator checked them again on its own, and they run:');
      await tables();
    }
    if (process.env.DEMO_EXIT !== '1' && !stop.signal.aborted) {
      say('running until Ctrl-C');
      await new Promise<void>((resolve) => { stop.signal.addEventListener('abort', () => { resolve(); }, { once: true }); });
    }
  } finally {
    await fake?.close();
    await cluster.stop();
    say('stopped; nothing left running');
  }
}

try {
  await main();
} catch (error) {
  if (!(error instanceof Stopped)) {
    process.stderr.write(`[demo] failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
