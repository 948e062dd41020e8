// Verification of the signed answer of RegisterUsage: a JWT signed RSA-PSS/SHA-256 (PS256) with
// the product's AWS Marketplace key. The algorithm is pinned, the signature is checked with the
// product's public key, and the claims must repeat what was sent: productCode,
// publicKeyVersion and the nonce (which makes a recorded answer useless for another pod).
// One compact JWS with one pinned algorithm needs no JOSE library: node:crypto verifies it
// synchronously, at a third of the CPU of a WebCrypto verify on the pod-start path.
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';

const signatureAlgorithm = 'PS256';
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

const keyCache = new Map<string, KeyObject>();
/** RFC 7518 asks for RSA keys of at least 2048 bits for PS256. */
const minModulusBits = 2048;

/** Parses an SPKI PEM public key for PS256, caching by PEM so the pod-start path parses each key once; throws PublicKeyError. */
export function importPublicKey(pem: string): KeyObject {
  let key = keyCache.get(pem);
  if (!key) {
    try {
      key = createPublicKey({ key: pem.trim(), format: 'pem' });
    } catch (error) {
      throw new PublicKeyError(`public key is not a PEM "PUBLIC KEY" usable for PS256: ${error instanceof Error ? error.message : String(error)}`);
    }
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if ((key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') || bits < minModulusBits) {
      throw new PublicKeyError(`public key is not usable for PS256: it is ${key.asymmetricKeyType ?? 'unknown'}${bits ? ` of ${bits} bits` : ''}, not RSA of ${minModulusBits} bits or more`);
    }
    if (keyCache.size > 256) keyCache.clear();
    keyCache.set(pem, key);
  }
  return key;
}

/** Checks a RegisterUsage signature and returns its claims; throws a SignatureError that names what is wrong. */
export function verifyRegistrationSignature(token: string, publicKey: KeyObject, expected: ExpectedRegistration, options: VerifyOptions = {}): RegistrationClaims {
  if (token.length > maxSignatureLength) throw new SignatureError('TooLarge', `signature is ${token.length} bytes, more than ${maxSignatureLength}`);
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p, i) => (i === 2 || p.length > 0) && /^[A-Za-z0-9_-]*$/.test(p))) {
    throw new SignatureError('Malformed', 'signature is not a compact JWS (three base64url parts)');
  }
  const [encodedHeader = '', encodedPayload = '', encodedSignature = ''] = parts;
  const header = parseJson(Buffer.from(encodedHeader, 'base64url'), 'header');
  if (header.alg !== signatureAlgorithm) {
    throw new SignatureError('AlgorithmNotAllowed', `signature algorithm ${JSON.stringify(header.alg)} is not allowed; only ${signatureAlgorithm} is`);
  }
  // Extensions this check does not understand must not be ignored (RFC 7515 4.1.11); b64=false would change what is signed (RFC 7797).
  if (header.crit !== undefined || header.b64 !== undefined) throw new SignatureError('Malformed', 'signature header uses crit or b64, which RegisterUsage never sends');

  let valid: boolean;
  try {
    valid = verify(
      'sha256',
      Buffer.from(`${encodedHeader}.${encodedPayload}`),
      { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
      Buffer.from(encodedSignature, 'base64url'),
    );
  } catch (error) {
    throw new SignatureError('Malformed', `signature cannot be verified: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!valid) throw new SignatureError('BadSignature', 'signature does not verify with the product public key');
  const claims = parseJson(Buffer.from(encodedPayload, 'base64url'), 'payload');
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
