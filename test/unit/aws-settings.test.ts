// AWS settings from flags, a paws-shaped config file and the environment.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMeteringClient } from '../../src/aws/clients.js';
import { baseCredentials } from '../../src/aws/credentials.js';
import { registerUsage } from '../../src/aws/metering-operations.js';
import { resolveAwsSettings, SettingsError, type AwsFlags } from '../../src/aws/settings.js';
import { fakeAwsForSuite, fakeCredentials } from '../support/fake-aws.js';

let dir: string;
beforeAll(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'aws-settings-'))));
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function configFile(yaml: string): Promise<string> {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, yaml);
  return file;
}

describe('defaults and precedence', () => {
  it('defaults to the SDK chain, regional STS, 60 s and keep-alive', () => {
    expect(resolveAwsSettings({}, {})).toEqual({ stsRegionalEndpoint: 'regional', timeoutSeconds: 60, closeConnection: false, credentials: { kind: 'default' } });
  });

  it('reads the standard environment', () => {
    const env = {
      AWS_REGION: 'eu-west-1',
      AWS_ENDPOINT_URL_MARKETPLACE_METERING: 'http://127.0.0.1:1111',
      AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:2222',
      AWS_PROFILE: 'ops',
      AWS_STS_REGIONAL_ENDPOINTS: 'legacy',
    };
    expect(resolveAwsSettings({}, env)).toEqual({
      region: 'eu-west-1', meteringEndpoint: 'http://127.0.0.1:1111', stsEndpoint: 'http://127.0.0.1:2222', stsRegionalEndpoint: 'legacy',
      timeoutSeconds: 60, closeConnection: false, credentials: { kind: 'profile', profile: 'ops' },
    });
  });

  it('flags beat the file, which beats the environment, setting by setting', async () => {
    const file = await configFile(`
region: eu-central-1
endpoint: http://127.0.0.1:3333
timeout: 10
close_connection: true
sts_regional_endpoint: legacy
credentials:
  profile: from-file
`);
    const env = { AWS_REGION: 'us-west-2', AWS_ENDPOINT_URL_MARKETPLACE_METERING: 'http://127.0.0.1:1111', AWS_PROFILE: 'from-env' };
    expect(resolveAwsSettings({ config: file }, env)).toEqual({
      region: 'eu-central-1', meteringEndpoint: 'http://127.0.0.1:3333', stsRegionalEndpoint: 'legacy', timeoutSeconds: 10, closeConnection: true,
      credentials: { kind: 'profile', profile: 'from-file' },
    });
    const flags: AwsFlags = { config: file, region: 'ap-south-1', meteringEndpoint: 'http://127.0.0.1:4444', timeout: 2, closeConnection: false, stsRegionalEndpoint: 'regional', anonymous: true };
    expect(resolveAwsSettings(flags, env)).toEqual({
      region: 'ap-south-1', meteringEndpoint: 'http://127.0.0.1:4444', stsRegionalEndpoint: 'regional', timeoutSeconds: 2, closeConnection: false,
      credentials: { kind: 'anonymous' },
    });
  });

  it('takes static keys from credentials.creds, and the Secret from its flag', async () => {
    const file = await configFile(`
credentials:
  creds:
    access_key_id: AKIAFILE
    secret_access_key: file-secret
    session_token: file-token
`);
    expect(resolveAwsSettings({ config: file }, {}).credentials).toEqual({ kind: 'static', accessKeyId: 'AKIAFILE', secretAccessKey: 'file-secret', sessionToken: 'file-token' });
    expect(resolveAwsSettings({ config: file, awsCredentialsSecret: { namespace: 'ops', name: 'aws' } }, {}).credentials).toEqual({ kind: 'secret', namespace: 'ops', name: 'aws' });
  });

  it('treats empty paws creds as unset, as paws does', async () => {
    const file = await configFile(`credentials:\n  creds:\n    access_key_id: ''\n    secret_access_key: ''\n  profile: ''\n  anonymous: false\n`);
    expect(resolveAwsSettings({ config: file }, {}).credentials).toEqual({ kind: 'default' });
  });
});

