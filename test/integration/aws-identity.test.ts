// Identities that need the real API server: Pod mode (TokenRequest bound to the pod, exchanged
// at the fake STS, which verifies it with the cluster's service-account key) and operator
// credentials from a Secret.
import { readFile } from 'node:fs/promises';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { createMeteringClient, createStsClient } from '../../src/aws/clients.js';
import { baseCredentials } from '../../src/aws/credentials.js';
import { AwsCallError } from '../../src/aws/errors.js';
import { registerUsage } from '../../src/aws/metering-operations.js';
import { Identities } from '../../src/aws/identity.js';
import { IdentityUnavailableError, PodIdentity, roleArnAnnotation } from '../../src/aws/pod-identity.js';
import { loadPublicKey } from '../../src/aws/public-key.js';
import { PublicKeyError, verifyRegistrationSignature } from '../../src/aws/signature.js';
import { KeyConfigMaps } from '../../src/controllers/pods/key-config-maps.js';
import type { KubeClient } from '../../src/kube/api.js';
import { createLogger } from '../../src/observability/logger.js';
import { kubeSecretReader } from '../../src/kube/secrets.js';
import { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { fakeCredentials, fakeSettings } from '../support/fake-aws.js';
import { waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
const namespace = 'team';
const annotatedRole = 'arn:aws:iam::123456789012:role/from-service-account';
const productRole = 'arn:aws:iam::123456789012:role/from-product';
let fake: FakeAws;
let core: CoreV1Api;
let pod: V1Pod;

beforeAll(async () => {
  const plane = controlPlane();
  fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] });
  core = plane.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: annotatedRole } } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'plain' } } });
  pod = await core.createNamespacedPod({ namespace, body: { metadata: { name: 'app-0' }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'registry.invalid/app:1' }] } } });
});
afterAll(async () => fake.close());

const podRef = (p: V1Pod, serviceAccountName = p.spec?.serviceAccountName) => ({
  namespace, name: p.metadata?.name ?? '', uid: p.metadata?.uid ?? '', ...(serviceAccountName ? { serviceAccountName } : {}),
});
const podIdentity = (target: FakeAws = fake) => new PodIdentity(controlPlane().client(), createStsClient(fakeSettings(target), 'anonymous'));

