// The real SDK clients over HTTP against the local fake: every Metering operation, every error
// class, signatures end to end.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromIni } from '@aws-sdk/credential-providers';
import { createMeteringClient, createStsClient } from '../../src/aws/clients.js';
import { AwsCallError } from '../../src/aws/errors.js';
import { batchMeterUsage, meterUsage, registerUsage, resolveCustomer } from '../../src/aws/metering-operations.js';
import { newNonce } from '../../src/aws/nonce.js';
import { importPublicKey, verifyRegistrationSignature } from '../../src/aws/signature.js';
import { simulatedClock } from '../../src/clock.js';
import { demoCustomer, FakeAws } from '../fake-aws/server.js';
import { fakeAwsForSuite, fakeCredentials, fakeSettings } from '../support/fake-aws.js';
import { freePort } from '../support/wait.js';

const fake = fakeAwsForSuite();
const client = () => createMeteringClient(fakeSettings(fake()), fakeCredentials);

async function failure(promise: Promise<unknown>): Promise<AwsCallError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(AwsCallError);
  return error as AwsCallError;
}

describe('RegisterUsage', () => {
  it('returns a PS256 signature that verifies with the fake public key and the nonce sent', async () => {
    const nonce = newNonce();
    const out = await registerUsage(client(), { productCode: 'prod-ok', publicKeyVersion: 1, nonce });
    const claims = verifyRegistrationSignature(out.signature, importPublicKey(fake().publicKeyPem), { productCode: 'prod-ok', publicKeyVersion: 1, nonce });
    expect(claims.nonce).toBe(nonce);
    expect(out.publicKeyRotationTimestamp).toBeUndefined();
    const [call] = fake().calls('RegisterUsage').slice(-1);
    expect(call).toMatchObject({ status: 200, productCode: 'prod-ok', accessKeyId: fakeCredentials.accessKeyId, signingRegion: 'us-east-1', request: { ProductCode: 'prod-ok', PublicKeyVersion: 1, Nonce: nonce } });
  });

  it('passes PublicKeyRotationTimestamp through', async () => {
    fake().setBehaviour('prod-rotated', { publicKeyRotationTimestamp: 1_800_000_000 });
    const out = await registerUsage(client(), { productCode: 'prod-rotated', publicKeyVersion: 1, nonce: newNonce() });
    expect(out.publicKeyRotationTimestamp).toEqual(new Date(1_800_000_000_000));
  });

  it('a bad signature from the fake does not verify', async () => {
    fake().setBehaviour('prod-forged', { badSignature: true });
    const nonce = newNonce();
    const out = await registerUsage(client(), { productCode: 'prod-forged', publicKeyVersion: 1, nonce });
    expect(() => verifyRegistrationSignature(out.signature, importPublicKey(fake().publicKeyPem), { productCode: 'prod-forged', publicKeyVersion: 1, nonce })).toThrow(/does not verify/);
  });

  const terminal: [string, string][] = [
    ['CustomerNotEntitledException', 'CustomerNotEntitled'],
    ['InvalidProductCodeException', 'InvalidProductCode'],
    ['InvalidPublicKeyVersionException', 'InvalidPublicKeyVersion'],
    ['PlatformNotSupportedException', 'PlatformNotSupported'],
    ['InvalidRegionException', 'InvalidRegion'],
    ['DisabledApiException', 'DisabledApi'],
    ['AccessDeniedException', 'AccessDenied'],
  ];
  it.each(terminal)('%s is terminal with reason %s', async (code, reason) => {
    const product = `prod-${code}`;
    fake().setBehaviour(product, { error: code });
    const error = await failure(registerUsage(client(), { productCode: product, publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ operation: 'RegisterUsage', code, retryable: false, reason });
    expect(fake().calls('RegisterUsage', code)).toHaveLength(1); // terminal: the SDK does not retry
  });

  it("credentials that cannot be loaded are the operator's own fault: retryable, never a verdict", async () => {
    // A profile that does not exist, in shared config files that are empty: the SDK's own
    // CredentialsProviderError, without any network call.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aws-config-'));
    const files = { AWS_CONFIG_FILE: path.join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'credentials') };
    for (const file of Object.values(files)) writeFileSync(file, '');
    const saved = { ...process.env };
    Object.assign(process.env, files);
    try {
      const before = fake().calls('RegisterUsage').length;
      const noCredentials = createMeteringClient(fakeSettings(fake()), fromIni({ profile: 'not-configured-yet' }));
      const error = await failure(registerUsage(noCredentials, { productCode: 'prod-nocreds', publicKeyVersion: 1, nonce: newNonce() }));
      expect(error).toMatchObject({ code: 'CredentialsProviderError', retryable: true, reason: undefined });
      expect(fake().calls('RegisterUsage')).toHaveLength(before); // nothing was sent
    } finally {
      process.env = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('throttling is retryable, and the SDK retries it before giving up', async () => {
    fake().setBehaviour('prod-throttled', { throttleShare: 1 });
    const error = await failure(registerUsage(client(), { productCode: 'prod-throttled', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ code: 'ThrottlingException', retryable: true, reason: undefined });
    expect(fake().calls('RegisterUsage', 'ThrottlingException').filter((c) => c.productCode === 'prod-throttled')).toHaveLength(3);
  });

  it('half the calls throttled: the SDK retry gets through', async () => {
    fake().setBehaviour('prod-half', { throttleShare: 0.5 });
    for (let i = 0; i < 4; i++) await registerUsage(client(), { productCode: 'prod-half', publicKeyVersion: 1, nonce: newNonce() });
    const calls = fake().calls('RegisterUsage').filter((c) => c.productCode === 'prod-half');
    expect(calls.filter((c) => c.status === 200)).toHaveLength(4);
    // Every second call is throttled (2nd, 4th, 6th): each throttled attempt is retried once.
    expect(calls.filter((c) => c.errorCode === 'ThrottlingException')).toHaveLength(3);
  });

  it('5xx is retryable', async () => {
    fake().setBehaviour('prod-5xx', { serverErrorShare: 1 });
    const error = await failure(registerUsage(client(), { productCode: 'prod-5xx', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ code: 'InternalServiceErrorException', retryable: true, httpStatus: 500 });
  });

  it('a timeout is retryable', async () => {
    fake().setBehaviour('prod-slow', { delayMs: 1500 });
    const slow = createMeteringClient(fakeSettings(fake(), { timeoutSeconds: 0.3 }), fakeCredentials);
    const error = await failure(registerUsage(slow, { productCode: 'prod-slow', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error.retryable).toBe(true);
    expect(error.code).toMatch(/Timeout|ETIMEDOUT/);
  });

  it('a refused connection is retryable', async () => {
    const port = await freePort();
    const nowhere = createMeteringClient(fakeSettings(fake(), { meteringEndpoint: `http://127.0.0.1:${port}` }), fakeCredentials);
    const error = await failure(registerUsage(nowhere, { productCode: 'p', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ code: 'ECONNREFUSED', retryable: true });
  });

  it('an invalid request is terminal without a contract reason', async () => {
    const error = await failure(registerUsage(client(), { productCode: 'has space', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ code: 'ValidationException', retryable: false, reason: undefined, httpStatus: 400 });
  });
});

describe('authentication', () => {
  it('refuses unsigned requests', async () => {
    const anonymous = createMeteringClient(fakeSettings(fake()), 'anonymous');
    const error = await failure(registerUsage(anonymous, { productCode: 'p', publicKeyVersion: 1, nonce: newNonce() }));
    expect(error).toMatchObject({ code: 'MissingAuthenticationToken', reason: 'AccessDenied', retryable: false });
  });

  it('refuses unknown keys and wrong secrets', async () => {
    const unknown = createMeteringClient(fakeSettings(fake()), { accessKeyId: 'AKIAUNKNOWN', secretAccessKey: 'x' });
    expect((await failure(registerUsage(unknown, { productCode: 'p', publicKeyVersion: 1, nonce: 'n' }))).code).toBe('UnrecognizedClientException');
    const wrongSecret = createMeteringClient(fakeSettings(fake()), { ...fakeCredentials, secretAccessKey: 'wrong' });
    expect((await failure(registerUsage(wrongSecret, { productCode: 'p', publicKeyVersion: 1, nonce: 'n' }))).code).toBe('InvalidSignatureException');
  });

  it('accepts session tokens it issued and refuses others', async () => {
    const sts = createStsClient(fakeSettings(fake()), fakeCredentials);
    const { AssumeRoleCommand } = await import('@aws-sdk/client-sts');
    const out = await sts.send(new AssumeRoleCommand({ RoleArn: 'arn:aws:iam::123456789012:role/metering', RoleSessionName: 'test' }));
    const issued = { accessKeyId: out.Credentials?.AccessKeyId ?? '', secretAccessKey: out.Credentials?.SecretAccessKey ?? '', sessionToken: out.Credentials?.SessionToken ?? '' };
    await registerUsage(createMeteringClient(fakeSettings(fake()), issued), { productCode: 'p-session', publicKeyVersion: 1, nonce: 'n' });
    expect(fake().calls('RegisterUsage').slice(-1)[0]).toMatchObject({ roleArn: 'arn:aws:iam::123456789012:role/metering', roleSessionName: 'test' });

    const forged = createMeteringClient(fakeSettings(fake()), { ...issued, sessionToken: 'forged-token' });
    expect(await failure(registerUsage(forged, { productCode: 'p', publicKeyVersion: 1, nonce: 'n' }))).toMatchObject({ code: 'UnrecognizedClientException', reason: 'AccessDenied' });
  });
});

describe('MeterUsage', () => {
  const hourAgo = () => new Date(Date.now() - 60 * 60 * 1000);

  it('records usage and answers the same record id for an identical request in the hour', async () => {
    const input = { productCode: 'prod-meter', usageDimension: 'pods', usageQuantity: 3, timestamp: hourAgo() };
    const first = await meterUsage(client(), input);
    expect(first.meteringRecordId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await meterUsage(client(), { ...input, timestamp: new Date(input.timestamp.getTime() + 1000) })).toEqual(first);
  });

  it('a different quantity for the same hour is DuplicateRequestException', async () => {
    const input = { productCode: 'prod-dup', usageDimension: 'pods', usageQuantity: 3, timestamp: hourAgo() };
    await meterUsage(client(), input);
    expect(await failure(meterUsage(client(), { ...input, usageQuantity: 4 }))).toMatchObject({ code: 'DuplicateRequestException', retryable: false });
  });

  it('refuses records older than 6 hours, allocations that do not sum, and reused client tokens', async () => {
    const old = new Date(Date.now() - 7 * 60 * 60 * 1000);
    expect((await failure(meterUsage(client(), { productCode: 'p', usageDimension: 'd', usageQuantity: 1, timestamp: old }))).code).toBe('TimestampOutOfBoundsException');
    const allocations = [{ AllocatedUsageQuantity: 1, Tags: [{ Key: 'team', Value: 'a' }] }];
    expect((await failure(meterUsage(client(), { productCode: 'p', usageDimension: 'd', usageQuantity: 2, timestamp: hourAgo(), usageAllocations: allocations }))).code).toBe('InvalidUsageAllocationsException');
    await meterUsage(client(), { productCode: 'p-token', usageDimension: 'd', usageQuantity: 1, timestamp: hourAgo(), clientToken: 'token-1' });
    const conflict = await failure(meterUsage(client(), { productCode: 'p-token', usageDimension: 'e', usageQuantity: 1, timestamp: hourAgo(), clientToken: 'token-1' }));
    expect(conflict).toMatchObject({ code: 'IdempotencyConflictException', httpStatus: 409, retryable: false });
  });

  it('de-duplicates per caller, and keeps its 6-hour window on the clock it is given', async () => {
    const other = { accessKeyId: 'AKIAFAKEMETERING0002', secretAccessKey: 'another-fake-secret-access-key' };
    // A clock 30 hours ahead of real time, running at real speed.
    const clock = simulatedClock({ startMs: Date.now() + 30 * 3600_000, originMs: Date.now(), rate: 1 });
    const ahead = await FakeAws.start({ credentials: [fakeCredentials, other], clock });
    try {
      const hour = new Date(Math.floor(clock.now() / 3600_000) * 3600_000 - 3600_000);
      const input = { productCode: 'prod-callers', usageDimension: 'pods', timestamp: hour };
      const as = (credentials: typeof other) => createMeteringClient(fakeSettings(ahead), credentials);
      await meterUsage(as(fakeCredentials), { ...input, usageQuantity: 2 });
      await meterUsage(as(other), { ...input, usageQuantity: 5 });
      expect(await failure(meterUsage(as(other), { ...input, usageQuantity: 6 }))).toMatchObject({ code: 'DuplicateRequestException' });
      expect(ahead.records().map((r) => [r.caller, r.quantity, r.hour])).toEqual([
        [fakeCredentials.accessKeyId, 2, hour.getTime()],
        [other.accessKeyId, 5, hour.getTime()],
      ]);
      // Real now is 30 hours before the fake's now: outside its window.
      expect((await failure(meterUsage(as(other), { ...input, timestamp: new Date(), usageQuantity: 1 }))).code).toBe('TimestampOutOfBoundsException');
    } finally {
      await ahead.close();
    }
  });

  it('a configured CustomerNotEntitled applies to MeterUsage too', async () => {
    fake().setBehaviour('prod-revoked', { error: 'CustomerNotEntitledException' });
    expect(await failure(meterUsage(client(), { productCode: 'prod-revoked', usageDimension: 'd', usageQuantity: 1, timestamp: hourAgo() }))).toMatchObject({ reason: 'CustomerNotEntitled' });
  });
});

describe('BatchMeterUsage and ResolveCustomer', () => {
  it('resolves the registration token and meters for the customer', async () => {
    const customer = await resolveCustomer(client(), demoCustomer.registrationToken);
    expect(customer).toEqual({ customerIdentifier: 'demo-customer', customerAWSAccountId: '111122223333', productCode: 'demo-product' });

    const timestamp = new Date(Date.now() - 60_000);
    const out = await batchMeterUsage(client(), 'demo-product', [
      { Timestamp: timestamp, CustomerIdentifier: 'demo-customer', Dimension: 'users', Quantity: 5 },
      { Timestamp: timestamp, CustomerIdentifier: 'stranger', Dimension: 'users', Quantity: 1 },
    ]);
    expect(out.results.map((r) => r.Status)).toEqual(['Success', 'CustomerNotSubscribed']);
    expect(out.results[0]?.MeteringRecordId).toBeDefined();
    expect(out.unprocessedRecords).toEqual([]);
  });

  it('classifies bad and expired registration tokens', async () => {
    expect(await failure(resolveCustomer(client(), 'not-a-token'))).toMatchObject({ code: 'InvalidTokenException', retryable: false });
    expect(await failure(resolveCustomer(client(), 'expired-token'))).toMatchObject({ code: 'ExpiredTokenException', retryable: false });
  });
});
