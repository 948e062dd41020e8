#!/usr/bin/env node
// kubectl-marketplace: a kubectl plugin (`kubectl marketplace …`) over what the operator records.
//   status [-n NS | -A] [-o json|yaml]   products with their entitled, blocked and pending pods
//   why POD [-n NS] [-o json|yaml]         why a pod is gated, or what its registration said
//   recheck POD|mpp/NAME [-n NS]           ask for a check now (the recheck annotation)
// Exit codes: 0 done (why: the pod may run); 1 an API error or nothing found; 2 bad usage;
// 3 (why) the pod is held back or still waiting for its verdict.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { V1Pod } from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import { annotations, group, plural, productLabel, version, type MarketplaceProduct } from '../api/marketplace-product.js';
import { isGated, readCheckRecord } from '../api/pod-state.js';
import { checkBasis, planRecheck } from '../controllers/pods/rechecks.js';
import { ApiError, contentTypes, currentNamespace, loadKubeClient, segment, type KubeClient } from '../kube/api.js';
import { explain } from './reasons.js';
import { isNotFound } from '../kube/errors.js';

const program = 'kubectl marketplace';

export interface PluginIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** The API client, for tests; else from --kubeconfig, KUBECONFIG or ~/.kube/config. */
  client?: (kubeconfig: string | undefined) => KubeClient;
  /** The clock of the recheck annotation's value. */
  now?: () => number;
}

class UsageError extends Error {}

interface Options {
  namespace?: string;
  allNamespaces: boolean;
  output?: 'json' | 'yaml';
  kubeconfig?: string;
  args: string[];
}

const help = `Usage:
  ${program} status [-n NAMESPACE | -A] [-o json|yaml]
  ${program} why POD [-n NAMESPACE] [-o json|yaml]
  ${program} recheck POD|mpp/NAME [-n NAMESPACE]

Flags: -n, --namespace; -A, --all-namespaces; -o, --output json|yaml; --kubeconfig PATH.
Exit codes: 0 done (why: the pod may run), 1 API error or not found, 2 bad usage,
3 (why) the pod is held back or waiting for its verdict.
`;

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { allNamespaces: false, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [flag, inline] = arg.startsWith('--') ? (arg.split(/=(.*)/s) as [string, string | undefined]) : /^-[no]./.test(arg) ? [arg.slice(0, 2), arg.slice(2)] : [arg, undefined];
    const value = (): string => {
      const next = inline ?? argv[++i];
      if (!next) throw new UsageError(`${flag} needs a value`);
      return next;
    };
    if (flag === '-n' || flag === '--namespace') options.namespace = value();
    else if (flag === '-A' || flag === '--all-namespaces') options.allNamespaces = true;
    else if (flag === '--kubeconfig') options.kubeconfig = value();
    else if (flag === '-o' || flag === '--output') {
      const output = value();
      if (output !== 'json' && output !== 'yaml') throw new UsageError(`--output ${output}: only json and yaml`);
      options.output = output;
    } else if (flag.startsWith('-')) throw new UsageError(`unknown flag ${flag}`);
    else options.args.push(arg);
  }
  return options;
}

