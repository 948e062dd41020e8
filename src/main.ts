#!/usr/bin/env node
// Entry point of the operator process: flags → logger → servers. No logic of its own.
import { resolveAwsSettings, SettingsError } from './aws/settings.js';
import { FlagError, parseFlags, usage } from './config/flags.js';
import { HealthServer } from './observability/health.js';
import { createLogger } from './observability/logger.js';

async function main(argv: readonly string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(argv);
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    process.stderr.write(`entitlement-operator: ${error.message}\n\n${usage('entitlement-operator')}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(usage('entitlement-operator'));
    return 0;
  }

  let aws;
  try {
    aws = resolveAwsSettings(flags);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    process.stderr.write(`entitlement-operator: ${error.message}\n`);
    return 2;
  }

  const log = createLogger();
  const health = new HealthServer();
  await health.listen(flags.healthPort);
  log.info('operator started', {
    healthPort: flags.healthPort,
    leaderElect: flags.leaderElect,
    awsRegion: aws.region,
    awsIdentity: aws.credentials.kind,
    meteringEndpoint: aws.meteringEndpoint,
  });

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('shutting down', { signal });
  await health.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`entitlement-operator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
