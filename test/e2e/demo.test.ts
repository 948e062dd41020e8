// `make demo` driven as a newcomer would, but without a keyboard: it reaches the table with one
// product entitled and one refused, shows the second turn entitled on its own, and on Ctrl-C
// (SIGINT) exits 0 having removed everything it started.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/testbin.js';
import { waitFor } from '../support/wait.js';

/** Command lines of the running processes that mention `text`. */
function processesMentioning(text: string): string[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    })
    .filter((line) => line.includes(text));
}

it('make demo: one product entitled, one refused, then entitled on its own; Ctrl-C removes everything', async () => {
  const demo = spawn(process.execPath, ['--experimental-transform-types', '--disable-warning=ExperimentalWarning', '--import', './test/support/ts-hooks.mjs', 'test/demo/demo.ts'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  demo.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => { resolve(code); }));
  try {
    await waitFor('the demo to tell its story', () => Promise.resolve(output.includes('running until Ctrl-C') ? true : undefined), 240_000, 200);
  } finally {
    demo.kill('SIGINT');
  }
  expect(await exited).toBe(0);

  const [first, second] = output.split('the operator checked them again on its own');
  expect(first).toMatch(/^\s+analytics\s+demo-analytics\s+True\s+SignatureVerified\s+2\s+0\s/m);
  expect(first).toMatch(/^\s+reports\s+demo-reports\s+False\s+CustomerNotEntitled\s+0\s+2\s/m);
  expect(first).toMatch(/^\s+reports-\S+\s+0\/1\s+SchedulingGated\s/m);
  expect(second).toMatch(/^\s+reports\s+demo-reports\s+True\s+SignatureVerified\s+2\s+0\s/m);
  expect(second).not.toMatch(/SchedulingGated/);
  expect(output).toContain('stopped; nothing left running');

  const dir = path.dirname(/export KUBECONFIG=(\S+)/.exec(output)?.[1] ?? '/nonexistent/x');
  expect(dir).toMatch(/control-plane-/);
  expect(existsSync(dir)).toBe(false);
  expect(processesMentioning(dir)).toEqual([]);
}, 300_000);
