// What each API write of a gated pod costs the API server and etcd (npm run bench:api-writes),
// against the create of an unlabelled pod measured in the same run: the floor under the cluster
// benchmark's "API server and etcd CPU per gated pod" ratio. The policy-mode bundle is installed
// (its MutatingAdmissionPolicy gates labelled pods; its two ValidatingAdmissionPolicies check
// every pod update); the writes are the operator's own (its client, account and request bodies),
// with no operator running and no watcher but the API server's own, so nothing else is counted.
//   npm run bench:api-writes -- --pods 500 --rounds 3
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { fromKubeconfigFile, contentTypes, KubeClient } from '../../src/kube/api.js';
import { EventRecorder } from '../../src/kube/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { ApiHttp } from '../support/api-http.js';
import { ControlPlane } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig } from '../support/operator.js';
import { createMany } from '../support/scale.js';
import { sealedAnnotations, testSealer } from '../support/seals.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
  },
});
const pods = Number(values.pods);
const rounds = Number(values.rounds);
const concurrency = Number(values.concurrency);
const namespace = 'bench';

interface Pod {
  metadata: { name: string; namespace: string; uid: string };
}

type Kind = 'unlabelled create' | 'labelled create' | 'verdict patch' | 'Event' | 'verdict patch, no policies';

/** Runs `write` for each item, `concurrency` at a time, and returns the CPU seconds the control plane spent, less its idle. */
async function measure<T>(plane: ControlPlane, idlePerSecond: number, items: readonly T[], write: (item: T) => Promise<unknown>): Promise<number> {
  await sleep(1_000);
  const before = await plane.cpuSeconds();
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await write(items[next++] as T);
    }),
  );
  // Until the API server and etcd are done with it (compaction, watch cache, GC).
  await sleep(1_000);
  return (await plane.cpuSeconds()) - before - (idlePerSecond * (Date.now() - started)) / 1000;
}

function podBody(name: string, labelled: boolean): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: labelled ? { [productLabel]: 'bench', app: 'paid' } : { app: 'free' } },
    spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }] },
  };
}

const plane = await ControlPlane.start();
try {
  await installBundle(plane, 'policy');
  const api = new ApiHttp(plane);
  await api.ok('POST', '/api/v1/namespaces', { metadata: { name: namespace } });
  const operator = new KubeClient(fromKubeconfigFile(await serviceAccountKubeconfig(plane)));
  const events = new EventRecorder(operator, { controller: 'marketplace.entitlements.io/entitlement-operator', instance: 'bench' }, createLogger({ level: 'error' }));
  const sealer = testSealer();
  // The operator's verdict patch (controllers/pods/reconciler.ts): sealed annotations, the gate removed, the uid named.
  const patch = (pod: Pod) =>
    operator.send('PATCH', `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}`, {
      metadata: { uid: pod.metadata.uid, annotations: sealedAnnotations(sealer, pod, { status: 'Entitled', reason: 'SignatureVerified', registeredAt: new Date().toISOString() }) },
      spec: { schedulingGates: [{ $patch: 'delete', name: schedulingGate }] },
    }, contentTypes.strategicMergePatch);
  const created = async (prefix: string): Promise<Pod[]> => {
    const list = await api.ok('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=${productLabel}`);
    return (JSON.parse(list.body) as { items: Pod[] }).items.filter((pod) => pod.metadata.name.startsWith(`${prefix}-`));
  };
  const names = (prefix: string) => Array.from({ length: pods }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
  const create = (labelled: boolean) => (name: string) => api.ok('POST', `/api/v1/namespaces/${namespace}/pods`, podBody(name, labelled));

  await sleep(3_000);
  const idleFrom = await plane.cpuSeconds();
  await sleep(5_000);
  const idlePerSecond = ((await plane.cpuSeconds()) - idleFrom) / 5;
  // Warm up: connections, caches, the policies' compiled programs.
  await createMany(api, namespace, 0, 200, { concurrency }, (i) => podBody(`warm-${i}`, true));
  for (const pod of await created('warm')) await patch(pod);

  const spent = new Map<Kind, number>();
  const add = (kind: Kind, seconds: number) => spent.set(kind, (spent.get(kind) ?? 0) + seconds);
  const later: Pod[] = [];
  for (let round = 0; round < rounds; round++) {
    add('unlabelled create', await measure(plane, idlePerSecond, names(`free${round}`), create(false)));
    add('labelled create', await measure(plane, idlePerSecond, names(`paid${round}`), create(true)));
    await createMany(api, namespace, 0, pods, { concurrency }, (i) => podBody(`later${round}-${String(i).padStart(5, '0')}`, true));
    later.push(...(await created(`later${round}`)));
    const gated = await created(`paid${round}`);
    add('verdict patch', await measure(plane, idlePerSecond, gated, patch));
    add('Event', await measure(plane, idlePerSecond, gated, (pod) => events.pod(pod, 'Normal', 'Entitled', 'RegisterUsage', 'RegisterUsage for product bench verified (key version 1)')));
  }
  // Last, as it takes the policies out: the same patch with no ValidatingAdmissionPolicy bound.
  for (const name of ['entitlement-operator-gate-guard', 'entitlement-operator-limits']) await api.ok('DELETE', `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/${name}`);
  await sleep(2_000);
  add('verdict patch, no policies', await measure(plane, idlePerSecond, later, patch));
  await operator.close();

  const perWrite = (kind: Kind) => ((spent.get(kind) ?? 0) * 1000) / (pods * rounds);
  const baseline = perWrite('unlabelled create');
  const gatedPod = perWrite('labelled create') + perWrite('verdict patch') + perWrite('Event');
  const row = (label: string, ms: number) => `  ${label.padEnd(46)} ${ms.toFixed(2).padStart(6)} ms  ${(ms / baseline).toFixed(2)}×\n`;
  let out = `\nAPI server and etcd CPU per write (${rounds} rounds of ${pods}, ${concurrency} at a time; idle ${(idlePerSecond * 1000).toFixed(0)} ms/s subtracted), against an unlabelled pod's create\n\n`;
  out += row('unlabelled pod create (the baseline)', baseline);
  out += row('labelled pod create (the policy adds the gate)', perWrite('labelled create'));
  out += row("the operator's verdict patch (removes the gate)", perWrite('verdict patch'));
  out += row('  the same with no ValidatingAdmissionPolicy', perWrite('verdict patch, no policies'));
  out += row("the operator's Event", perWrite('Event'));
  out += row('a gated pod: create, patch and Event', gatedPod);
  out += row('  without the Event', gatedPod - perWrite('Event'));
  out += `\nWatch events to the operator and other watchers come on top (none here).\n`;
  process.stdout.write(out);
} finally {
  await plane.stop();
}
