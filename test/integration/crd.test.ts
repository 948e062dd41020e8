// The MarketplaceProduct CRD against a real kube-apiserver: what it accepts, what it rejects
// (with a message naming the field), defaults, the status subresource and `kubectl get mpp`.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { productManifest, testPublicKeyPem } from '../support/products.js';
import { repoRoot } from '../support/testbin.js';

const namespace = 'crd-test';
const controlPlane = controlPlaneForSuite();

beforeAll(async () => {
  const plane = controlPlane();
  await plane.kubectlOk(['apply', '-f', path.join(repoRoot, 'crds')]);
  await plane.kubectlOk(['wait', '--for=condition=Established', 'crd/marketplaceproducts.marketplace.entitlements.io', '--timeout=60s']);
  await plane.kubectlOk(['create', 'namespace', namespace]);
});

const create = (manifest: object) => controlPlane().kubectl(['create', '-n', namespace, '-f', '-'], JSON.stringify(manifest));
const getJson = async (name: string) => JSON.parse(await controlPlane().kubectlOk(['get', '-n', namespace, 'mpp', name, '-o', 'json'])) as { spec: Record<string, unknown>; status?: Record<string, unknown> };

describe('samples', () => {
  it('every sample in config/samples is listed in its kustomization and accepted', async () => {
    const plane = controlPlane();
    const dir = path.join(repoRoot, 'config/samples');
    const kustomization = load(await readFile(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());

    await plane.kubectlOk(['create', 'namespace', 'samples']);
    const out = await plane.kubectlOk(['apply', '-n', 'samples', '-k', dir]);
    expect(out).toMatch(/marketplaceproduct.marketplace.entitlements.io\/example-product created/);
    expect(out).toMatch(/marketplaceproduct.marketplace.entitlements.io\/example-product-metered created/);
    const names = (await plane.kubectlOk(['get', '-n', 'samples', 'mpp', '-o', 'name'])).trim().split('\n').sort();
    expect(names).toEqual(['marketplaceproduct.marketplace.entitlements.io/example-product', 'marketplaceproduct.marketplace.entitlements.io/example-product-metered']);
  });
});

describe('defaults', () => {
  it('fills enforcement, onRevocation and identity.mode', async () => {
    expect((await create(productManifest('defaults'))).code).toBe(0);
    const { spec } = await getJson('defaults');
    expect(spec).toMatchObject({ enforcement: 'Enforce', onRevocation: 'Keep', identity: { mode: 'Pod' } });
  });

  it('keeps every field of a full spec', async () => {
    const spec = {
      productCode: 'a-b/c=d:e_f.g@h',
      publicKeyVersion: 3,
      publicKey: { configMapKeyRef: { name: 'keys', key: 'v3.pem' } },
      enforcement: 'Audit',
      onRevocation: 'Evict',
      identity: { mode: 'Operator', roleArn: 'arn:aws-us-gov:iam::123456789012:role/path/to/role' },
      region: 'us-gov-west-1',
      metering: { dimensions: [{ name: 'pods', unit: 'Pod' }, { name: 'cpu', unit: 'vCPU' }, { name: 'mem', unit: 'MemoryGiB' }] },
    };
    expect((await create(productManifest('full', spec))).stderr).toBe('');
    expect((await getJson('full')).spec).toEqual(spec);
  });
});

describe('rejections name the field', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['missing productCode', { productCode: undefined }, /spec\.productCode: Required value/],
    ['a productCode with a space', { productCode: 'abc def' }, /spec\.productCode: Invalid value: "abc def": spec\.productCode in body should match/],
    ['an empty productCode', { productCode: '' }, /spec\.productCode: Invalid value: "": spec\.productCode in body should be at least 1 chars long/],
    ['a 256-character productCode', { productCode: 'a'.repeat(256) }, /spec\.productCode: Too long/],
    ['publicKeyVersion: 0', { publicKeyVersion: 0 }, /spec\.publicKeyVersion: Invalid value: 0: spec\.publicKeyVersion in body should be greater than or equal to 1/],
    ['missing publicKeyVersion', { publicKeyVersion: undefined }, /spec\.publicKeyVersion: Required value/],
    ['both public key sources', { publicKey: { pem: testPublicKeyPem, configMapKeyRef: { name: 'k', key: 'pem' } } }, /spec\.publicKey: Invalid value: (?:"object": )?exactly one of publicKey\.pem and publicKey\.configMapKeyRef must be set/],
    ['neither public key source', { publicKey: {} }, /spec\.publicKey: Invalid value: (?:"object": )?exactly one of publicKey\.pem and publicKey\.configMapKeyRef must be set/],
    ['no publicKey at all', { publicKey: undefined }, /spec\.publicKey: Required value/],
    ['a pem that is not a PEM public key', { publicKey: { pem: 'not a key' } }, /spec\.publicKey\.pem: Invalid value: "(?:string|not a key)": pem must be a PEM block/],
    ['a configMapKeyRef without key', { publicKey: { configMapKeyRef: { name: 'k' } } }, /spec\.publicKey\.configMapKeyRef\.key: Required value/],
    ['a malformed roleArn', { identity: { roleArn: 'arn:aws:iam::12345:user/bob' } }, /spec\.identity\.roleArn: Invalid value: "(?:string|arn:aws:iam::12345:user\/bob)": roleArn must be an IAM role ARN/],
    ['identity.mode: Node', { identity: { mode: 'Node' } }, /spec\.identity\.mode: Unsupported value: "Node": supported values: "Pod", "Operator"/],
    ['enforcement: Block', { enforcement: 'Block' }, /spec\.enforcement: Unsupported value: "Block": supported values: "Enforce", "Audit"/],
    ['onRevocation: Delete', { onRevocation: 'Delete' }, /spec\.onRevocation: Unsupported value: "Delete": supported values: "Keep", "Evict"/],
    ['a region that is not an AWS region', { region: 'Mars' }, /spec\.region: Invalid value: "Mars": spec\.region in body should match/],
    ['a dimension with an unknown unit', { metering: { dimensions: [{ name: 'd', unit: 'GPU' }] } }, /spec\.metering\.dimensions\[0\]\.unit: Unsupported value: "GPU"/],
    ['two dimensions with one name', { metering: { dimensions: [{ name: 'd', unit: 'Pod' }, { name: 'd', unit: 'vCPU' }] } }, /spec\.metering\.dimensions\[1\]: Duplicate value/],
    ['an unknown field (kubectl validation)', { productcode: 'x' }, /unknown field "spec\.productcode"/],
  ];

  it.each(cases)('%s', async (_title, spec, message) => {
    const plane = controlPlane();
    const name = `rejected-${Math.random().toString(36).slice(2, 8)}`;
    const result = await create(productManifest(name, spec));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
    expect((await plane.kubectl(['get', '-n', namespace, 'mpp', name])).stderr).toMatch(/NotFound/);
  });

  it('a changed productCode on update', async () => {
    const plane = controlPlane();
    expect((await create(productManifest('immutable', { productCode: 'original-code' }))).code).toBe(0);
    const result = await plane.kubectl(['patch', '-n', namespace, 'mpp', 'immutable', '--type=merge', '-p', '{"spec":{"productCode":"other-code"}}']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/spec\.productCode: Invalid value: "[^"]*": productCode is immutable/);
    expect((await getJson('immutable')).spec.productCode).toBe('original-code');

    // Other fields stay mutable.
    await plane.kubectlOk(['patch', '-n', namespace, 'mpp', 'immutable', '--type=merge', '-p', '{"spec":{"publicKeyVersion":2,"enforcement":"Audit"}}']);
    expect((await getJson('immutable')).spec).toMatchObject({ productCode: 'original-code', publicKeyVersion: 2, enforcement: 'Audit' });
  });
});