describe('errors name the setting', () => {
  const cases: [string, string, RegExp][] = [
    ['an unknown top-level key', 'regoin: us-east-1\n', /unknown setting regoin \(known: credentials, endpoint, region/],
    ['an unknown credentials key', 'credentials:\n  token: x\n', /unknown setting credentials\.token/],
    ['an unknown creds key', 'credentials:\n  creds:\n    access_key: x\n', /unknown setting credentials\.creds\.access_key/],
    ['a bad region', 'region: Mars\n', /region: "Mars" is not an AWS region/],
    ['a zero timeout', 'timeout: 0\n', /timeout: 0 is not a positive number of seconds/],
    ['a negative timeout', 'timeout: -5\n', /timeout: -5 is not a positive number/],
    ['a malformed endpoint', 'endpoint: not a url\n', /endpoint: "not a url" is not an http\(s\) URL/],
    ['a non-http endpoint', 'endpoint: ftp://x\n', /endpoint: "ftp:\/\/x" is not an http\(s\) URL/],
    ['a bad sts_regional_endpoint', 'sts_regional_endpoint: global\n', /sts_regional_endpoint: "global" is not regional or legacy/],
    ['close_connection as a string', 'close_connection: "yes"\n', /close_connection: "yes" is not true or false/],
    ['a key without its secret', 'credentials:\n  creds:\n    access_key_id: AKIA\n', /credentials\.creds\.secret_access_key: required/],
    ['two credential sources', 'credentials:\n  profile: p\n  anonymous: true\n', /credentials: set only one of creds, profile and anonymous/],
    ['a list at the top', '- a\n', /\(top level\): must be a mapping/],
    ['broken YAML', 'region: [\n', /not valid YAML/],
  ];
  it.each(cases)('%s', async (_name, yaml, message) => {
    const file = await configFile(yaml);
    expect(() => resolveAwsSettings({ config: file }, {})).toThrow(SettingsError);
    expect(() => resolveAwsSettings({ config: file }, {})).toThrow(message);
    expect(() => resolveAwsSettings({ config: file }, {})).toThrow(`config file ${file}:`);
  });

  it('a missing file, a bad region flag or environment, and exclusive credential flags', () => {
    expect(() => resolveAwsSettings({ config: path.join(dir, 'absent.yaml') }, {})).toThrow(/cannot be read/);
    expect(() => resolveAwsSettings({ region: 'US_EAST' }, {})).toThrow('region: "US_EAST" is not an AWS region');
    expect(() => resolveAwsSettings({}, { AWS_REGION: 'nowhere' })).toThrow('region: "nowhere" is not an AWS region');
    expect(() => resolveAwsSettings({}, { AWS_ENDPOINT_URL_STS: 'sts' })).toThrow('sts endpoint: "sts" is not an http(s) URL');
    expect(() => resolveAwsSettings({}, { AWS_STS_REGIONAL_ENDPOINTS: 'both' })).toThrow('AWS_STS_REGIONAL_ENDPOINTS: "both" is not regional or legacy');
    expect(() => resolveAwsSettings({ anonymous: true, awsProfile: 'p' }, {})).toThrow(/exclude each other/);
  });
});

describe('a paws-shaped config file gives the same clients as the equivalent flags', () => {
  const fake = fakeAwsForSuite();

  it('same settings, same client configuration, same requests', async () => {
    const file = await configFile(`
region: eu-west-3
endpoint: ${fake().url}
timeout: 7
close_connection: true
sts_regional_endpoint: legacy
credentials:
  creds:
    access_key_id: ${fakeCredentials.accessKeyId}
    secret_access_key: ${fakeCredentials.secretAccessKey}
`);
    const fromFile = resolveAwsSettings({ config: file }, {});
    const fromFlags = resolveAwsSettings({ region: 'eu-west-3', meteringEndpoint: fake().url, timeout: 7, closeConnection: true, stsRegionalEndpoint: 'legacy' }, {});
    expect({ ...fromFlags, credentials: fromFile.credentials }).toEqual(fromFile);

    const clients = [fromFile, { ...fromFlags, credentials: fromFile.credentials }].map((s) => createMeteringClient(s, baseCredentials(s.credentials)));
    for (const client of clients) {
      expect(await client.config.region()).toBe('eu-west-3');
      await registerUsage(client, { productCode: 'same-client', publicKeyVersion: 1, nonce: 'n' });
    }
    const [a, b] = fake().calls('RegisterUsage').filter((c) => c.productCode === 'same-client');
    expect(a).toMatchObject({ status: 200, accessKeyId: fakeCredentials.accessKeyId, signingRegion: 'eu-west-3' });
    expect({ ...b, seq: 0, time: '' }).toEqual({ ...a, seq: 0, time: '' });
  });
});
