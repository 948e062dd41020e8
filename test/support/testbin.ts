// Finds the binaries the tests run, building each on first use (hack/build-test-binaries.sh
// caches them by version outside the work tree). The Kubernetes release is the script's newest,
// or KUBERNETES_VERSION (the oldest-release job: npm run test:oldest-kubernetes).
import { spawn } from 'node:child_process';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

export type Binary = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl' | 'kubelet' | 'kube-proxy' | 'kwok' | 'kwokctl' | 'kube-score' | 'helm' | 'helm4' | 'promtool' | 'prometheus';

const found = new Map<Binary, Promise<string>>();

/** Path of a test binary. The first call for each in a process runs the build script, whose progress shows on stderr. */
export async function binary(name: Binary): Promise<string> {
  await binaries([name]);
  return path.join(await (found.get(name) ?? Promise.reject(new Error(`no ${name}`))), name);
}

/**
 * Builds (or finds) these binaries with one run of the build script: one `go build` of all the
 * Kubernetes commands among them compiles their shared packages in parallel.
 */
export async function binaries(names: readonly Binary[]): Promise<void> {
  const missing = names.filter((name) => !found.has(name));
  if (missing.length > 0) {
    const dir = runBuildScript(missing);
    for (const name of missing) found.set(name, dir);
  }
  await Promise.all(names.map((name) => found.get(name) ?? Promise.reject(new Error(`no build for ${name}`))));
}

function runBuildScript(names: readonly Binary[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(repoRoot, 'hack/build-test-binaries.sh'), names, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = stdout.trim().split('\n').pop();
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`hack/build-test-binaries.sh ${names.join(' ')} exited with ${String(code)}`));
    });
  });
}