describe('Pod identity', () => {
  it("assumes the ServiceAccount's role with a token bound to the pod and signs RegisterUsage with it", async () => {
    const credentials = await podIdentity().credentials(podRef(pod));
    expect(credentials.accessKeyId).toMatch(/^ASIA/);
    await registerUsage(createMeteringClient(fakeSettings(fake), credentials), { productCode: 'pod-mode', publicKeyVersion: 1, nonce: 'n' });

    const [exchange] = fake.calls('AssumeRoleWithWebIdentity').slice(-1);
    expect(exchange).toMatchObject({ status: 200, roleArn: annotatedRole, roleSessionName: 'team.app-0', request: { WebIdentityToken: '[REDACTED]' } });
    expect(exchange?.accessKeyId).toBeUndefined(); // the exchange itself is unsigned
    const [register] = fake.calls('RegisterUsage').slice(-1);
    expect(register).toMatchObject({ status: 200, productCode: 'pod-mode', roleArn: annotatedRole, roleSessionName: 'team.app-0', accessKeyId: credentials.accessKeyId });
  });

  it("the product's roleArn wins over the annotation, and credentials are cached per pod and role", async () => {
    const identity = podIdentity();
    const first = await identity.credentials(podRef(pod), productRole);
    const again = await identity.credentials(podRef(pod), productRole);
    expect(again).toBe(first);
    expect(fake.calls('AssumeRoleWithWebIdentity').filter((c) => c.roleArn === productRole)).toHaveLength(1);
  });

  it("reads a ServiceAccount's role once for a while, then again (a changed annotation takes effect)", async () => {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'moving', annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/before' } } } });
    const moving = await core.createNamespacedPod({ namespace, body: { metadata: { name: 'moving-0' }, spec: { serviceAccountName: 'moving', containers: [{ name: 'app', image: 'registry.invalid/app:1' }] } } });
    let now = 1_000_000;
    const identity = new PodIdentity(controlPlane().client(), createStsClient(fakeSettings(fake), 'anonymous'), () => now);
    await identity.credentials(podRef(moving));
    await core.patchNamespacedServiceAccount(
      { name: 'moving', namespace, body: { metadata: { annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/after' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    now += 10_000;
    await identity.credentials(podRef(moving));
    const roles = () => fake.calls('AssumeRoleWithWebIdentity').map((c) => c.roleArn).filter((r) => r?.includes('/before') || r?.includes('/after'));
    expect(roles()).toEqual(['arn:aws:iam::123456789012:role/before']); // still the cached role, credentials cached too
    now += 30_000;
    await identity.credentials(podRef(moving));
    expect(roles()).toEqual(['arn:aws:iam::123456789012:role/before', 'arn:aws:iam::123456789012:role/after']);
  });

  it('no role anywhere: IdentityUnavailable', async () => {
    const error = await podIdentity().credentials(podRef(pod, 'plain')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdentityUnavailableError);
    expect((error as Error).message).toMatch(/set spec\.identity\.roleArn, or annotate ServiceAccount team\/plain with eks\.amazonaws\.com\/role-arn/);
  });

  it('a missing ServiceAccount or a pod that is gone: IdentityUnavailable', async () => {
    await expect(podIdentity().credentials(podRef(pod, 'absent'))).rejects.toThrow(/cannot read ServiceAccount team\/absent: HTTP 404/);
    const gone = { ...podRef(pod), uid: '00000000-0000-0000-0000-000000000000' };
    await expect(podIdentity().credentials(gone, productRole)).rejects.toThrow(IdentityUnavailableError);
  });

  it('an STS that does not trust the cluster issuer refuses the token: AccessDenied', async () => {
    const stranger = await FakeAws.start({ serviceAccountKeyPems: [fake.publicKeyPem] });
    try {
      const error = await podIdentity(stranger).credentials(podRef(pod)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AwsCallError);
      expect(error).toMatchObject({ code: 'InvalidIdentityTokenException', reason: 'AccessDenied', retryable: false });
    } finally {
      await stranger.close();
    }
  });
});

describe('operator credentials from a Secret', () => {
  it('reads access_key_id and secret_access_key from the Secret', async () => {
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'aws-keys' }, stringData: { access_key_id: fakeCredentials.accessKeyId, secret_access_key: fakeCredentials.secretAccessKey } },
    });
    const credentials = baseCredentials({ kind: 'secret', namespace, name: 'aws-keys' }, kubeSecretReader(controlPlane().client()));
    await registerUsage(createMeteringClient(fakeSettings(fake), credentials), { productCode: 'secret-keys', publicKeyVersion: 1, nonce: 'n' });
    expect(fake.calls('RegisterUsage').slice(-1)[0]).toMatchObject({ status: 200, productCode: 'secret-keys', accessKeyId: fakeCredentials.accessKeyId });
  });

  it('a Secret without the keys is an error naming them', async () => {
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'half' }, stringData: { access_key_id: 'AKIA' } } });
    const credentials = baseCredentials({ kind: 'secret', namespace, name: 'half' }, kubeSecretReader(controlPlane().client()));
    await expect(registerUsage(createMeteringClient(fakeSettings(fake), credentials), { productCode: 'x', publicKeyVersion: 1, nonce: 'n' })).rejects.toThrow(
      /Secret team\/half needs keys access_key_id and secret_access_key/,
    );
  });
});

describe('Identities (the choice by identity.mode)', () => {
  const identities = () => new Identities(fakeCredentials, createStsClient(fakeSettings(fake), fakeCredentials), podIdentity());
  const sign = async (credentials: Awaited<ReturnType<Identities['forPod']>>, productCode: string) => {
    await registerUsage(createMeteringClient(fakeSettings(fake), credentials), { productCode, publicKeyVersion: 1, nonce: 'n' });
    return fake.calls('RegisterUsage').slice(-1)[0];
  };

  it('Pod mode uses the pod identity', async () => {
    expect(await sign(await identities().forPod({ mode: 'Pod' }, podRef(pod)), 'ids-pod')).toMatchObject({ roleArn: annotatedRole, roleSessionName: 'team.app-0' });
  });

  it('Operator mode uses the base keys, or one cached AssumeRole per role', async () => {
    const ids = identities();
    expect(await sign(await ids.forPod({ mode: 'Operator' }, podRef(pod)), 'ids-op')).toMatchObject({ accessKeyId: fakeCredentials.accessKeyId });
    const role = 'arn:aws:iam::123456789012:role/operator-mode';
    for (const name of ['a', 'b', 'c']) {
      expect(await sign(await ids.forPod({ mode: 'Operator', roleArn: role }, { ...podRef(pod), name }), 'ids-role')).toMatchObject({ roleArn: role, roleSessionName: 'entitlement-operator' });
    }
    expect(fake.calls('AssumeRole').filter((c) => c.roleArn === role)).toHaveLength(1);
  });
});

