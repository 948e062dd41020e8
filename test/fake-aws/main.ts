// Starts the local fake of AWS Marketplace Metering and STS:
//   npm run fake-aws -- --port 4566 [--allow-unsigned] [--config fake.yaml]
// and prints its URL and the public key that verifies its RegisterUsage signatures.
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { clockFromEnv } from '../../src/clock.js';
import { FlagError, helpFlagSpec, parseFlagsWith, usage, type FlagSpecs } from '../../src/config/flags.js';
import { FakeAws, fakeCredentials, type FakeAwsOptions } from './server.js';

const specs: FlagSpecs = {
  port: { key: 'port', kind: 'port', help: 'port to listen on (default 4566)' },
  host: { key: 'host', kind: 'string', help: 'address to listen on (default 127.0.0.1)' },
  'signing-key': { key: 'signingKey', kind: 'string', help: 'PKCS#8 PEM file of the RSA key that signs RegisterUsage answers (default: generated)' },
  'service-account-keys': { key: 'serviceAccountKeys', kind: 'string', help: "comma-separated PEM files of the cluster's service-account issuer public keys" },
  'allow-unsigned': { key: 'allowUnsigned', kind: 'boolean', help: 'accept requests without a SigV4 signature' },
  config: { key: 'config', kind: 'string', help: 'YAML file with products (behaviour per product code), customers, credentials, deniedRoles' },
  ...helpFlagSpec,
};

interface Flags {
  port: number;
  host: string;
  signingKey?: string;
  serviceAccountKeys?: string;
  allowUnsigned?: boolean;
  config?: string;
  help?: boolean;
}

async function main(): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlagsWith<Flags>(process.argv.slice(2), specs, { port: 4566, host: '127.0.0.1' });
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    process.stderr.write(`fake-aws: ${error.message}\n\n${usage('fake-aws', specs)}`);
    process.exitCode = 2;
    return;
  }
  if (flags.help) {
    process.stdout.write(usage('fake-aws', specs));
    return;
  }
  const options: FakeAwsOptions = {
    ...(flags.config ? (load(readFileSync(flags.config, 'utf8')) as FakeAwsOptions) : {}),
    ...(flags.signingKey ? { signingKeyPem: readFileSync(flags.signingKey, 'utf8') } : {}),
    ...(flags.serviceAccountKeys ? { serviceAccountKeyPems: flags.serviceAccountKeys.split(',').map((f) => readFileSync(f, 'utf8')) } : {}),
    ...(flags.allowUnsigned ? { allowUnsigned: true } : {}),
    // The same SIMULATED_CLOCK as the operator's, when set.
    clock: clockFromEnv(),
  };
  const fake = await FakeAws.start(options, flags.port, flags.host);
  process.stdout.write(
    `${JSON.stringify({ url: fake.url, accessKeyId: (options.credentials ?? [fakeCredentials])[0]?.accessKeyId, allowUnsigned: options.allowUnsigned ?? false })}\n${fake.publicKeyPem}`,
  );
  const stop = (): void => {
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

await main();
