// The kubectl plugin against a real API server, with the operator writing what it reads: found
// by kubectl on PATH, its tables and -o json|yaml, `why` in words with exit codes, and `recheck`
// asking for a check the operator then makes.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { annotations } from '../../src/api/marketplace-product.js';
import { runPlugin } from '../../src/cli/kubectl-marketplace.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod } from '../support/operator.js';
import { createProduct, getProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';
import { binary, repoRoot } from '../support/testbin.js';

const controlPlane = controlPlaneForSuite();
const ns = 'plugin';
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;

beforeAll(async () => {
  const env = await prepareOperatorEnvironment(controlPlane());
  ({ fake, core, custom } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await startOperatorProcess(controlPlane(), fake, env.kubeconfig);
  fake.setBehaviour('unpaid-code', { error: 'CustomerNotEntitledException' });
  for (const [name, code] of [['paid', 'paid-code'], ['unpaid', 'unpaid-code']] as const) {
    await createProduct(custom, ns, name, { productCode: code, publicKey: { pem: fake.publicKeyPem }, identity: { mode: 'Operator' } });
    await core.createNamespacedPod({ namespace: ns, body: labelledPod(`${name}-0`, name) });
  }
  await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'plain' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } } });
  await waitForPod('both verdicts in the status', async () => {
    const [paid, unpaid] = await Promise.all([getProduct(custom, ns, 'paid'), getProduct(custom, ns, 'unpaid')]);
    return paid.status?.entitledPods === 1 && unpaid.status?.blockedPods === 1 ? true : undefined;
  });
}, 120_000);
afterAll(async () => fake.close());

async function plugin(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runPlugin([...args, '--kubeconfig', controlPlane().kubeconfigPath], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

it('kubectl finds it on PATH: kubectl marketplace status', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plugin-path-'));
  try {
    // The bin as npm links it, run with this Node (the machine's `node` may be older).
    const bin = path.join(dir, 'kubectl-marketplace');
    await writeFile(bin, `#!/bin/sh\nexec "${process.execPath}" "${path.join(repoRoot, 'dist/cli/kubectl-marketplace.js')}" "$@"\n`);
    await chmod(bin, 0o755);
    const kubectl = await binary('kubectl');
    const result = spawnSync(kubectl, ['marketplace', 'status', '-n', ns], { env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}`, KUBECONFIG: controlPlane().kubeconfigPath }, encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.split('\n')[0]?.split(/\s{3,}/)).toEqual(['NAME', 'PRODUCT CODE', 'ENTITLED', 'PODS ENTITLED', 'BLOCKED', 'PENDING', 'METERED', 'LAST REASON']);
    expect(result.stdout).toMatch(/^paid\s+paid-code\s+True\s+1\s+0\s+0\s+-\s+SignatureVerified$/m);
    expect(result.stdout).toMatch(/^unpaid\s+unpaid-code\s+False\s+0\s+1\s+0\s+-\s+CustomerNotEntitled$/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('status -A adds the namespace; -o json and -o yaml give the same rows', async () => {
  const all = await plugin('status', '-A');
  expect(all.stdout.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME\s+PRODUCT CODE/);
  const json = JSON.parse((await plugin('status', '-n', ns, '-o', 'json')).stdout) as { name: string; entitledPods: number; blockedPods: number; reason: string }[];
  expect(json.map((r) => [r.name, r.entitledPods, r.blockedPods, r.reason])).toEqual([
    ['paid', 1, 0, 'SignatureVerified'],
    ['unpaid', 0, 1, 'CustomerNotEntitled'],
  ]);
  expect(load((await plugin('status', '-n', ns, '-oyaml')).stdout)).toEqual(json);
});

it('why: in words, with the next check, and an exit code a script can use', async () => {
  const blocked = await plugin('why', 'unpaid-0', '-n', ns);
  expect(blocked.code).toBe(3);
  expect(blocked.stdout).toMatch(/^Pod plugin\/unpaid-0: not entitled \(CustomerNotEntitled\): AWS says the account running this pod has no active subscription to the product; it stays gated$/m);
  expect(blocked.stdout).toMatch(/^Next check: \d{4}-\d\d-\d\dT/m);
  expect(blocked.stdout).toMatch(/^What to do: subscribe to the product in AWS Marketplace/m);

  const entitled = await plugin('why', 'paid-0', '-n', ns, '-o', 'json');
  expect(entitled.code).toBe(0);
  expect(JSON.parse(entitled.stdout)).toMatchObject({ pod: 'plugin/paid-0', product: 'paid', verdict: 'Entitled', reason: 'SignatureVerified', gated: false });
  const plain = await plugin('why', 'plain', '-n', ns);
  expect([plain.code, plain.stdout]).toEqual([0, 'Pod plugin/plain: it carries no marketplace.entitlements.io/product label, so the operator never gates it\n']);
});

it('recheck: the pod or the product is annotated and the operator checks again; the customer who subscribed gets a running pod', async () => {
  const before = fake.calls('RegisterUsage').filter((c) => c.productCode === 'unpaid-code').length;
  fake.setBehaviour('unpaid-code', {});
  const asked = await plugin('recheck', 'unpaid-0', '-n', ns);
  expect(asked.code).toBe(0);
  expect(asked.stdout).toMatch(/^pod\/unpaid-0 annotated: marketplace\.entitlements\.io\/recheck=/);
  const pod = await waitForPod('unpaid-0 entitled', async () => {
    const current = await readPod(core, ns, 'unpaid-0');
    return verdict(current) === 'Entitled' ? current : undefined;
  });
  expect(pod.metadata?.annotations?.[annotations.recheck]).toBeDefined();
  expect(fake.calls('RegisterUsage').filter((c) => c.productCode === 'unpaid-code').length).toBe(before + 1);
  expect((await plugin('recheck', 'mpp/unpaid', '-n', ns)).stdout).toMatch(/^marketplaceproduct\/unpaid annotated/);
  expect(reason(await readPod(core, ns, 'unpaid-0'))).toBe('SignatureVerified'); // an entitled pod is not checked again
});

it('bad usage exits 2, a missing pod 1', async () => {
  expect((await plugin('why')).code).toBe(2);
  expect((await plugin('status', '-o', 'table')).code).toBe(2);
  expect((await plugin('frobnicate')).code).toBe(2);
  const missing = await plugin('why', 'nope', '-n', ns);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/not found/);
});
