// What the command lines of the cluster benchmarks share: --help, number flags, and the memory
// cgroup they put the operator in.
import { cgroupUnavailable } from './cgroup.js';

/** Prints `usage` and exits 0 on --help; exits 2 when the operator cannot be put in a memory cgroup here. */
export function benchPreamble(bench: string, usage: string, help: boolean | undefined): void {
  if (help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const unavailable = cgroupUnavailable();
  if (unavailable) {
    process.stderr.write(`${bench} runs the operator in a memory cgroup, which is not possible here: ${unavailable}\n`);
    process.exit(2);
  }
}

/** Reads a flag as a number of at least 0 (`fallback` when not given), or exits 2 naming it, with the usage. */
export function numberFlag(values: Readonly<Record<string, unknown>>, name: string, usage: string, fallback?: number): number {
  const given = values[name];
  const value = Number(given ?? fallback);
  if (!Number.isFinite(value) || value < 0) {
    process.stderr.write(`--${name}: ${String(given)} is not a number\n\n${usage}`);
    process.exit(2);
  }
  return value;
}
