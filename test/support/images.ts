// The images a real node runs, built without a registry by hack/build-images.sh (the operator
// from the Dockerfile, a pause image, a busybox workload) and saved as OCI archives in a cache
// directory that outlives the test run, so a second run only rebuilds what changed.
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './testbin.js';

export const images = {
  operator: 'localhost/entitlement-operator:e2e',
  pause: 'localhost/pause:local',
  busybox: 'localhost/busybox:local',
} as const;

export interface ImageArchives {
  operator: string;
  pause: string;
  busybox: string;
}

const script = (): string => path.join(repoRoot, 'hack/build-images.sh');

/** Why the images cannot be built on this machine (no root, a missing tool), or undefined. */
export function imagesUnavailable(): string | undefined {
  const check = spawnSync(script(), ['--check'], { encoding: 'utf8' });
  if (check.status === 0) return undefined;
  return check.stderr.trim().split('\n').pop() ?? `hack/build-images.sh --check exited with ${String(check.status)}`;
}

/** Builds the images (or finds them current) and returns their archives. */
export function buildImages(): Promise<{ archives: ImageArchives }> {
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  const outDir = path.join(cache, 'entitlement-operator', 'images');
  return new Promise((resolve, reject) => {
    const child = spawn(script(), [outDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = stdout.trim().split('\n').pop() ?? outDir;
      if (code === 0) resolve({ archives: { operator: path.join(dir, 'operator.tar'), pause: path.join(dir, 'pause.tar'), busybox: path.join(dir, 'busybox.tar') } });
      else reject(new Error(`hack/build-images.sh exited with ${String(code)}:\n${stderr.split('\n').slice(-30).join('\n')}`));
    });
  });
}
