// Runs the built operator (dist/main.js) out of cluster against a test control plane, as the
// install bundle's own ServiceAccount, talking to the local fake AWS.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { FakeAws } from '../fake-aws/server.js';
import { bundleObject, bundlePathOf, operatorNamespace, type AdmissionMode } from './bundle.js';
import type { ControlPlane } from './control-plane.js';
import { fakeCredentials } from './fake-aws.js';
import type { ManagedProcess } from './processes.js';
import { repoRoot } from './testbin.js';
import { freePort, waitFor } from './wait.js';

export const operatorServiceAccount = 'entitlement-operator-controller-manager';

export interface OperatorEnvironment {
  fake: FakeAws;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  /** Authenticates as the bundle's ServiceAccount. */
  kubeconfig: string;
}

/**
 * What every operator test needs: the bundle installed, a fake AWS whose STS trusts the cluster's
 * service-account issuer, admin clients, and the operator's kubeconfig.
 */
export async function prepareOperatorEnvironment(plane: ControlPlane, mode: AdmissionMode = 'webhook'): Promise<OperatorEnvironment> {
  const fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] });
  await installBundle(plane, mode);
  const kc = plane.kubeConfig();
  return { fake, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), kubeconfig: await serviceAccountKubeconfig(plane) };
}

/** Applies the rendered install bundle of `mode` (CRD, RBAC, webhook configuration or admission policy, ...). */
export async function installBundle(plane: ControlPlane, mode: AdmissionMode = 'webhook'): Promise<void> {
  await plane.kubectlOk(['apply', '-f', bundlePathOf(mode)]);
  await plane.kubectlOk(['wait', '--for=condition=Established', 'crd/marketplaceproducts.marketplace.entitlements.io', '--timeout=60s']);
}

export const gateGuardBinding = 'entitlement-operator-gate-guard';

/**
 * Runs `action` with the gate guard's binding deleted (what a cluster admin can do), then puts it
 * back as the bundle has it. The API server takes a moment to see a binding come or go: a probe
 * (a server-side dry run of labelling an unlabelled pod, which the guard refuses) tells when.
 */
export async function withoutGateGuard<T>(plane: ControlPlane, action: () => Promise<T>): Promise<T> {
  const probe = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'gate-guard-probe', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/probe:1' }] } };
  await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify(probe));
  const guarded = async (): Promise<boolean> => (await plane.kubectl(['label', 'pod', 'gate-guard-probe', '-n', 'default', '--dry-run=server', `${productLabel}=probe`])).code !== 0;
  await plane.kubectlOk(['delete', 'validatingadmissionpolicybinding', gateGuardBinding]);
  try {
    await waitFor('the API server to drop the gate guard', async () => ((await guarded()) ? undefined : true), 30_000, 100);
    return await action();
  } finally {
    await plane.kubectlOk(['apply', '-f', '-'], JSON.stringify(bundleObject('ValidatingAdmissionPolicyBinding', gateGuardBinding)));
    await waitFor('the API server to enforce the gate guard again', async () => ((await guarded()) ? true : undefined), 30_000, 100);
    await plane.kubectlOk(['delete', 'pod', 'gate-guard-probe', '-n', 'default', '--wait=false']);
  }
}

/** A kubeconfig that authenticates as the bundle's ServiceAccount (a TokenRequest token). */
export function serviceAccountKubeconfig(plane: ControlPlane): Promise<string> {
  return accountKubeconfig(plane, operatorNamespace, operatorServiceAccount, 'operator.kubeconfig');
}

/** A kubeconfig that authenticates as a ServiceAccount with a token of its own (TokenRequest), in the plane's directory. */
export async function accountKubeconfig(plane: ControlPlane, namespace: string, account: string, fileName = `${namespace}-${account}.kubeconfig`): Promise<string> {
  const review = await plane.kubeConfig().makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name: account,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  const file = plane.file(fileName);
  await writeFile(
    file,
    `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: ${plane.server}, certificate-authority: ${plane.file('ca.crt')}}}]
users: [{name: ${account}, user: {token: ${review.status?.token ?? ''}}}]
contexts: [{name: ${account}, context: {cluster: test, user: ${account}, namespace: ${namespace}}}]
current-context: ${account}
`,
    { mode: 0o600 },
  );
  return file;
}

