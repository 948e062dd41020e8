// What a real node changes on the host outside its own directory, read before it starts so that
// teardown can put every piece back: iptables chains (kubelet and kube-proxy make KUBE-* chains
// in IPv4 and IPv6), kernel settings (the kubelet sets panic and overcommit defaults, the CNI
// bridge turns on IP forwarding), files under fixed paths (the CNI result cache, the kubelet's
// device-plugin socket, containerd's shim sockets, /var/log/containers), network interfaces,
// mounts and cgroups. `HostState.read()` twice, before and after, is also how a test proves nothing is left.
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Kernel settings a node may change. */
const watchedSysctls = [
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/forwarding',
  'net/ipv4/conf/all/route_localnet',
  'net/ipv6/conf/all/forwarding',
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/netfilter/nf_conntrack_max',
  'net/netfilter/nf_conntrack_tcp_timeout_established',
  'net/netfilter/nf_conntrack_tcp_timeout_close_wait',
] as const;

/** Fixed host paths a node writes to whatever its configuration says. */
const watchedPaths = ['/var/lib/cni', '/var/log/containers', '/var/log/pods', '/var/lib/kubelet', '/run/containerd', '/etc/cni', '/run/netns', '/var/lib/containerd'] as const;

const iptablesTables = ['filter', 'nat', 'mangle', 'raw'] as const;
const builtinChains = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING']);

export interface HostState {
  /** `iptables TABLE CHAIN` and `ip6tables TABLE CHAIN` for every chain. */
  chains: string[];
  /** Every rule, as iptables-save prints it (`iptables TABLE -A ...`). */
  rules: string[];
  sysctls: Record<string, string>;
  /** Each watched path and every file below it (absent paths are simply missing). */
  files: string[];
  links: string[];
  mounts: string[];
  /** Top-level cgroups in every hierarchy (a node's pods live under one of its own). */
  cgroups: string[];
}

export async function readHostState(): Promise<HostState> {
  const chains: string[] = [];
  const rules: string[] = [];
  for (const tool of ['iptables', 'ip6tables'] as const) {
    for (const table of iptablesTables) {
      const { stdout } = await run(`${tool}-save`, ['-t', table]).catch(() => ({ stdout: '' }));
      for (const line of stdout.split('\n')) {
        if (line.startsWith(':')) chains.push(`${tool} ${table} ${line.slice(1).split(' ')[0] ?? ''}`);
        else if (line.startsWith('-A ')) rules.push(`${tool} ${table} ${line}`);
      }
    }
  }
  const sysctls: Record<string, string> = {};
  for (const name of watchedSysctls) {
    const value = await readFile(path.join('/proc/sys', name), 'utf8').catch(() => undefined);
    if (value !== undefined) sysctls[name] = value.trim();
  }
  const files: string[] = [];
  for (const root of watchedPaths) files.push(...(await listTree(root)));
  const links = (await readdir('/sys/class/net')).sort();
  // Only mounts a node makes: other tools on the machine (podman building an image) mount too.
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mount) => mount.startsWith('/tmp/') || mount.startsWith('/run/') || watchedPaths.some((root) => mount.startsWith(root)))
    .sort();
  const cgroups: string[] = [];
  for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [])) {
    const entries = await readdir(path.join('/sys/fs/cgroup', hierarchy), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) cgroups.push(`${hierarchy}/${entry.name}`);
  }
  return { chains: chains.sort(), rules: rules.sort(), sysctls, files, links, mounts, cgroups: cgroups.sort() };
}

/** The differences between two readings, one line each; empty when they match. */
export function hostStateChanges(before: HostState, after: HostState): string[] {
  const changes: string[] = [];
  const compare = (what: string, a: readonly string[], b: readonly string[]): void => {
    const setA = new Set(a);
    const setB = new Set(b);
    for (const item of b) if (!setA.has(item)) changes.push(`${what} added: ${item}`);
    for (const item of a) if (!setB.has(item)) changes.push(`${what} removed: ${item}`);
  };
  compare('iptables chain', before.chains, after.chains);
  compare('iptables rule', before.rules, after.rules);
  compare('file', before.files, after.files);
  compare('network interface', before.links, after.links);
  compare('mount', before.mounts, after.mounts);
  compare('cgroup', before.cgroups, after.cgroups);
  for (const [name, value] of Object.entries(before.sysctls)) {
    if (after.sysctls[name] !== value) changes.push(`sysctl ${name}: ${value} → ${String(after.sysctls[name])}`);
  }
  return changes;
}

/**
 * Puts back what a node changed since `before`: rules and chains it added (jumps first, then the
 * chains), kernel settings, and files under the watched paths (a path that did not exist is
 * removed whole). Interfaces and mounts are the node's own to remove; this only reports them.
 */
export async function restoreHostState(before: HostState): Promise<void> {
  const now = await readHostState();
  const oldRules = new Set(before.rules);
  const oldChains = new Set(before.chains);
  for (const rule of now.rules.filter((r) => !oldRules.has(r))) {
    const [tool, table, , chain, ...spec] = rule.split(' ');
    if (!tool || !table || !chain) continue;
    // Rules inside chains that go away go with them; only rules of kept chains are deleted one by one.
    if (!builtinChains.has(chain) && !oldChains.has(`${tool} ${table} ${chain}`)) continue;
    await run(tool, ['-w', '-t', table, '-D', chain, ...splitRule(spec.join(' '))]).catch(() => undefined);
  }
  const newChains = now.chains.filter((c) => !oldChains.has(c) && !builtinChains.has(c.split(' ')[2] ?? ''));
  for (const chain of newChains) {
    const [tool, table, name] = chain.split(' ');
    await run(tool ?? 'iptables', ['-w', '-t', table ?? 'filter', '-F', name ?? '']).catch(() => undefined);
  }
  for (const chain of newChains) {
    const [tool, table, name] = chain.split(' ');
    await run(tool ?? 'iptables', ['-w', '-t', table ?? 'filter', '-X', name ?? '']).catch(() => undefined);
  }
  for (const [name, value] of Object.entries(before.sysctls)) {
    if (now.sysctls[name] !== value) await writeFile(path.join('/proc/sys', name), value).catch(() => undefined);
  }
  const oldFiles = new Set(before.files);
  // Deepest first, so a directory is empty when its turn comes.
  for (const file of now.files.filter((f) => !oldFiles.has(f)).sort((a, b) => b.length - a.length)) {
    await run('rm', ['-rf', '--one-file-system', file]).catch(() => undefined);
  }
}

/** iptables-save quotes comments; split a rule into arguments the way a shell would. */
function splitRule(rule: string): string[] {
  const args: string[] = [];
  for (const match of rule.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) args.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : (match[2] ?? ''));
  return args;
}

async function listTree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true }).catch(() => undefined);
  if (!entries) return [];
  return [root, ...entries.map((entry) => path.join(root, entry))].sort();
}
