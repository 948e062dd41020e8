// The operator's identities against the fake: each credential source, and AssumeRole cached and
// refreshed before expiry.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AwsCredentialIdentity } from '@smithy/types';
import { createMeteringClient, createStsClient } from '../../src/aws/clients.js';
import { assumeRoleCredentials, baseCredentials, cachedCredentials } from '../../src/aws/credentials.js';
import { registerUsage } from '../../src/aws/metering-operations.js';
import { FakeAws } from '../fake-aws/server.js';
import { fakeAwsForSuite, fakeCredentials, fakeSettings } from '../support/fake-aws.js';

const fake = fakeAwsForSuite();
const role = 'arn:aws:iam::123456789012:role/operator';

describe('cachedCredentials', () => {
  it('answers from the cache until shortly before expiry, with one fetch at a time', async () => {
    let clock = 0;
    let fetches = 0;
    let release: (() => void) | undefined;
    const provider = cachedCredentials(
      async () => {
        fetches++;
        await new Promise<void>((resolve) => (release = resolve));
        return { accessKeyId: `K${fetches}`, secretAccessKey: 's', expiration: new Date(clock + 60 * 60_000) };
      },
      { now: () => clock },
    );
    const concurrent = [provider(), provider(), provider()];
    release?.();
    expect((await Promise.all(concurrent)).map((c) => c.accessKeyId)).toEqual(['K1', 'K1', 'K1']);
    expect(fetches).toBe(1);

    clock += 54 * 60_000; // 6 minutes before expiry: still fresh
    expect((await provider()).accessKeyId).toBe('K1');
    clock += 2 * 60_000; // 4 minutes before expiry: inside the 5-minute refresh window
    const refreshed = provider();
    release?.();
    expect((await refreshed).accessKeyId).toBe('K2');
  });

  it('a failed fetch is not cached', async () => {
    let attempt = 0;
    const provider = cachedCredentials(async () => {
      attempt++;
      if (attempt === 1) throw new Error('sts down');
      return Promise.resolve({ accessKeyId: 'ok', secretAccessKey: 's' } as AwsCredentialIdentity);
    });
    await expect(provider()).rejects.toThrow('sts down');
    expect((await provider()).accessKeyId).toBe('ok');
  });
});

describe('operator identity', () => {
  const call = (credentials: Parameters<typeof createMeteringClient>[1], productCode: string) =>
    registerUsage(createMeteringClient(fakeSettings(fake()), credentials), { productCode, publicKeyVersion: 1, nonce: 'n' });

  it('static keys', async () => {
    await call(baseCredentials({ kind: 'static', ...fakeCredentials }), 'op-static');
    expect(fake().calls('RegisterUsage').filter((c) => c.productCode === 'op-static')[0]?.accessKeyId).toBe(fakeCredentials.accessKeyId);
  });

  it('a shared-config profile', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'profile-'));
    const file = path.join(dir, 'credentials');
    await writeFile(file, `[metering]\naws_access_key_id = ${fakeCredentials.accessKeyId}\naws_secret_access_key = ${fakeCredentials.secretAccessKey}\n`);
    const saved = process.env.AWS_SHARED_CREDENTIALS_FILE;
    process.env.AWS_SHARED_CREDENTIALS_FILE = file;
    try {
      await call(baseCredentials({ kind: 'profile', profile: 'metering' }), 'op-profile');
    } finally {
      if (saved === undefined) delete process.env.AWS_SHARED_CREDENTIALS_FILE;
      else process.env.AWS_SHARED_CREDENTIALS_FILE = saved;
      await rm(dir, { recursive: true, force: true });
    }
    expect(fake().calls('RegisterUsage').filter((c) => c.productCode === 'op-profile')[0]?.accessKeyId).toBe(fakeCredentials.accessKeyId);
  });

  it('a Secret, read through the reader the operator supplies', async () => {
    const reads: string[] = [];
    const credentials = baseCredentials({ kind: 'secret', namespace: 'ops', name: 'aws' }, (namespace, name) => {
      reads.push(`${namespace}/${name}`);
      return Promise.resolve({ access_key_id: fakeCredentials.accessKeyId, secret_access_key: fakeCredentials.secretAccessKey });
    });
    await call(credentials, 'op-secret');
    await call(credentials, 'op-secret');
    expect(reads).toEqual(['ops/aws']); // cached between calls
  });

  it('anonymous, against a fake that allows unsigned requests', async () => {
    const open = await FakeAws.start({ allowUnsigned: true });
    try {
      await registerUsage(createMeteringClient(fakeSettings(open), 'anonymous'), { productCode: 'op-anon', publicKeyVersion: 1, nonce: 'n' });
      expect(open.calls('RegisterUsage')[0]).toMatchObject({ status: 200, productCode: 'op-anon' });
      expect(open.calls('RegisterUsage')[0]?.accessKeyId).toBeUndefined();
    } finally {
      await open.close();
    }
  });

  it('with a role: one AssumeRole for many calls, signed by the base keys', async () => {
    const sts = createStsClient(fakeSettings(fake()), baseCredentials({ kind: 'static', ...fakeCredentials }));
    const credentials = assumeRoleCredentials(sts, role, 'entitlement-operator');
    for (let i = 0; i < 5; i++) await call(credentials, 'op-role');
    const assumed = fake().calls('AssumeRole').filter((c) => c.roleArn === role);
    expect(assumed).toHaveLength(1);
    expect(assumed[0]).toMatchObject({ accessKeyId: fakeCredentials.accessKeyId, roleSessionName: 'entitlement-operator' });
    const calls = fake().calls('RegisterUsage').filter((c) => c.productCode === 'op-role');
    expect(calls).toHaveLength(5);
    for (const c of calls) expect(c).toMatchObject({ status: 200, roleArn: role, accessKeyId: expect.stringMatching(/^ASIA/) as unknown });
  });

  it('a denied role surfaces as AccessDenied', async () => {
    const strict = await FakeAws.start({ deniedRoles: [role] });
    try {
      const sts = createStsClient(fakeSettings(strict), fakeCredentials);
      await expect(assumeRoleCredentials(sts, role, 'denied-session')()).rejects.toMatchObject({ code: 'AccessDenied', reason: 'AccessDenied', retryable: false });
    } finally {
      await strict.close();
    }
  });
});
