// Checks AWS Signature Version 4 on requests that reach the fake, by signing the same request
// again with the secret the fake knows for the access key and comparing signatures.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';

export interface KnownCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SignedRequest {
  accessKeyId: string;
  region: string;
  service: string;
  sessionToken?: string;
}

export class AuthError extends Error {
  constructor(
    readonly code: 'MissingAuthenticationToken' | 'IncompleteSignature' | 'UnrecognizedClientException' | 'InvalidSignatureException' | 'ExpiredTokenException',
    message: string,
  ) {
    super(message);
  }
}

const authorizationPattern = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

const bytes = (data: SourceData): Uint8Array | string => (typeof data === 'string' || ArrayBuffer.isView(data) ? (data as Uint8Array | string) : new Uint8Array(data));

class Sha256 {
  private readonly hash;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.hash.digest());
  }
}

/**
 * Verifies the request's SigV4 signature. `lookup` returns what the fake knows of an access key
 * (undefined: unknown key). Throws AuthError with the error code AWS would answer.
 */
export async function verifySigV4(
  method: string,
  url: URL,
  headers: IncomingHttpHeaders,
  body: string,
  lookup: (accessKeyId: string) => KnownCredentials | undefined,
): Promise<SignedRequest> {
  const authorization = headers.authorization;
  if (!authorization) throw new AuthError('MissingAuthenticationToken', 'Request is missing Authentication Token');
  const match = authorizationPattern.exec(authorization);
  const amzDate = headers['x-amz-date'];
  if (!match || typeof amzDate !== 'string') throw new AuthError('IncompleteSignature', 'Authorization header or X-Amz-Date is malformed');
  const [, accessKeyId = '', , region = '', service = '', signedHeaderList = '', signature = ''] = match;

  const known = lookup(accessKeyId);
  if (!known) throw new AuthError('UnrecognizedClientException', 'The security token included in the request is invalid.');
  const sessionToken = headers['x-amz-security-token'];
  if ((known.sessionToken ?? undefined) !== (typeof sessionToken === 'string' ? sessionToken : undefined)) {
    throw new AuthError('UnrecognizedClientException', 'The security token included in the request is invalid.');
  }

  const signedHeaders = signedHeaderList.split(';');
  const toSign: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = headers[name];
    if (value === undefined) throw new AuthError('IncompleteSignature', `signed header ${name} is missing`);
    toSign[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey: known.secretAccessKey, ...(known.sessionToken ? { sessionToken: known.sessionToken } : {}) },
    region,
    service,
    sha256: Sha256,
    applyChecksum: signedHeaders.includes('x-amz-content-sha256'),
  });
  const signed = await signer.sign(
    {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: toSign,
      body,
    },
    { signingDate: parseAmzDate(amzDate), signingRegion: region, signingService: service },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization))?.[1] ?? '';
  if (expected.length !== signature.length || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
    throw new AuthError('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
  }
  return { accessKeyId, region, service, ...(known.sessionToken ? { sessionToken: known.sessionToken } : {}) };
}

function parseAmzDate(value: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) throw new AuthError('IncompleteSignature', 'X-Amz-Date is malformed');
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}
