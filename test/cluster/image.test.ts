// The shipped image on its own: hack/build-images.sh's operator for linux/amd64 and linux/arm64,
// run with podman (hack/podman-build.sh's storage) against a real API server on loopback, as the
// install bundle's ServiceAccount. Both images are within the size bound and the manifest list
// names both; the image of this machine starts until ready (its admission thread, the bundle's
// second entry point, answering the API server); a SIGTERM in its first 100 ms ends it, where
// without tini as PID 1 the same signal is lost; the arm64 image runs under qemu emulation
// (--version, then until ready). Start-up time and RSS of dist/ with node_modules and of the
// bundle are measured and printed, not asserted.
import { execFile, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chown, copyFile, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ControlPlane } from '../support/control-plane.js';
import { fakeCredentials } from '../support/fake-aws.js';
import { buildImages, imagesUnavailable } from '../support/images.js';
import { managerRuntime, operatorNamespace } from '../support/bundle.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForGating, type OperatorEnvironment } from '../support/operator.js';
import { isAlive } from '../support/processes.js';
import { repoRoot } from '../support/testbin.js';
import { freePort, waitFor } from '../support/wait.js';

const podmanBuild = path.join(repoRoot, 'hack/podman-build.sh');
const emulation = path.join(repoRoot, 'hack/with-arm64-emulation.sh');
const image = (arch: string): string => `localhost/entitlement-operator:e2e-${arch}`;
const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const maxBytes = 150_000_000;
const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };

const unavailable = imagesUnavailable();
if (unavailable) process.stderr.write(`image suite skipped: ${unavailable}\n`);
const noEmulation = spawnSync(emulation, ['--check'], { encoding: 'utf8' });
const emulated = hostArch === 'amd64' && noEmulation.status === 0;
if (!emulated) process.stderr.write(`image suite: arm64 under emulation skipped: ${noEmulation.stderr.trim() || 'not an amd64 machine'}\n`);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}
function run(command: string, args: readonly string[], timeoutMs = 300_000, cwd?: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, ...(cwd ? { cwd } : {}) }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}
const podman = (args: readonly string[], timeoutMs?: number): Promise<Result> => run(podmanBuild, ['--podman', ...args], timeoutMs);
async function podmanOk(args: readonly string[]): Promise<string> {
  const result = await podman(args);
  if (result.code !== 0) throw new Error(`podman ${args.join(' ')} exited with ${result.code}: ${result.stderr}`);
  return result.stdout.trim();
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined; // gone
  }
}
/** A field of /proc/PID/status ("SigCgt", "VmRSS", ...). */
const statusField = (pid: number, name: string): string | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(readProc(pid, 'status') ?? '')?.[1];
const comm = (pid: number): string | undefined => readProc(pid, 'comm')?.trim();
/** The program PID runs (Node names its main thread, so its comm is MainThread). */
const program = (pid: number): string | undefined => {
  try {
    return path.basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return undefined;
  }
};
const childOf = (pid: number): number | undefined => {
  const first = readProc(pid, `task/${pid}/children`)?.trim().split(/\s+/)[0];
  return first ? Number(first) : undefined;
};
const sigtermBit = 1n << 14n; // signal 15, in the hex masks of /proc/PID/status
const takesSigterm = (pid: number, field: 'SigCgt' | 'SigBlk'): boolean => (BigInt(`0x${statusField(pid, field) ?? '0'}`) & sigtermBit) !== 0n;
/** Whether a SIGTERM to PID now is kept: it blocks or catches it, or waits for it (tini's sigtimedwait unblocks it meanwhile). */
const keepsSigterm = (pid: number): boolean => takesSigterm(pid, 'SigBlk') || takesSigterm(pid, 'SigCgt') || (readProc(pid, 'wchan') ?? '').startsWith('do_sigtimedwait');
const rssMiB = (pid: number): number => Number(/\d+/.exec(statusField(pid, 'VmRSS') ?? '0')?.[0] ?? 0) / 1024;
const pauseCell = new Int32Array(new SharedArrayBuffer(4));
/** Sleeps off the event loop, for timing well under a millisecond. */
const sleepSync = (ms: number): void => void Atomics.wait(pauseCell, 0, 0, ms);
const msSince = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;
const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
const fmt = (values: readonly number[], unit: string): string => `median ${median(values).toFixed(0)} ${unit} (${values.map((v) => v.toFixed(0)).join(', ')})`;

