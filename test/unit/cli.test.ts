// marketplace-metering against the fake: all five subcommands, --help on each, and errors on
// stderr with a non-zero exit code.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../../src/cli/marketplace-metering.js';
import { demoCustomer } from '../fake-aws/server.js';
import { fakeAwsForSuite, fakeCredentials } from '../support/fake-aws.js';

const fake = fakeAwsForSuite();
let dir: string;
let config: string;
let publicKey: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cli-'));
  config = path.join(dir, 'aws.yaml');
  await writeFile(config, `region: us-east-1\nendpoint: ${fake().url}\ncredentials:\n  creds:\n    access_key_id: ${fakeCredentials.accessKeyId}\n    secret_access_key: ${fakeCredentials.secretAccessKey}\n`);
  publicKey = path.join(dir, 'key.pem');
  await writeFile(publicKey, fake().publicKeyPem);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: {} });
  return { code, stdout, stderr };
}
const json = (stdout: string): Record<string, unknown> => JSON.parse(stdout) as Record<string, unknown>;

describe('marketplace-metering', () => {
  it('register-usage, then verify-signature offline', async () => {
    const registered = await cli('register-usage', '--config', config, '--product-code', 'cli-product', '--public-key-version', '1');
    expect(registered).toMatchObject({ code: 0, stderr: '' });
    const { Signature, Nonce } = json(registered.stdout) as { Signature: string; Nonce: string };
    expect(Buffer.from(Nonce, 'base64url')).toHaveLength(32);

    const args = ['verify-signature', '--signature', Signature, '--public-key', publicKey, '--product-code', 'cli-product', '--public-key-version', '1'];
    const ok = await cli(...args, '--nonce', Nonce);
    expect(ok.code).toBe(0);
    expect(json(ok.stdout)).toMatchObject({ valid: true, productCode: 'cli-product', publicKeyVersion: 1, nonce: Nonce });

    const replay = await cli(...args, '--nonce', 'another-nonce');
    expect(replay).toMatchObject({ code: 1, stdout: '' });
    expect(replay.stderr).toMatch(/invalid signature \(NonceMismatch\)/);
  });

  it('meter-usage', async () => {
    const out = await cli('meter-usage', '--config', config, '--product-code', 'cli-product', '--dimension', 'pods', '--quantity', '2', '--timestamp', new Date(Date.now() - 60_000).toISOString());
    expect(out.code).toBe(0);
    expect(json(out.stdout).MeteringRecordId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('batch-meter-usage', async () => {
    const records = JSON.stringify([{ CustomerIdentifier: demoCustomer.customerIdentifier, Dimension: 'users', Quantity: 3, Timestamp: Math.floor(Date.now() / 1000) - 60 }]);
    const out = await cli('batch-meter-usage', '--config', config, '--product-code', demoCustomer.productCode, '--records', records);
    expect(out.code).toBe(0);
    expect(json(out.stdout)).toMatchObject({ Results: [{ Status: 'Success', UsageRecord: { CustomerIdentifier: 'demo-customer', Dimension: 'users', Quantity: 3 } }], UnprocessedRecords: [] });
  });

  it('resolve-customer', async () => {
    const out = await cli('resolve-customer', '--config', config, '--registration-token', demoCustomer.registrationToken);
    expect(out.code).toBe(0);
    expect(json(out.stdout)).toEqual({ CustomerIdentifier: 'demo-customer', CustomerAWSAccountId: '111122223333', ProductCode: 'demo-product' });
  });

  it('flags beat the config file, and --role-arn assumes the role first', async () => {
    const out = await cli('register-usage', '--config', config, '--region', 'eu-west-1', '--sts-endpoint', fake().url,
      '--role-arn', 'arn:aws:iam::123456789012:role/cli', '--product-code', 'cli-role', '--public-key-version', '1', '--nonce', 'fixed');
    expect(out.code).toBe(0);
    expect(json(out.stdout).Nonce).toBe('fixed');
    expect(fake().calls('RegisterUsage').slice(-1)[0]).toMatchObject({ productCode: 'cli-role', signingRegion: 'eu-west-1', roleArn: 'arn:aws:iam::123456789012:role/cli' });
  });

  it('an AWS error goes to stderr with exit code 1', async () => {
    fake().setBehaviour('cli-revoked', { error: 'CustomerNotEntitledException' });
    const out = await cli('register-usage', '--config', config, '--product-code', 'cli-revoked', '--public-key-version', '1');
    expect(out).toMatchObject({ code: 1, stdout: '' });
    expect(out.stderr).toMatch(/^marketplace-metering register-usage: RegisterUsage: CustomerNotEntitledException: /);
  });

  it('a bad config file is bad usage, exit code 2, naming the setting or the file', async () => {
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, 'timeout: 0\n');
    const out = await cli('resolve-customer', '--config', bad, '--registration-token', 't');
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/timeout: 0 is not a positive number/);
    const broken = path.join(dir, 'broken.yaml');
    await writeFile(broken, 'foo: [\n');
    const unparsable = await cli('resolve-customer', '--config', broken, '--registration-token', 't');
    expect(unparsable.code).toBe(2);
    expect(unparsable.stderr).toMatch(/config file .*broken\.yaml: not valid YAML/);
  });

  it('usage errors are exit code 2 with the command help', async () => {
    const missing = await cli('register-usage', '--product-code', 'p');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--public-key-version required/);
    expect(missing.stderr).toMatch(/Usage: marketplace-metering register-usage/);
    expect((await cli('meter-usage', '--quantity', 'lots')).stderr).toMatch(/flag --quantity: "lots" is not a whole number/);
    expect((await cli('refund')).code).toBe(2);
    expect((await cli()).code).toBe(2);
  });

  it.each(['register-usage', 'meter-usage', 'batch-meter-usage', 'resolve-customer', 'verify-signature'])('%s --help', async (command) => {
    const out = await cli(command, '--help');
    expect(out).toMatchObject({ code: 0, stderr: '' });
    expect(out.stdout).toMatch(new RegExp(`^Usage: marketplace-metering ${command} \\[flags\\]`));
    expect(out.stdout).toMatch(/--help/);
    if (command !== 'verify-signature') expect(out.stdout).toMatch(/--metering-endpoint/);
  });

  it('--help lists the commands', async () => {
    const out = await cli('--help');
    expect(out.code).toBe(0);
    for (const command of ['register-usage', 'meter-usage', 'batch-meter-usage', 'resolve-customer', 'verify-signature']) expect(out.stdout).toContain(command);
  });
});
