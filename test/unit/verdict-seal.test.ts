// The seal on a pod's verdict state, and the pod cache that believes only sealed ones: what a
// namespace user who may patch pods (and read every annotation) can and cannot make of it.
import { createHmac, randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { annotations, productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { verdictStateOf, type VerdictState } from '../../src/api/pod-state.js';
import { podCache } from '../../src/verdicts/pod-cache.js';
import { RegistrationNonces } from '../../src/verdicts/nonce.js';
import { VerdictSeal } from '../../src/verdicts/seal.js';
import { podCounts } from '../../src/controllers/metering/ledger.js';

const key = randomBytes(32);
const seal = new VerdictSeal(key);
const nonces = new RegistrationNonces(key);
const cache = podCache({ seal, nonces, adoptsUnsealed: () => false });
const entitled: VerdictState = { status: 'Entitled', reason: 'SignatureVerified', registeredAt: '2026-12-01T10:00:00.000Z' };

function pod(uid: string, product = 'app', extra: Record<string, string> = {}): V1Pod {
  return { metadata: { name: 'db-0', namespace: 'team', uid, labels: { [productLabel]: product }, annotations: { ...extra } }, spec: { containers: [] } };
}

/** The pod with `state` written as the operator writes it (its sealed annotations). */
function written(target: V1Pod, state: VerdictState, sealer = seal): V1Pod {
  return withAnnotations(target, Object.fromEntries(Object.entries(sealer.annotate(target, state)).filter((entry): entry is [string, string] => entry[1] !== null)));
}

function withAnnotations(p: V1Pod, extra: Record<string, string>): V1Pod {
  const copy = structuredClone(p);
  copy.metadata ??= {};
  copy.metadata.annotations = { ...copy.metadata.annotations, ...extra };
  return copy;
}
const sealOf = (p: V1Pod): string => p.metadata?.annotations?.[annotations.seal] ?? '';

describe('VerdictSeal', () => {
  it('writes every verdict annotation, null where the state has none, and a seal', () => {
    const values = seal.annotate(pod('u1'), { status: 'NotEntitled', reason: 'CustomerNotEntitled' });
    expect(values).toMatchObject({ [annotations.status]: 'NotEntitled', [annotations.reason]: 'CustomerNotEntitled', [annotations.registeredAt]: null, [annotations.checks]: null });
    expect(values[annotations.seal]).toMatch(/^v1\.[\w-]{43}$/);
    // No state at all: nothing to seal, and the seal goes too.
    expect(seal.annotate(pod('u1'), {})[annotations.seal]).toBeNull();
  });

  it('verifies what it sealed, and a pod with no verdict state', () => {
    expect(seal.verifies(written(pod('u1'), entitled))).toBe(true);
    expect(seal.verifies(pod('u1'))).toBe(true);
  });

  const refused = written(pod('u1'), { status: 'NotEntitled', reason: 'CustomerNotEntitled' });
  const sealedEntitled = written(pod('u1'), entitled);
  it.each([
    ['a verdict without a seal', pod('u1', 'app', { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified' })],
    ['a sealed refusal turned into Entitled', withAnnotations(refused, { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified' })],
    ['a registration time added to a sealed refusal (to pass for a revoked pod)', withAnnotations(refused, { [annotations.registeredAt]: '2026-12-01T09:00:00.000Z' })],
    ['the annotations of an entitled pod copied to a successor of the same name (another uid)', withAnnotations(pod('u2'), sealedEntitled.metadata?.annotations ?? {})],
    ['the annotations of an entitled pod kept while its label moves to another product', withAnnotations(pod('u1', 'other'), sealedEntitled.metadata?.annotations ?? {})],
    ['a seal under another key', written(pod('u1'), entitled, new VerdictSeal(randomBytes(32)))],
    ['a truncated seal', withAnnotations(sealedEntitled, { [annotations.seal]: sealOf(sealedEntitled).slice(0, 20) })],
  ])('refuses %s', (_what, forged) => {
    expect(seal.verifies(forged)).toBe(false);
  });

  it('still verifies a seal the release before check ids wrote (the same message without one), and seals a check id', () => {
    const target = pod('u1');
    const previous = JSON.stringify(['v1', 'u1', 'app', entitled.status, entitled.reason, entitled.registeredAt, null]);
    const sealedBefore = withAnnotations(target, {
      [annotations.status]: entitled.status ?? '',
      [annotations.reason]: entitled.reason ?? '',
      [annotations.registeredAt]: entitled.registeredAt ?? '',
      [annotations.seal]: `v1.${createHmac('sha256', key).update(previous).digest('base64url')}`,
    });
    expect(seal.verifies(sealedBefore)).toBe(true);
    const checking = written(target, { checks: { attempts: 2, product: '1/', pod: '' }, check: 'c1' });
    expect(seal.verifies(checking)).toBe(true);
    expect(seal.verifies(withAnnotations(checking, { [annotations.check]: 'c2' }))).toBe(false);
  });

  it('refuses a key shorter than 32 bytes', () => {
    expect(() => new VerdictSeal(randomBytes(16))).toThrow(/32 or more/);
  });
});

describe('the pod cache', () => {
  it('keeps a sealed verdict state', () => {
    const cached = cache(written(pod('u1'), entitled));
    expect(verdictStateOf(cached)).toEqual(entitled);
    expect(cached.unverifiedVerdict).toBeUndefined();
  });

  it('drops a forged verdict state, keeps the recheck request, and says what the pod claimed', () => {
    const forged = pod('u1', 'app', { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: entitled.registeredAt ?? '', [annotations.recheck]: '1' });
    const cached = cache(forged);
    expect(verdictStateOf(cached)).toEqual({});
    expect(cached.metadata?.annotations).toEqual({ [annotations.recheck]: '1' });
    expect(cached.unverifiedVerdict).toBe('Entitled');
  });

  it('drops a forged record of checks on a pod without a verdict', () => {
    const cached = cache(pod('u1', 'app', { [annotations.checks]: JSON.stringify({ attempts: 1, product: '1/', pod: '' }) }));
    expect(verdictStateOf(cached)).toEqual({});
    expect(cached.unverifiedVerdict).toBe(annotations.checks);
  });

  it('drops a check id it did not seal (a nonce chosen by proxy), and keeps one it sealed', () => {
    const chosen = cache(pod('u1', 'app', { [annotations.check]: 'chosen' }));
    expect([verdictStateOf(chosen), chosen.unverifiedVerdict]).toEqual([{}, annotations.check]);
    expect(verdictStateOf(cache(written(pod('u1'), { check: 'c1' })))).toEqual({ check: 'c1' });
  });

  it('a forged Entitled pod that runs does not count for metering; the same verdict sealed does', () => {
    const running = (p: V1Pod): V1Pod => ({ ...p, status: { phase: 'Running' } });
    const forged = withAnnotations(pod('u1'), { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: entitled.registeredAt ?? '' });
    expect(podCounts(cache(running(forged)))).toBe(false);
    expect(podCounts(cache(running(written(pod('u1'), entitled))))).toBe(true);
  });

  it('keeps a verdict without any seal while unsealed verdicts are adopted (the upgrade from a release without seals), and not a broken seal', () => {
    const upgrading = podCache({ seal, nonces, adoptsUnsealed: () => true });
    const legacy = withAnnotations(pod('u1'), { [annotations.status]: 'Entitled', [annotations.reason]: 'SignatureVerified', [annotations.registeredAt]: entitled.registeredAt ?? '' });
    const adopted = upgrading(legacy);
    expect([verdictStateOf(adopted), adopted.unsealedVerdict, adopted.unverifiedVerdict]).toEqual([entitled, true, undefined]);
    const broken = upgrading(withAnnotations(legacy, { [annotations.seal]: 'v1.forged' }));
    expect([verdictStateOf(broken), broken.unsealedVerdict, broken.unverifiedVerdict]).toEqual([{}, undefined, 'Entitled']);
    // Entitled on a pod still gated is what a forger writes to have the gate lifted: dropped even now, and the pod registered again.
    const gated = upgrading({ ...legacy, spec: { containers: [], schedulingGates: [{ name: schedulingGate }] } });
    expect([verdictStateOf(gated), gated.unsealedVerdict, gated.unverifiedVerdict]).toEqual([{}, undefined, 'Entitled']);
    const refused = upgrading({ ...withAnnotations(pod('u2'), { [annotations.status]: 'NotEntitled', [annotations.reason]: 'CustomerNotEntitled' }), spec: { containers: [], schedulingGates: [{ name: schedulingGate }] } });
    expect([verdictStateOf(refused).status, refused.unsealedVerdict]).toEqual(['NotEntitled', true]);
  });

  it("drops annotations that are not the operator's, and the pod's spec but what the controllers read", () => {
    const cached = cache({ ...written(pod('u1'), entitled), spec: { serviceAccountName: 'app', schedulingGates: [{ name: 'other' }], containers: [{ name: 'c', image: 'i', env: [{ name: 'A', value: 'b' }] }] } });
    expect(cached.spec).toEqual({ serviceAccountName: 'app', schedulingGates: [{ name: 'other' }], containers: [] });
  });
});
