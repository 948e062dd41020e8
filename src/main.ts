#!/usr/bin/env node
// Entry point of the operator process: flags → settings → operator. No logic of its own.
import { resolveAwsSettings, SettingsError } from './aws/settings.js';
import { FlagError, parseFlags, usage } from './config/flags.js';
import { createLogger } from './observability/logger.js';
import { StartAborted } from './manager.js';
import { defaultOperatorOptions, startOperator } from './operator.js';

async function main(argv: readonly string[]): Promise<number> {
  let flags;
  let aws;
  try {
    flags = parseFlags(argv);
    if (flags.help) {
      process.stdout.write(usage('entitlement-operator'));
      return 0;
    }
    aws = resolveAwsSettings(flags);
  } catch (error) {
    if (!(error instanceof FlagError) && !(error instanceof SettingsError)) throw error;
    process.stderr.write(`entitlement-operator: ${error.message}\n${error instanceof FlagError ? `\n${usage('entitlement-operator')}` : ''}`);
    return 2;
  }

  const log = createLogger();
  // Signals are handled from here on: as PID 1 in a container, a signal without a handler is
  // ignored, and a SIGTERM during start-up must abort it rather than wait for it.
  const stopping = new AbortController();
  const stopReason = new Promise<string>((resolve) => {
    const on = (reason: string) => () => {
      resolve(reason);
      stopping.abort();
    };
    process.once('SIGTERM', on('SIGTERM'));
    process.once('SIGINT', on('SIGINT'));
  });
  const options = defaultOperatorOptions();
  log.info('starting', {
    identity: options.identity,
    namespace: options.namespace,
    leaderElect: flags.leaderElect,
    webhookUrl: flags.webhookUrl,
    awsRegion: aws.region,
    awsIdentity: aws.credentials.kind,
    meteringEndpoint: aws.meteringEndpoint,
  });
  let operator;
  try {
    operator = await startOperator(flags, aws, options, log, stopping.signal);
  } catch (error) {
    if (!(error instanceof StartAborted)) throw error;
    log.info('start-up aborted', { reason: await stopReason });
    return 0;
  }
  log.info('started');

  const reason = await Promise.race([stopReason, operator.lost.then(() => 'leadership lost')]);
  log.info('shutting down', { reason });
  await operator.stop();
  log.info('stopped');
  return reason === 'leadership lost' ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`entitlement-operator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
