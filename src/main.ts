#!/usr/bin/env node
// Entry point of the operator process: flags → settings → operator. No logic of its own.
import { resolveAwsSettings, SettingsError } from './aws/settings.js';
import { FlagError, parseFlags, usage } from './config/flags.js';
import { createLogger } from './observability/logger.js';
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
  const operator = await startOperator(flags, aws, options, log);
  log.info('started');

  const reason = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => {
      resolve('SIGTERM');
    });
    process.once('SIGINT', () => {
      resolve('SIGINT');
    });
    void operator.lost.then(() => {
      resolve('leadership lost');
    });
  });
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
