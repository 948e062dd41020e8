// Classifies every failure of an AWS call: retryable (throttling, internal error, 5xx, network
// error, timeout) or terminal, and the contract's condition reason it maps to.
import type { AwsRefusalReason } from '../api/marketplace-product.js';

export class AwsCallError extends Error {
  override name = 'AwsCallError';
  constructor(
    readonly operation: string,
    /** The AWS error code (or the Node error code for network failures). */
    readonly code: string,
    /** Worth retrying with backoff: the condition is Unknown/Retrying meanwhile. */
    readonly retryable: boolean,
    /** The condition reason for a terminal failure, when the contract has one. */
    readonly reason: AwsRefusalReason | undefined,
    message: string,
    readonly httpStatus?: number,
  ) {
    super(message);
  }
}

const reasons: Readonly<Record<string, AwsRefusalReason>> = {
  CustomerNotEntitledException: 'CustomerNotEntitled',
  InvalidProductCodeException: 'InvalidProductCode',
  InvalidPublicKeyVersionException: 'InvalidPublicKeyVersion',
  PlatformNotSupportedException: 'PlatformNotSupported',
  InvalidRegionException: 'InvalidRegion',
  InvalidEndpointRegionException: 'InvalidRegion',
  DisabledApiException: 'DisabledApi',
  AccessDeniedException: 'AccessDenied',
  AccessDenied: 'AccessDenied',
  UnrecognizedClientException: 'AccessDenied',
  InvalidClientTokenId: 'AccessDenied',
  InvalidSignatureException: 'AccessDenied',
  SignatureDoesNotMatch: 'AccessDenied',
  MissingAuthenticationToken: 'AccessDenied',
  ExpiredTokenException: 'AccessDenied',
  ExpiredToken: 'AccessDenied',
  InvalidIdentityToken: 'AccessDenied',
  InvalidIdentityTokenException: 'AccessDenied',
  IDPRejectedClaim: 'AccessDenied',
  IDPRejectedClaimException: 'AccessDenied',
  RegionDisabledException: 'InvalidRegion',
};

const retryableCodes = new Set([
  'ThrottlingException', 'Throttling', 'ThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded',
  'InternalServiceErrorException', 'InternalFailure', 'InternalError', 'ServiceUnavailable', 'IDPCommunicationError', 'IDPCommunicationErrorException',
  'TimeoutError', 'RequestTimeout', 'RequestTimeoutException',
  // The operator's own credentials could not be loaded (not configured yet, a Secret still
  // missing): its fault, not the customer's, and it may be fixed at any moment. AccessDenied is
  // kept for AWS's own refusals.
  'CredentialsProviderError',
]);

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET']);

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

function classifyAwsError(operation: string, error: unknown): AwsCallError {
  if (error instanceof AwsCallError) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const status = e.$metadata?.httpStatusCode;
  // Some wrappers (the SDK's retry middleware, for errors from another realm) keep only the
  // message of a network error, so look for its code there too.
  const networkCode = networkCodes.has(e.code ?? '') ? e.code : [...networkCodes].find((c) => e.message?.includes(c));
  const code = networkCode ?? e.name ?? 'UnknownError';
  const message = `${operation}: ${code}: ${e.message ?? String(error)}`;
  const retryable = retryableCodes.has(code) || networkCodes.has(code) || (status !== undefined && status >= 500) || e.name === 'AbortError';
  return new AwsCallError(operation, code, retryable, retryable ? undefined : reasons[code], message, status);
}

/** Runs one AWS call, turning any failure into a classified AwsCallError. */
export async function awsCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw classifyAwsError(operation, error);
  }
}
