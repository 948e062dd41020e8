// The operator process once its signal handlers are in place (see main.ts): flags → settings →
// operator, until a signal or a failure ends it. Resolves to the exit code.
import { resolveAwsSettings, SettingsError } from '../aws/settings.js';
import { FlagError, parseFlags, usage } from '../config/flags.js';
import { packageVersion } from '../version.js';
import { createLogger } from '../observability/logger.js';
import { StartAborted } from '../runtime/manager.js';
import { startOperator } from '../app.js';
import { operatorEnvironment } from '../config/environment.js';

export async function runOperator(argv: readonly string[], stopping: AbortSignal, stopReason: Promise<string>): Promise<number> {
  let flags;
  let aws;
  try {
    flags = parseFlags(argv);
    if (flags.help) {
      process.stdout.write(usage('entitlement-operator'));
      return 0;
    }
    if (flags.version) {
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    aws = resolveAwsSettings(flags);
  } catch (error) {
    if (!(error instanceof FlagError) && !(error instanceof SettingsError)) throw error;
    process.stderr.write(`entitlement-operator: ${error.message}\n${error instanceof FlagError ? `\n${usage('entitlement-operator')}` : ''}`);
    return 2;
  }

  const log = createLogger();
  const env = operatorEnvironment();
  log.info('starting', {
    identity: env.identity,
    namespace: env.namespace,
    leaderElect: flags.leaderElect,
    admission: flags.admission,
    webhookUrl: flags.webhookUrl,
    awsRegion: aws.region,
    awsIdentity: aws.credentials.kind,
    meteringEndpoint: aws.meteringEndpoint,
  });
  let operator;
  try {
    operator = await startOperator(flags, aws, env, log, stopping);
  } catch (error) {
    if (!(error instanceof StartAborted)) throw error;
    log.info('start-up aborted', { reason: await stopReason });
    return 0;
  }
  log.info('started');

  const ended = await Promise.race([stopReason.then((signal) => ({ reason: signal, failed: false })), operator.failed.then((why) => ({ reason: why, failed: true }))]);
  log.info('shutting down', { reason: ended.reason });
  await operator.stop();
  log.info('stopped');
  return ended.failed ? 1 : 0;
}