describe('status subresource and kubectl get', () => {
  const status = {
    observedGeneration: 1,
    conditions: [{ type: 'Entitled', status: 'True', reason: 'SignatureVerified', message: 'registration verified', lastTransitionTime: '2026-11-26T10:00:00Z', observedGeneration: 1 }],
    entitledPods: 3,
    blockedPods: 1,
    pendingPods: 2,
    lastRegistrationTime: '2026-11-26T10:00:00Z',
  };

  beforeAll(async () => {
    await create(productManifest('printed', { productCode: 'printed-code' }));
  });

  it('ignores status written through the main resource', async () => {
    const plane = controlPlane();
    await plane.kubectlOk(['patch', '-n', namespace, 'mpp', 'printed', '--type=merge', '-p', JSON.stringify({ status })]);
    expect((await getJson('printed')).status).toBeUndefined();
  });

  it('takes status through /status and validates it', async () => {
    const plane = controlPlane();
    const bad = await plane.kubectl(['patch', '-n', namespace, 'mpp', 'printed', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { entitledPods: -1 } })]);
    // Kubernetes 1.30 names the field without its status. prefix on the status subresource.
    expect(bad.stderr).toMatch(/(?:status\.)?entitledPods: Invalid value: -1/);
    await plane.kubectlOk(['patch', '-n', namespace, 'mpp', 'printed', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
    expect((await getJson('printed')).status).toEqual(status);
  });

  it('kubectl get mpp prints the contract columns', async () => {
    const plane = controlPlane();
    const lines = (await plane.kubectlOk(['get', '-n', namespace, 'mpp', 'printed'])).trimEnd().split('\n');
    const columns = (lines[0] ?? '').split(/\s{2,}/);
    expect(columns).toEqual(['NAME', 'PRODUCT CODE', 'ENTITLED', 'REASON', 'ENTITLED PODS', 'BLOCKED', 'AGE']);
    expect((lines[1] ?? '').split(/\s+/).slice(0, 6)).toEqual(['printed', 'printed-code', 'True', 'SignatureVerified', '3', '1']);

    const wide = (await plane.kubectlOk(['get', '-n', namespace, 'mpp', 'printed', '-o', 'wide'])).split('\n')[0]?.split(/\s{2,}/);
    expect(wide).toEqual(['NAME', 'PRODUCT CODE', 'ENTITLED', 'REASON', 'ENTITLED PODS', 'BLOCKED', 'PENDING', 'BYPASSED', 'ENFORCEMENT', 'METERED', 'LAST REPORTED HOUR', 'AGE']);
  });

  it('is found by its short name, singular and category', async () => {
    const plane = controlPlane();
    for (const resource of ['mpp', 'marketplaceproduct', 'marketplaceproducts', 'marketplace']) {
      expect(await plane.kubectlOk(['get', '-n', namespace, resource, '-o', 'name'])).toMatch(/marketplaceproduct.marketplace.entitlements.io\/printed/);
    }
  });

  it('kubectl explain describes every spec field', async () => {
    const plane = controlPlane();
    const out = await plane.kubectlOk(['explain', 'marketplaceproduct.spec']);
    for (const field of ['productCode', 'publicKeyVersion', 'publicKey', 'enforcement', 'onRevocation', 'identity', 'region', 'metering']) {
      expect(out).toMatch(new RegExp(`^  ${field}\\s+<\\S+>`, 'm'));
    }
    expect(out).not.toMatch(/<empty>/);
    expect(await plane.kubectlOk(['explain', 'marketplaceproduct.spec.identity.roleArn'])).toMatch(/IAM role to assume/);
  });
});
