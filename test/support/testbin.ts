// Finds the control-plane binaries the tests run, building them on first use
// (hack/build-test-binaries.sh caches them by version outside the work tree).
import { spawn } from 'node:child_process';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

export type Binary = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl' | 'kubelet' | 'kube-proxy' | 'kwok' | 'kwokctl' | 'kube-score';

let binDir: Promise<string> | undefined;

/** Path of a test binary. The first call in a process runs the build script, whose progress shows on stderr. */
export async function binary(name: Binary): Promise<string> {
  binDir ??= runBuildScript();
  return path.join(await binDir, name);
}

function runBuildScript(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(repoRoot, 'hack/build-test-binaries.sh'), [], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = stdout.trim().split('\n').pop();
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`hack/build-test-binaries.sh exited with ${String(code)}`));
    });
  });
}