/** Columns as kubectl prints them: left-aligned, three spaces apart. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ').trimEnd();
  return [header, ...rows].map(line).join('\n') + '\n';
}

function formatted(value: unknown, output: 'json' | 'yaml'): string {
  return output === 'json' ? `${JSON.stringify(value, null, 2)}\n` : dump(value, { lineWidth: 120 });
}

const productsPath = (namespace: string | undefined): string => (namespace === undefined ? `/apis/${group}/${version}/${plural}` : `/apis/${group}/${version}/namespaces/${segment(namespace)}/${plural}`);

async function status(client: KubeClient, options: Options, io: PluginIo): Promise<number> {
  const namespace = options.allNamespaces ? undefined : (options.namespace ?? currentNamespace(options.kubeconfig));
  const products = (await client.request<{ items: MarketplaceProduct[] }>('GET', productsPath(namespace))).items;
  const rows = products.map((p) => {
    const entitled = p.status?.conditions?.find((c) => c.type === 'Entitled');
    const metered = p.status?.conditions?.find((c) => c.type === 'Metered');
    return {
      namespace: p.metadata.namespace,
      name: p.metadata.name,
      productCode: p.spec.productCode,
      entitled: entitled?.status ?? 'Unknown',
      reason: entitled?.reason ?? 'AwaitingPods',
      entitledPods: p.status?.entitledPods ?? 0,
      blockedPods: p.status?.blockedPods ?? 0,
      pendingPods: p.status?.pendingPods ?? 0,
      ...(metered ? { metered: metered.status, lastReportedHour: p.status?.metering?.lastReportedHour } : {}),
      message: entitled?.message ?? '',
    };
  });
  if (options.output) {
    io.stdout(formatted(rows, options.output));
    return 0;
  }
  if (rows.length === 0) {
    io.stderr(`No MarketplaceProducts found${namespace === undefined ? '' : ` in namespace ${namespace}`}.\n`);
    return 0;
  }
  const header = [...(options.allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'PRODUCT CODE', 'ENTITLED', 'PODS ENTITLED', 'BLOCKED', 'PENDING', 'METERED', 'LAST REASON'];
  io.stdout(
    table(
      header,
      rows.map((r) => [...(options.allNamespaces ? [r.namespace] : []), r.name, r.productCode, r.entitled, String(r.entitledPods), String(r.blockedPods), String(r.pendingPods), r.metered ?? '-', r.reason]),
    ),
  );
  return 0;
}

async function why(client: KubeClient, options: Options, io: PluginIo): Promise<number> {
  const [name, extra] = options.args;
  if (!name || extra !== undefined) throw new UsageError('why takes one pod name');
  const namespace = options.namespace ?? currentNamespace(options.kubeconfig);
  const pod = await client.request<V1Pod>('GET', `/api/v1/namespaces/${segment(namespace)}/pods/${segment(name)}`);
  const ownAnnotations = pod.metadata?.annotations ?? {};
  const productName = pod.metadata?.labels?.[productLabel];
  const gated = isGated(pod);
  const verdict = ownAnnotations[annotations.status];
  const reason = ownAnnotations[annotations.reason];
  let product: MarketplaceProduct | undefined;
  if (productName) {
    product = await client.request<MarketplaceProduct>('GET', `${productsPath(namespace)}/${segment(productName)}`).catch((error: unknown) => {
      if (isNotFound(error)) return undefined;
      throw error;
    });
  }
  const record = readCheckRecord(pod);
  // Checks a change or a request calls for are due now; the periodic one is when the operator
  // wrote it would be (its interval is its own setting), so no periodic check is planned here.
  const plan = verdict === 'NotEntitled' && product ? planRecheck(record, reason, checkBasis(product, pod), Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY) : undefined;
  const nextCheck = plan?.kind === 'now' ? 'now' : plan?.kind === 'never' ? 'only when the product changes or a check is asked for' : plan ? (record?.next ?? 'periodically') : undefined;
  const entitledCondition = product?.status?.conditions?.find((c) => c.type === 'Entitled');
  const text = explain({ productName, productFound: product !== undefined, verdict, reason, gated, enforcement: product?.spec.enforcement ?? 'Enforce', productMessage: entitledCondition?.message });
  const answer = {
    pod: `${namespace}/${name}`,
    product: productName ?? null,
    verdict: verdict ?? null,
    reason: reason ?? null,
    gated,
    registeredAt: ownAnnotations[annotations.registeredAt] ?? null,
    checks: record ?? null,
    nextCheck: nextCheck ?? null,
    explanation: text.summary,
    action: text.action ?? null,
  };
  if (options.output) io.stdout(formatted(answer, options.output));
  else {
    io.stdout(`Pod ${answer.pod}: ${text.summary}\n`);
    if (record?.at) io.stdout(`Last checked: ${record.at} (${record.attempts} check${record.attempts === 1 ? '' : 's'} since the last change or request).\n`);
    if (nextCheck) io.stdout(`Next check: ${nextCheck}.\n`);
    if (text.action) io.stdout(`What to do: ${text.action}\n`);
  }
  const mayRun = !productName || (!gated && verdict !== 'NotEntitled') || (verdict === 'NotEntitled' && product?.spec.enforcement === 'Audit');
  return mayRun ? 0 : 3;
}

async function recheck(client: KubeClient, options: Options, io: PluginIo): Promise<number> {
  const [target, extra] = options.args;
  if (!target || extra !== undefined) throw new UsageError('recheck takes one POD or mpp/NAME');
  const namespace = options.namespace ?? currentNamespace(options.kubeconfig);
  const value = new Date((io.now ?? Date.now)()).toISOString();
  const body = { metadata: { annotations: { [annotations.recheck]: value } } };
  const product = /^(?:mpp|marketplaceproducts?(?:\.marketplace\.entitlements\.io)?)\/(.+)$/.exec(target)?.[1];
  const path = product ? `${productsPath(namespace)}/${segment(product)}` : `/api/v1/namespaces/${segment(namespace)}/pods/${segment(target.replace(/^pods?\//, ''))}`;
  await client.send('PATCH', path, body, contentTypes.mergePatch);
  io.stdout(`${product ? `marketplaceproduct/${product}` : `pod/${target.replace(/^pods?\//, '')}`} annotated: ${annotations.recheck}=${value}; the operator checks ${product ? 'its NotEntitled pods' : 'it'} again now\n`);
  return 0;
}

const commands: Readonly<Record<string, (client: KubeClient, options: Options, io: PluginIo) => Promise<number>>> = { status, why, recheck };

export async function runPlugin(argv: readonly string[], io: PluginIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(help);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  let client: KubeClient | undefined;
  try {
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    const options = parseOptions(rest);
    client = (io.client ?? loadKubeClient)(options.kubeconfig);
    return await command(client, options, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`${program}: ${error.message}\n\n${help}`);
      return 2;
    }
    io.stderr(`${program} ${name}: ${error instanceof ApiError ? statusLine(error) : error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await client?.close();
  }
}

function statusLine(error: ApiError): string {
  return error.code === 404 ? `not found: ${error.message}` : error.message;
}

// Run when executed directly (also through the npm bin symlink, or kubectl's plugin lookup).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await runPlugin(process.argv.slice(2), { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) });
}
