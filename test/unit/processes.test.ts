import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ManagedProcess } from '../support/processes.js';
import { repoRoot } from '../support/testbin.js';
import { waitFor } from '../support/wait.js';

/** PIDs in a process group, via pgrep (empty when the group is gone). */
async function groupMembers(pgid: number): Promise<number[]> {
  try {
    const { stdout } = await promisify(execFile)('pgrep', ['-g', String(pgid)]);
    return stdout.split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('ManagedProcess', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'processes-test-'))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('stop() ends the child and its whole process group', async () => {
    const proc = new ManagedProcess('sleeper', 'sleep', ['300'], { logFile: path.join(dir, 'sleeper.log') });
    const pgid = proc.pid ?? 0;
    await waitFor('the child to start', async () => ((await groupMembers(pgid)).length >= 2 ? true : undefined));
    await proc.stop();
    expect(proc.running).toBe(false);
    expect(await groupMembers(pgid)).toEqual([]);
  });

  it('a child that ignores SIGTERM is killed after the grace period', async () => {
    const proc = new ManagedProcess('stubborn', 'sh', ['-c', 'trap "" TERM; while :; do sleep 1; done'], { logFile: path.join(dir, 'stubborn.log') });
    const pgid = proc.pid ?? 0;
    await waitFor('the child to start', async () => ((await groupMembers(pgid)).length >= 2 ? true : undefined));
    await proc.stop(500);
    await waitFor('the group to be gone', async () => ((await groupMembers(pgid)).length === 0 ? true : undefined), 5_000);
  });

  // A separate Node process (run with type stripping) starts a supervised child, prints the
  // process group, then gets SIGKILL: no cleanup code of its own can run.
  async function orphan(command: string, args: string[]): Promise<number> {
    const script = `
      const { ManagedProcess } = await import(${JSON.stringify(path.join(repoRoot, 'test/support/processes.ts'))});
      const proc = new ManagedProcess('orphan', ${JSON.stringify(command)}, ${JSON.stringify(args)}, { logFile: ${JSON.stringify(path.join(dir, 'orphan.log'))} });
      console.log(proc.pid);
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pgid = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (chunk: Buffer) => {
        resolve(Number(chunk.toString().trim()));
      }),
    );
    await waitFor('the orphan to start', async () => ((await groupMembers(pgid)).length >= 2 ? true : undefined));
    parent.kill('SIGKILL');
    return pgid;
  }

  it('the child dies when the test process is SIGKILLed', async () => {
    const pgid = await orphan('sleep', ['300']);
    await waitFor('the orphan to be stopped', async () => ((await groupMembers(pgid)).length === 0 ? true : undefined), 10_000);
  });

  it('a child that ignores SIGTERM is killed after the grace period when the test process is SIGKILLed', async () => {
    const pgid = await orphan('sh', ['-c', 'trap "" TERM; while :; do sleep 1; done']);
    await waitFor('the orphan to be killed', async () => ((await groupMembers(pgid)).length === 0 ? true : undefined), 20_000);
  }, 30_000);
});