(unavailable ? describe.skip : describe)('the operator image', () => {
  let plane: ControlPlane;
  let env: OperatorEnvironment;
  let archives: { operator: string };
  let secrets: string; // the kubeconfig and CA, readable by the image's user
  const cgroup = `entitlement-operator-image-test-${process.pid}`;
  const containers = new Set<string>();

  beforeAll(async () => {
    ({ archives } = await buildImages());
    plane = await ControlPlane.start();
    env = await prepareOperatorEnvironment(plane, 'webhook');
    secrets = await mkdtemp(path.join(os.tmpdir(), 'image-test-'));
    await copyFile(plane.file('ca.crt'), path.join(secrets, 'ca.crt'));
    const kubeconfig = (await readFile(env.kubeconfig, 'utf8')).replace(plane.file('ca.crt'), '/secrets/ca.crt');
    await writeFile(path.join(secrets, 'kubeconfig'), kubeconfig, { mode: 0o600 });
    for (const file of ['', 'ca.crt', 'kubeconfig']) await chown(path.join(secrets, file), 65532, 65532);
  }, 1_200_000);

  afterAll(async () => {
    for (const name of containers) await podman(['rm', '-f', '-t', '0', name]);
    for (const dir of [`/sys/fs/cgroup/${cgroup}`, ...readdirSync('/sys/fs/cgroup').map((c) => `/sys/fs/cgroup/${c}/${cgroup}`)]) await rmdir(dir).catch(() => undefined);
    // Either may be missing: beforeAll may have failed before it was made.
    await (env as OperatorEnvironment | undefined)?.fake.close();
    await (plane as ControlPlane | undefined)?.stop();
    if (secrets) await rm(secrets, { recursive: true, force: true });
  }, 120_000);

  /** A created (not started) operator container of IMAGE, and where its health port answers. */
  async function create(ref: string, options: { entrypoint?: string[] } = {}): Promise<{ name: string; health: string }> {
    const name = `entitlement-operator-image-test-${process.pid}-${containers.size + 1}`;
    containers.add(name);
    const [webhook, metrics, health] = [await freePort(), await freePort(), await freePort()];
    // As the bundle's Deployment runs it (NODE_OPTIONS, MALLOC_ARENA_MAX), so the RSS is the one it would have.
    const vars = { ...managerRuntime().env, POD_NAMESPACE: operatorNamespace, POD_NAME: name, AWS_ACCESS_KEY_ID: fakeCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: fakeCredentials.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
    await podmanOk([
      'create', '--name', name, '--network=host', '--read-only', '--cgroup-parent', `/${cgroup}`, '-v', `${secrets}:/secrets:ro`,
      ...Object.entries(vars).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
      ...(options.entrypoint ? ['--entrypoint', JSON.stringify(options.entrypoint)] : []),
      ref,
      '--kubeconfig=/secrets/kubeconfig', `--webhook-port=${webhook}`, `--webhook-url=https://127.0.0.1:${webhook}`, `--metrics-port=${metrics}`,
      `--health-port=${health}`, '--region=us-east-1', `--metering-endpoint=${env.fake.url}`, `--sts-endpoint=${env.fake.url}`, '--timeout=5',
    ]);
    return { name, health: `http://127.0.0.1:${health}` };
  }

  /**
   * Starts a created container; returns the host PID of its PID 1 and the moment it exec'd the
   * image's entrypoint (seen as its name changing from runc's init), polled every 0.1 ms.
   */
  async function startWatched(name: string): Promise<{ pid: number; execAt: bigint; started: Promise<Result> }> {
    await podmanOk(['init', name]);
    const pid = Number(await podmanOk(['inspect', '--format', '{{.State.Pid}}', name]));
    const before = comm(pid);
    const started = podman(['start', name]);
    const deadline = Date.now() + 60_000;
    while (comm(pid) === before && Date.now() < deadline) sleepSync(0.1);
    if (comm(pid) === before) throw new Error(`${name} did not exec within 60 s`);
    return { pid, execAt: process.hrtime.bigint(), started };
  }

  async function waitReady(health: string, timeoutMs: number): Promise<void> {
    await waitFor(`the operator at ${health}/readyz`, async () => ((await fetch(`${health}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined), timeoutMs, 50);
  }

  it('is at most 150 MB for each platform, and the manifest list names both', async () => {
    const sizes: Record<string, number> = {};
    for (const arch of ['amd64', 'arm64']) {
      const [architecture, size] = (await podmanOk(['image', 'inspect', '--format', '{{.Architecture}} {{.Size}}', image(arch)])).split(' ');
      expect(architecture).toBe(arch);
      sizes[arch] = Number(size);
      expect(sizes[arch]).toBeLessThanOrEqual(maxBytes);
    }
    const archive = path.join(path.dirname(archives.operator), 'operator-multiarch.tar');
    const entry = async (name: string): Promise<string> => (await run('tar', ['-xOf', archive, name])).stdout;
    const top = JSON.parse(await entry('index.json')) as { manifests: { digest: string }[] };
    const list = JSON.parse(await entry(`blobs/sha256/${top.manifests[0]?.digest.replace('sha256:', '') ?? ''}`)) as { manifests: { platform?: { os: string; architecture: string } }[] };
    expect(list.manifests.map((m) => `${m.platform?.os ?? ''}/${m.platform?.architecture ?? ''}`).sort()).toEqual(['linux/amd64', 'linux/arm64']);
    process.stderr.write(`image sizes (uncompressed): ${JSON.stringify(sizes)}\n`);
  });

  /** Start-up (exec to /readyz) and Node's RSS 2 s after ready, RUNS times; the first also until the API server's admission calls are answered. */
  async function measureImage(ref: string, runs: number): Promise<{ startUps: number[]; rss: number[] }> {
    const startUps: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < runs; i++) {
      const { name, health } = await create(ref);
      const { pid, execAt, started } = await startWatched(name);
      await waitReady(health, 90_000);
      startUps.push(msSince(execAt));
      if (i === 0) await waitForGating(plane);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      rss.push(rssMiB(program(pid) === 'node' ? pid : (childOf(pid) ?? pid)));
      await started;
      await podmanOk(['stop', '-t', '20', name]);
      expect(await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe('0');
    }
    return { startUps, rss };
  }

  it("this machine's image prints its version and starts until ready, answering the API server's admission calls", async () => {
    expect(await podmanOk(['run', '--rm', '--network=none', '--read-only', '--cgroup-parent', `/${cgroup}`, image(hostArch), '--version'])).toBe(version);
    const { name } = await create(image(hostArch));
    const { pid, started } = await startWatched(name);
    expect(program(pid)).toBe('tini');
    await started;
    await podmanOk(['rm', '-f', '-t', '0', name]);
    // IMAGE_TEST_BEFORE=REF: an earlier image measured the same way, for comparison.
    for (const ref of [image(hostArch), ...(process.env.IMAGE_TEST_BEFORE ? [process.env.IMAGE_TEST_BEFORE] : [])]) {
      const { startUps, rss } = await measureImage(ref, 3);
      process.stderr.write(`image ${ref}: exec to /readyz ${fmt(startUps, 'ms')}; Node's RSS 2 s after ready ${fmt(rss, 'MiB')}\n`);
    }
  }, 600_000);

  /**
   * SIGTERM to the container's PID 1 (from the host, as runc's kill does) DELAY ms after it
   * exec'd, and not before PID 1 keeps a SIGTERM (keepsSigterm): before that, a signal to a
   * namespace's init is dropped, a window of microseconds for tini that no caller can aim at, but
   * one a loaded machine can stretch by not running it. Returns when it was sent, what Node was
   * doing then, and how the container ended.
   */
  async function earlySigterm(ref: string, delayMs: number, entrypoint?: string[]): Promise<{ sentMs: number; node: string; endedMs?: number; code?: string }> {
    const { name } = await create(ref, entrypoint ? { entrypoint } : {});
    const { pid, execAt, started } = await startWatched(name);
    sleepSync(Math.max(0, delayMs - msSince(execAt)));
    if (!entrypoint) while (!keepsSigterm(pid) && msSince(execAt) < 1_000) sleepSync(0.05);
    const nodePid = program(pid) === 'node' ? pid : childOf(pid);
    // Node's own handler (it resets the terminal, then dies of the signal) shows here as well.
    const node = nodePid === undefined || program(nodePid) !== 'node' ? 'not started' : takesSigterm(nodePid, 'SigCgt') ? 'catching SIGTERM' : 'not catching SIGTERM';
    const sentMs = msSince(execAt);
    process.kill(pid, 'SIGTERM');
    const sent = process.hrtime.bigint();
    await started;
    const deadline = Date.now() + 10_000;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    if (isAlive(pid)) {
      await podmanOk(['rm', '-f', '-t', '0', name]);
      return { sentMs, node };
    }
    const endedMs = msSince(sent);
    await podman(['wait', name], 30_000);
    return { sentMs, node, endedMs, code: await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', name]) };
  }

  it('ends on a SIGTERM in its first 100 ms (tini forwards it), where Node as PID 1 loses it', async () => {
    const describe_ = (what: string, r: Awaited<ReturnType<typeof earlySigterm>>): string =>
      `  ${what}: sent ${r.sentMs.toFixed(2)} ms after exec, Node ${r.node}; ${r.endedMs === undefined ? 'still running 10 s later' : `ended ${r.endedMs.toFixed(0)} ms later, exit code ${r.code ?? '?'}`}`;
    const runs = [];
    for (const delayMs of [0, 5, 20, 50, 95]) runs.push({ delayMs, ...(await earlySigterm(image(hostArch), delayMs)) });
    // The same image with Node as PID 1, signalled as early: the kernel drops the signal.
    const bare = await earlySigterm(image(hostArch), 10, ['/usr/local/bin/node', '/app/main.js']);
    process.stderr.write(`early SIGTERM to ${image(hostArch)}:\n${[...runs.map((r) => describe_(`${r.delayMs} ms`, r)), describe_('Node as PID 1, 10 ms', bare)].join('\n')}\n`);
    for (const run of runs) {
      expect(run.endedMs).toBeDefined();
      // 143: Node ended by the signal tini forwarded, before the operator's handler was in place; 0: start-up aborted by it.
      expect(['0', '143']).toContain(run.code);
    }
    // At least one came in the first 100 ms and before the operator could have handled it.
    expect(runs.some((run) => run.sentMs < 100 && run.code === '143')).toBe(true);
    expect(bare.endedMs).toBeUndefined();
  }, 600_000);

  (emulated ? it : it.skip)('the arm64 image runs under emulation: --version, then until ready', async () => {
    const emulate = (args: readonly string[], timeoutMs: number): Promise<Result> => run(emulation, [podmanBuild, '--podman', ...args], timeoutMs);
    const printed = await emulate(['run', '--rm', '--network=none', '--read-only', '--cgroup-parent', `/${cgroup}`, image('arm64'), '--version'], 300_000);
    expect(printed.stdout.trim()).toBe(version);
    const { name, health } = await create(image('arm64'));
    const t0 = process.hrtime.bigint();
    // Attached, so the registration lasts as long as the container runs.
    const attached = emulate(['start', '--attach', name], 900_000);
    await waitReady(health, 600_000);
    const readyMs = msSince(t0);
    await waitForGating(plane);
    const pid = Number(await podmanOk(['inspect', '--format', '{{.State.Pid}}', name]));
    // qemu runs tini, and tini's child Node: the image's programs are arm64 ones.
    expect(program(pid)).toBe('qemu-aarch64-static');
    const rss = rssMiB(childOf(pid) ?? pid);
    await podmanOk(['stop', '-t', '30', name]);
    expect((await attached).code).toBe(0);
    expect(await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe('0');
    process.stderr.write(`image ${image('arm64')} under qemu: start to /readyz ${readyMs.toFixed(0)} ms; RSS of Node under qemu ${rss.toFixed(0)} MiB\n`);
  }, 900_000);

  it('start-up time and RSS: dist/ with node_modules against the bundle (printed, on this machine)', async () => {
    const bundleDir = await mkdtemp(path.join(os.tmpdir(), 'image-test-bundle-'));
    try {
      const bundled = await run(process.execPath, [path.join(repoRoot, 'hack/bundle.mjs'), bundleDir], 120_000, repoRoot);
      expect(bundled.code).toBe(0);
      const layouts = { 'dist/ with node_modules': path.join(repoRoot, 'dist/main.js'), bundle: path.join(bundleDir, 'main.js') };
      const figures: Record<string, { startUps: number[]; rss: number[] }> = {};
      for (let i = 0; i < 3; i++) {
        for (const [layout, script] of Object.entries(layouts)) {
          const t0 = process.hrtime.bigint();
          const operator = await startOperatorProcess(plane, env.fake, env.kubeconfig, {
            name: `layout-${i}-${layout.split('/')[0] ?? ''}`,
            waitReady: false,
            env: managerRuntime().env,
            launch: (command, args) => [command, [script, ...args.slice(1)]],
          });
          await plane.waitHealthy(operator.proc, `${operator.healthUrl}/readyz`, 90_000);
          const startUp = msSince(t0);
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          const node = childOf(operator.proc.pid ?? 0);
          expect(node && program(node)).toBe('node');
          const figure = (figures[layout] ??= { startUps: [], rss: [] });
          figure.startUps.push(startUp);
          figure.rss.push(rssMiB(node ?? 0));
          await operator.proc.stop();
        }
      }
      for (const [layout, { startUps, rss }] of Object.entries(figures)) {
        process.stderr.write(`${layout}: start to /readyz ${fmt(startUps, 'ms')}; RSS 2 s after ready ${fmt(rss, 'MiB')}\n`);
      }
    } finally {
      await rm(bundleDir, { recursive: true, force: true });
    }
  }, 600_000);
});

