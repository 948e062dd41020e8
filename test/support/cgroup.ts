// A memory (and optionally CPU) cgroup of the test's own, so a process runs under the limits a
// container would: the Deployment's memory limit is enforced by the kernel's OOM killer, not by
// Node. Works on cgroup v1 (separate memory, cpu and cpuacct hierarchies) and v2 (one unified
// hierarchy). Needs root. remove() takes away what create() made.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive, killUntilGone } from './processes.js';

const root = '/sys/fs/cgroup';

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU limit in cores (0.5 is a Deployment's `cpu: 500m`); none when absent. */
  cpus?: number;
}

export interface CgroupUsage {
  memoryBytes: number;
  peakMemoryBytes: number;
  cpuSeconds: number;
  oomKills: number;
}

/** Why a memory cgroup cannot be made here, or undefined when it can. */
export function cgroupUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'memory cgroups need root';
  if (existsSync(path.join(root, 'cgroup.controllers')) || existsSync(path.join(root, 'memory', 'cgroup.procs'))) return undefined;
  return `no cgroup v1 memory hierarchy or cgroup v2 at ${root}`;
}

export class Cgroup {
  private constructor(
    readonly name: string,
    private readonly v2: boolean,
    private readonly dirs: Record<'memory' | 'cpu' | 'cpuacct', string>,
  ) {}

  /**
   * Makes a cgroup named `${prefix}-${process.pid}`. Cgroups of the same prefix left by a run
   * that was killed before it could clean up (its pid gone, no process inside) are removed first.
   */
  static async create(prefix: string, limits: CgroupLimits): Promise<Cgroup> {
    const v2 = existsSync(path.join(root, 'cgroup.controllers'));
    const hierarchies = v2 ? [root] : ['memory', 'cpu', 'cpuacct'].map((h) => path.join(root, h));
    for (const hierarchy of hierarchies) {
      for (const entry of await readdir(hierarchy).catch(() => [])) {
        const pid = Number(entry.slice(prefix.length + 1));
        if (!entry.startsWith(`${prefix}-`) || !Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
        await rmdir(path.join(hierarchy, entry)).catch(() => undefined); // fails while a process is inside: left alone
      }
    }
    const name = `${prefix}-${process.pid}`;
    const dirs = v2
      ? { memory: path.join(root, name), cpu: path.join(root, name), cpuacct: path.join(root, name) }
      : { memory: path.join(root, 'memory', name), cpu: path.join(root, 'cpu', name), cpuacct: path.join(root, 'cpuacct', name) };
    if (v2) await writeFile(path.join(root, 'cgroup.subtree_control'), '+memory +cpu').catch(() => undefined);
    for (const dir of new Set(Object.values(dirs))) await mkdir(dir, { recursive: true });
    const group = new Cgroup(name, v2, dirs);
    const bytes = String(limits.memoryBytes);
    if (v2) {
      await writeFile(path.join(dirs.memory, 'memory.max'), bytes);
      await writeFile(path.join(dirs.memory, 'memory.swap.max'), '0').catch(() => undefined);
      if (limits.cpus) await writeFile(path.join(dirs.cpu, 'cpu.max'), `${Math.round(limits.cpus * 100_000)} 100000`);
    } else {
      await writeFile(path.join(dirs.memory, 'memory.limit_in_bytes'), bytes);
      await writeFile(path.join(dirs.memory, 'memory.swappiness'), '0').catch(() => undefined);
      if (limits.cpus) {
        await writeFile(path.join(dirs.cpu, 'cpu.cfs_period_us'), '100000');
        await writeFile(path.join(dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * 100_000)));
      }
    }
    return group;
  }

  /**
   * A command line that joins this cgroup and then execs the program, so the program and
   * everything it starts are limited from their first instruction.
   */
  wrap(command: string, args: readonly string[]): [string, string[]] {
    const files = [...new Set(Object.values(this.dirs))].map((dir) => path.join(dir, 'cgroup.procs'));
    const join = files.map((file) => `echo $$ > '${file}'`).join(' && ');
    return ['/bin/sh', ['-c', `${join} && exec "$@"`, 'cgroup-join', command, ...args]];
  }

  /** Process ids in the cgroup. */
  async pids(): Promise<number[]> {
    const text = await readFile(path.join(this.dirs.memory, 'cgroup.procs'), 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map(Number);
  }

  async usage(): Promise<CgroupUsage> {
    const read = async (dir: keyof typeof this.dirs, file: string): Promise<string> => (await readFile(path.join(this.dirs[dir], file), 'utf8')).trim();
    if (this.v2) {
      const events = await read('memory', 'memory.events');
      const cpu = await read('cpu', 'cpu.stat');
      return {
        memoryBytes: Number(await read('memory', 'memory.current')),
        peakMemoryBytes: Number(await read('memory', 'memory.peak').catch(() => '0')),
        cpuSeconds: Number(/usage_usec (\d+)/.exec(cpu)?.[1] ?? 0) / 1e6,
        oomKills: Number(/oom_kill (\d+)/.exec(events)?.[1] ?? 0),
      };
    }
    const oom = await read('memory', 'memory.oom_control');
    return {
      memoryBytes: Number(await read('memory', 'memory.usage_in_bytes')),
      peakMemoryBytes: Number(await read('memory', 'memory.max_usage_in_bytes')),
      cpuSeconds: Number(await read('cpuacct', 'cpuacct.usage')) / 1e9,
      oomKills: Number(/oom_kill (\d+)/.exec(oom)?.[1] ?? 0),
    };
  }

  /** Removes the cgroup once its processes are gone (kills what is left). */
  async remove(): Promise<void> {
    await killUntilGone(() => this.pids());
    for (const dir of new Set(Object.values(this.dirs))) await rmdir(dir).catch(() => undefined);
  }
}

/** Resident set size of one process and its anonymous part (heap, not mapped files), from /proc. */
export async function residentBytes(pid: number): Promise<{ rss: number; anonymous: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kib('VmRSS'), anonymous: kib('RssAnon') };
}

/** Parses Kubernetes quantities like 256Mi, 1G, 512M. */
export function parseBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(quantity.trim());
  if (!match) throw new Error(`${quantity} is not a memory quantity such as 256Mi`);
  const factor: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9 };
  return Math.round(Number(match[1]) * (factor[match[2] ?? ''] ?? 1));
}