describe('product public key', () => {
  // The operator reads key ConfigMaps from a watch of each (KeyConfigMaps), not a GET per pod.
  let keys: KeyConfigMaps;
  let client: KubeClient;
  beforeAll(() => {
    client = controlPlane().client();
    keys = new KeyConfigMaps(client, createLogger({ level: 'error' }));
  });
  afterAll(async () => {
    await keys.stop();
    await client.close();
  });
  const read = () => keys.read;
  const expected = { productCode: 'keyed', publicKeyVersion: 1, nonce: 'n1' };

  it('from a ConfigMap verifies the fake signature', async () => {
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'signing-key' }, data: { 'v1.pem': fake.publicKeyPem, junk: 'not a key' } } });
    const key = await loadPublicKey({ configMapKeyRef: { name: 'signing-key', key: 'v1.pem' } }, namespace, read());
    const { signature } = await registerUsage(createMeteringClient(fakeSettings(fake), fakeCredentials), expected);
    expect(verifyRegistrationSignature(signature, key, expected)).toMatchObject(expected);
    await expect(loadPublicKey({ pem: fake.publicKeyPem }, namespace, read())).resolves.toBe(key);
  });

  it.each([
    ['a missing ConfigMap', { configMapKeyRef: { name: 'absent', key: 'v1.pem' } }, /ConfigMap team\/absent not found/],
    ['a missing key', { configMapKeyRef: { name: 'signing-key', key: 'v2.pem' } }, /ConfigMap team\/signing-key has no key v2\.pem/],
    ['a value that is not a key', { configMapKeyRef: { name: 'signing-key', key: 'junk' } }, /not a PEM "PUBLIC KEY"/],
    ['an inline PEM that is not a key', { pem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }, /not a PEM "PUBLIC KEY"/],
  ])('%s is PublicKeyUnavailable', async (_name, source, message) => {
    const error = await loadPublicKey(source, namespace, read()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublicKeyError);
    expect((error as Error).message).toMatch(message);
  });

  it("a product's key ConfigMap is watched: a change, a deletion and a return are seen, and its fingerprint follows the PEM", async () => {
    const product = { metadata: { name: 'p', namespace }, spec: { productCode: 'keyed', publicKeyVersion: 1, publicKey: { configMapKeyRef: { name: 'rotating-key', key: 'pem' } } } };
    const changes: string[] = [];
    keys.onChange((products) => changes.push(...products));
    keys.track(product);
    await expect(keys.read(namespace, 'rotating-key')).resolves.toBeUndefined();
    expect(keys.fingerprint(product)).toBe('absent');
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'rotating-key' }, data: { pem: fake.publicKeyPem } } });
    const seen = async (n: number) => waitFor(`${n} changes`, () => Promise.resolve(changes.filter((c) => c === `${namespace}/p`).length >= n ? true : undefined), 10_000, 50);
    await seen(1);
    const original = keys.fingerprint(product);
    expect(original).toMatch(/^[\w-]{16}$/);
    await core.replaceNamespacedConfigMap({ name: 'rotating-key', namespace, body: { metadata: { name: 'rotating-key' }, data: { pem: 'rewritten by the team' } } });
    await seen(2);
    expect(keys.fingerprint(product)).not.toBe(original);
    await expect(keys.read(namespace, 'rotating-key')).resolves.toEqual({ pem: 'rewritten by the team' });
    await core.replaceNamespacedConfigMap({ name: 'rotating-key', namespace, body: { metadata: { name: 'rotating-key' }, data: { pem: fake.publicKeyPem } } });
    await seen(3);
    expect(keys.fingerprint(product)).toBe(original);
    await core.deleteNamespacedConfigMap({ name: 'rotating-key', namespace });
    await seen(4);
    expect(keys.fingerprint(product)).toBe('absent');
    // No product names it any more: its watch ends.
    keys.untrack(`${namespace}/p`);
    expect(keys.fingerprint(product)).toBeUndefined();
  });
});
