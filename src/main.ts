#!/usr/bin/env node
// Entry point of the operator process. Signals are handled from the first line, before anything
// else loads: as PID 1 in a container a signal without a handler is ignored, and a SIGTERM during
// start-up must end start-up, not wait for it. A second signal ends the process at once.
const stopping = new AbortController();
const stopReason = new Promise<string>((resolve) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      resolve(signal);
      stopping.abort();
    });
  }
});

try {
  const { runOperator } = await import('./cmd/operator.js');
  process.exit(await runOperator(process.argv.slice(2), stopping.signal, stopReason));
} catch (error) {
  process.stderr.write(`entitlement-operator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