export interface OperatorProcess {
  name: string;
  proc: ManagedProcess;
  webhookPort: number;
  metricsUrl: string;
  healthUrl: string;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export interface OperatorStartOptions {
  name?: string;
  /** policy: --admission=policy, no webhook served (the policy bundle must be installed). */
  admission?: AdmissionMode;
  webhookPort?: number;
  /** Where the API server calls the webhook (default: this replica's own port). */
  webhookUrl?: string;
  extraArgs?: string[];
  env?: Record<string, string>;
  waitReady?: boolean;
  /** Wraps the command line, for example to start the operator inside a cgroup. */
  launch?: (command: string, args: readonly string[]) => [string, string[]];
}

/**
 * Starts dist/main.js; resolves once /readyz answers 200. Retries with new ports when one it
 * picked was taken before the operator could bind it.
 */
export async function startOperatorProcess(plane: ControlPlane, fake: FakeAws, kubeconfig: string, options: OperatorStartOptions = {}): Promise<OperatorProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOperatorOnce(plane, fake, kubeconfig, options);
    } catch (error) {
      if (attempt >= 3 || !String(error).includes('EADDRINUSE')) throw error;
    }
  }
}

async function startOperatorOnce(plane: ControlPlane, fake: FakeAws, kubeconfig: string, options: OperatorStartOptions): Promise<OperatorProcess> {
  const name = options.name ?? 'operator';
  const webhookPort = options.webhookPort ?? (await freePort());
  const [metricsPort, healthPort] = [await freePort(), await freePort()];
  const args = [
    path.join(repoRoot, 'dist/main.js'),
    `--kubeconfig=${kubeconfig}`,
    ...(options.admission === 'policy' ? ['--admission=policy'] : [`--webhook-port=${webhookPort}`, `--webhook-url=${options.webhookUrl ?? `https://127.0.0.1:${webhookPort}`}`]),
    `--metrics-port=${metricsPort}`,
    `--health-port=${healthPort}`,
    '--region=us-east-1',
    `--metering-endpoint=${fake.url}`,
    `--sts-endpoint=${fake.url}`,
    '--timeout=5',
    ...(options.extraArgs ?? []),
  ];
  const [command, commandArgs] = options.launch ? options.launch(process.execPath, args) : [process.execPath, args];
  const proc = plane.startProcess(name, command, commandArgs, {
    ...process.env,
    POD_NAMESPACE: operatorNamespace,
    POD_NAME: name,
    AWS_ACCESS_KEY_ID: fakeCredentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: fakeCredentials.secretAccessKey,
    LOG_LEVEL: process.env.OPERATOR_LOG_LEVEL ?? 'info',
    ...options.env,
  });
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const healthUrl = `http://127.0.0.1:${healthPort}`;
  if (options.waitReady ?? true) {
    await plane.waitHealthy(proc, `${healthUrl}/readyz`, 60_000);
    await waitForGating(plane);
  }
  return {
    name,
    proc,
    webhookPort,
    metricsUrl,
    healthUrl,
    metric: async (metric, labels = {}) => {
      const text = await (await fetch(metricsUrl)).text();
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      return text
        .split('\n')
        .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
        .filter((line) => wanted.every((w) => line.includes(w)))
        .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    },
  };
}

/**
 * Waits until the API server gates labelled pods: it caches webhook configurations and
 * admission policies, so the operator's patch (or the policy's creation) takes effect a moment
 * later. A server-side dry run of a labelled pod comes back gated once it does.
 */
export async function waitForGating(plane: ControlPlane): Promise<void> {
  const probe = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'webhook-probe', namespace: 'default', labels: { [productLabel]: 'probe' } }, spec: { containers: [{ name: 'c', image: 'registry.invalid/probe:1' }] } };
  await waitFor('the API server to gate labelled pods', async () => {
    const result = await plane.kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], JSON.stringify(probe));
    return result.code === 0 && result.stdout.includes(schedulingGate) ? true : undefined;
  }, 30_000, 200);
}

export async function waitForPod<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  return waitFor(what, check, timeoutMs, 100);
}
