// Every kind of bad RegisterUsage signature is refused with its own reason, and none crashes.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { newNonce } from '../../src/aws/nonce.js';
import { importPublicKey, maxSignatureLength, PublicKeyError, SignatureError, verifyRegistrationSignature, type SignatureFailure } from '../../src/aws/signature.js';

const awsKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicPem = awsKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const expected = { productCode: 'prod-abc123', publicKeyVersion: 1, nonce: newNonce() };
const now = Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown>, key: KeyObject | Uint8Array = awsKey.privateKey, alg = 'PS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(key);
}
const validClaims = { productCode: expected.productCode, publicKeyVersion: 1, nonce: expected.nonce, iat: now };
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

function failure(token: string): SignatureFailure | 'accepted' {
  try {
    verifyRegistrationSignature(token, importPublicKey(publicPem), expected);
    return 'accepted';
  } catch (error) {
    if (error instanceof SignatureError) return error.failure;
    throw error;
  }
}

describe('verifyRegistrationSignature', () => {
  it('accepts a PS256 signature from the product key with the claims sent', async () => {
    const claims = verifyRegistrationSignature(await sign(validClaims), importPublicKey(publicPem), expected);
    expect(claims).toEqual({ ...expected, issuedAt: new Date(now * 1000) });
  });

  it('accepts PascalCase claim names', async () => {
    const token = await sign({ ProductCode: expected.productCode, PublicKeyVersion: 1, Nonce: expected.nonce, iat: now });
    expect(failure(token)).toBe('accepted');
  });

  it('tolerates a small clock skew on iat', async () => {
    expect(failure(await sign({ ...validClaims, iat: now + 30 }))).toBe('accepted');
  });

  const hostile: [string, () => string | Promise<string>, SignatureFailure, RegExp][] = [
    ['alg: none', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(validClaims)}.`, 'AlgorithmNotAllowed', /"none" is not allowed/],
    ['HS256 keyed with the public key', () => sign(validClaims, new TextEncoder().encode(publicPem), 'HS256'), 'AlgorithmNotAllowed', /"HS256" is not allowed/],
    ['RS256 with the right key', () => sign(validClaims, awsKey.privateKey, 'RS256'), 'AlgorithmNotAllowed', /"RS256" is not allowed/],
    ['a valid token from another key', () => sign(validClaims, otherKey.privateKey), 'BadSignature', /does not verify/],
    ['PS256 header over an RS256 signature', async () => {
      const [, payload, signature] = (await sign(validClaims, awsKey.privateKey, 'RS256')).split('.');
      return `${b64({ alg: 'PS256', typ: 'JWT' })}.${payload}.${signature}`;
    }, 'BadSignature', /does not verify/],
    ['a replayed token (right key, other nonce)', () => sign({ ...validClaims, nonce: newNonce() }), 'NonceMismatch', /replayed/],
    ['wrong product code', () => sign({ ...validClaims, productCode: 'other-product' }), 'ProductCodeMismatch', /"other-product", not "prod-abc123"/],
    ['wrong key version', () => sign({ ...validClaims, publicKeyVersion: 2 }), 'PublicKeyVersionMismatch', /version 2, not 1/],
    ['a future iat', () => sign({ ...validClaims, iat: now + 3600 }), 'IssuedInFuture', /in the future/],
    ['no nonce claim', () => sign({ productCode: expected.productCode, publicKeyVersion: 1, iat: now }), 'MissingClaim', /no nonce claim/],
    ['truncated', async () => (await sign(validClaims)).slice(0, 60), 'Malformed', /not a compact JWS/],
    ['signature cut short', async () => (await sign(validClaims)).slice(0, -20), 'BadSignature', /does not verify/],
    ['non-base64', () => 'eyJ!!!.@@@@.####', 'Malformed', /not a compact JWS/],
    ['a JSON array payload', () => `${b64({ alg: 'PS256' })}.${b64([1, 2])}.AAAA`, 'BadSignature', /does not verify/],
    ['a header that is not JSON', () => `${Buffer.from('{alg').toString('base64url')}.${b64(validClaims)}.AAAA`, 'Malformed', /header is not base64url-encoded JSON/],
    ['1 MB of junk', () => 'A'.repeat(1024 * 1024), 'TooLarge', new RegExp(`more than ${maxSignatureLength}`)],
    ['an empty string', () => '', 'Malformed', /not a compact JWS/],
  ];

  it.each(hostile)('rejects %s', async (_name, make, reason, message) => {
    const token = await make();
    let error: unknown;
    try {
      verifyRegistrationSignature(token, importPublicKey(publicPem), expected);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(SignatureError);
    expect((error as SignatureError).failure).toBe(reason);
    expect((error as SignatureError).message).toMatch(message);
  });

  it('a payload that verifies but is not an object is Malformed', async () => {
    const { CompactSign } = await import('jose');
    const token = await new CompactSign(new TextEncoder().encode('[1,2]')).setProtectedHeader({ alg: 'PS256' }).sign(awsKey.privateKey);
    expect(failure(token)).toBe('Malformed');
  });
});

describe('importPublicKey', () => {
  it('refuses what is not an SPKI PEM with PublicKeyError', () => {
    expect(() => importPublicKey('not a key')).toThrow(PublicKeyError);
    expect(() => importPublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----')).toThrow(PublicKeyError);
  });
  it('refuses keys PS256 cannot use: not RSA, or RSA under 2048 bits', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => importPublicKey(ec)).toThrow(/it is ec, not RSA/);
    expect(() => importPublicKey(small)).toThrow(/rsa of 1024 bits, not RSA of 2048 bits or more/);
  });
  it('refuses a header with crit or b64, whose meaning this check does not implement', () => {
    expect(failure(`${b64({ alg: 'PS256', crit: ['x'], x: 1 })}.${b64(validClaims)}.AAAA`)).toBe('Malformed');
    expect(failure(`${b64({ alg: 'PS256', b64: false })}.${b64(validClaims)}.AAAA`)).toBe('Malformed');
  });
  it('returns the same key object for the same PEM', () => {
    expect(importPublicKey(publicPem)).toBe(importPublicKey(publicPem));
  });
});

describe('newNonce', () => {
  it('is 32 random bytes, fresh every time', () => {
    const nonces = new Set(Array.from({ length: 1000 }, newNonce));
    expect(nonces.size).toBe(1000);
    for (const n of nonces) expect(Buffer.from(n, 'base64url')).toHaveLength(32);
  });
});
