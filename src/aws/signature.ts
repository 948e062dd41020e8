// Verification of the signed answer of RegisterUsage: a JWT signed RSA-PSS/SHA-256 (PS256) with
// the product's AWS Marketplace key. The algorithm is pinned, the signature is checked with the
// product's public key, and the claims must repeat what was sent: productCode,
// publicKeyVersion and the nonce (which makes a recorded answer useless for another pod).
import { compactVerify, errors, importSPKI, type CryptoKey } from 'jose';

export const signatureAlgorithm = 'PS256';
/** Real signatures are about 1 KB; anything far larger is refused before it is parsed. */
export const maxSignatureLength = 16 * 1024;

export type SignatureFailure =
  | 'TooLarge'
  | 'Malformed'
  | 'AlgorithmNotAllowed'
  | 'BadSignature'
  | 'MissingClaim'
  | 'ProductCodeMismatch'
  | 'PublicKeyVersionMismatch'
  | 'NonceMismatch'
  | 'IssuedInFuture';

export class SignatureError extends Error {
  constructor(
    readonly failure: SignatureFailure,
    message: string,
  ) {
    super(message);
    this.name = 'SignatureError';
  }
}

/** The product's public key could not be read or parsed (condition reason PublicKeyUnavailable). */
export class PublicKeyError extends Error {
  override name = 'PublicKeyError';
}

export interface ExpectedRegistration {
  productCode: string;
  publicKeyVersion: number;
  nonce: string;
}

export interface RegistrationClaims extends ExpectedRegistration {
  issuedAt: Date;
}

export interface VerifyOptions {
  now?: Date;
  /** How far in the future `iat` may be, for clock differences with AWS. */
  clockSkewSeconds?: number;
}

/** A fresh nonce: 32 bytes from the CSPRNG, base64url (43 characters; RegisterUsage allows 255). */
const keyCache = new Map<string, Promise<CryptoKey>>();

/** Parses an SPKI PEM public key for PS256, caching by PEM so the pod-start path parses each key once. */
export async function importPublicKey(pem: string): Promise<CryptoKey> {
  let key = keyCache.get(pem);
  if (!key) {
    key = importSPKI(pem.trim(), signatureAlgorithm).catch((error: unknown) => {
      keyCache.delete(pem);
      throw new PublicKeyError(`public key is not a PEM "PUBLIC KEY" usable for PS256: ${error instanceof Error ? error.message : String(error)}`);
    });
    if (keyCache.size > 256) keyCache.clear();
    keyCache.set(pem, key);
  }
  return key;
}

export async function verifyRegistrationSignature(
  token: string,
  publicKey: CryptoKey,
  expected: ExpectedRegistration,
  options: VerifyOptions = {},
): Promise<RegistrationClaims> {
  if (token.length > maxSignatureLength) throw new SignatureError('TooLarge', `signature is ${token.length} bytes, more than ${maxSignatureLength}`);
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p, i) => (i === 2 || p.length > 0) && /^[A-Za-z0-9_-]*$/.test(p))) {
    throw new SignatureError('Malformed', 'signature is not a compact JWS (three base64url parts)');
  }
  const header = parseJson(Buffer.from(parts[0] ?? '', 'base64url'), 'header');
  if (header.alg !== signatureAlgorithm) {
    throw new SignatureError('AlgorithmNotAllowed', `signature algorithm ${JSON.stringify(header.alg)} is not allowed; only ${signatureAlgorithm} is`);
  }

  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(token, publicKey, { algorithms: [signatureAlgorithm] }));
  } catch (error) {
    if (error instanceof errors.JWSSignatureVerificationFailed) throw new SignatureError('BadSignature', 'signature does not verify with the product public key');
    throw new SignatureError('Malformed', `signature cannot be verified: ${error instanceof Error ? error.message : String(error)}`);
  }
  const claims = parseJson(payload, 'payload');
  return checkClaims(claims, expected, options);
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new SignatureError('Malformed', `signature ${what} is not base64url-encoded JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SignatureError('Malformed', `signature ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** AWS documents the claims in camelCase, one page in PascalCase: accept either spelling. */
function claim(claims: Record<string, unknown>, camel: string): unknown {
  const pascal = camel.charAt(0).toUpperCase() + camel.slice(1);
  const value = claims[camel] ?? claims[pascal];
  if (value === undefined || value === null) throw new SignatureError('MissingClaim', `signature has no ${camel} claim`);
  return value;
}

function checkClaims(claims: Record<string, unknown>, expected: ExpectedRegistration, options: VerifyOptions): RegistrationClaims {
  const productCode = claim(claims, 'productCode');
  if (productCode !== expected.productCode) {
    throw new SignatureError('ProductCodeMismatch', `signature is for product ${JSON.stringify(productCode)}, not ${JSON.stringify(expected.productCode)}`);
  }
  const publicKeyVersion = Number(claim(claims, 'publicKeyVersion'));
  if (publicKeyVersion !== expected.publicKeyVersion) {
    throw new SignatureError('PublicKeyVersionMismatch', `signature is for public key version ${publicKeyVersion}, not ${expected.publicKeyVersion}`);
  }
  if (claim(claims, 'nonce') !== expected.nonce) {
    throw new SignatureError('NonceMismatch', 'signature nonce differs from the nonce sent: a replayed or foreign registration');
  }
  const iat = claim(claims, 'iat');
  const issuedAt = typeof iat === 'number' ? new Date(iat * 1000) : new Date(String(iat));
  if (Number.isNaN(issuedAt.getTime())) throw new SignatureError('Malformed', 'signature iat claim is not a time');
  const now = (options.now ?? new Date()).getTime();
  if (issuedAt.getTime() > now + (options.clockSkewSeconds ?? 60) * 1000) {
    throw new SignatureError('IssuedInFuture', `signature was issued at ${issuedAt.toISOString()}, in the future`);
  }
  return { productCode: expected.productCode, publicKeyVersion, nonce: expected.nonce, issuedAt };
}
