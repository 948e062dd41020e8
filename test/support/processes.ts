// Child processes that cannot outlive the test process. Each runs under a tiny shell supervisor
// that holds a pipe from us: when the test process ends for any reason (a failed test, Ctrl-C,
// even SIGKILL) the pipe closes and the supervisor stops the child: SIGTERM, then SIGKILL to the
// whole group after a grace period (an API server whose etcd is gone takes a minute to stop on
// SIGTERM). Each supervisor leads its own process group, so stop() can always finish the job
// with one SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

/** How long a child may take to stop on SIGTERM once the test process is gone. */
const orphanGraceSeconds = 10;

const supervisor = `
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
{
  said=$(cat)
  kill -TERM "$child" 2>/dev/null
  # stop() says so before it closes the pipe, and finishes the job itself.
  [ "$said" = stop ] && exit 0
  waited=0 # the KILL goes to our own group, so a reused PID can only delay it
  while kill -0 "$child" 2>/dev/null; do
    [ "$waited" -ge ${orphanGraceSeconds} ] && kill -KILL 0
    sleep 1; waited=$((waited + 1))
  done
} <&3 &
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit $status
`;

export interface ProcessOptions {
  logFile: string;
  env?: NodeJS.ProcessEnv;
}

export class ManagedProcess {
  readonly name: string;
  private readonly options: ProcessOptions;
  private readonly child: ChildProcess;
  private readonly exit: Promise<number | null>;
  private exitCode: number | null | undefined;

  // Plain fields rather than parameter properties: this file also runs under Node's type
  // stripping (see test/unit/processes.test.ts).
  constructor(name: string, command: string, args: readonly string[], options: ProcessOptions) {
    this.name = name;
    this.options = options;
    const log = openSync(options.logFile, 'a');
    try {
      this.child = spawn('/bin/sh', ['-c', supervisor, name, command, ...args], {
        detached: true,
        stdio: ['pipe', log, log],
        env: options.env ?? process.env,
      });
    } finally {
      closeSync(log);
    }
    this.exit = new Promise((resolve) => {
      this.child.on('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      });
    });
    // The supervisor may be gone when stop() writes to it (EPIPE): nothing is lost then.
    this.child.stdin?.on('error', () => undefined);
    // Keep the pipe from holding the event loop open; it still closes when we exit.
    this.child.unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** The last lines of the process's log, for error messages. */
  logTail(lines = 30): string {
    return readFileSync(this.options.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Kills the process and its supervisor at once, as a crash would (no cleanup runs). */
  kill(): void {
    this.child.stdin?.end();
    killGroup(this.child.pid);
  }

  /** SIGTERM to the supervised program (the supervisor forwards it), for a graceful stop. */
  terminate(): void {
    try {
      process.kill(this.child.pid ?? 0, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }

  /** Resolves when the process has exited. */
  exited(): Promise<number | null> {
    return this.exit;
  }

  /**
   * Stops the process: SIGTERM through the supervisor, SIGKILL to the group after graceMs. Resolves
   * once the group is gone: a killed process lingers until it is reaped (by init, once the
   * supervisor is gone), and callers check for leftovers right after.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child.stdin?.writableEnded === false) this.child.stdin.end('stop');
    if (this.running) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([this.exit, timeout]);
      clearTimeout(timer);
    }
    killGroup(this.child.pid);
    await groupGone(this.child.pid);
  }
}

async function groupGone(pgid: number | undefined, timeoutMs = 5_000): Promise<void> {
  if (pgid === undefined) return;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return; // ESRCH: no process left in the group
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // The group is already gone.
  }
}

/** Whether a process exists (EPERM: it does, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILL to every process `find` returns, again and again until it returns none (or tries run out). */
export async function killUntilGone(find: () => Promise<number[]>, tries = 50): Promise<void> {
  for (let attempt = 0; attempt < tries; attempt++) {
    const pids = await find();
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
