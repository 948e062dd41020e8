// Builds the SDK clients for Marketplace Metering and STS from AwsSettings, so the operator and
// the CLI talk to AWS the same way.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import { STSClient } from '@aws-sdk/client-sts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { AwsSettings } from './settings.js';

/** Credentials for a client: a provider, or 'anonymous' for unsigned requests. */
export type ClientCredentials = AwsCredentialIdentityProvider | AwsCredentialIdentity | 'anonymous';

// Unsigned requests: the SDK still wants an identity, and this signer leaves the request alone.
const anonymousIdentity: AwsCredentialIdentity = { accessKeyId: 'anonymous', secretAccessKey: 'anonymous' };
const noopSigner = { sign: <T>(request: T): Promise<T> => Promise.resolve(request) };

/** The HTTP layer for AWS calls; share one between clients to share its connection pool. */
export function createRequestHandler(settings: AwsSettings): NodeHttpHandler {
  const timeoutMs = Math.round(settings.timeoutSeconds * 1000);
  const keepAlive = !settings.closeConnection;
  return new NodeHttpHandler({
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    // Without this the handler only logs a warning and keeps waiting.
    throwOnRequestTimeout: true,
    httpAgent: new HttpAgent({ keepAlive }),
    httpsAgent: new HttpsAgent({ keepAlive }),
  });
}

function common(settings: AwsSettings, credentials: ClientCredentials | undefined, requestHandler?: NodeHttpHandler) {
  return {
    requestHandler: requestHandler ?? createRequestHandler(settings),
    // Resolve each command's middleware chain once per client, not on every call (we never
    // change a client's middleware stack after it is built).
    cacheMiddleware: true,
    ...(credentials === 'anonymous' ? { credentials: anonymousIdentity, signer: noopSigner } : credentials ? { credentials } : {}),
  };
}

export function createMeteringClient(settings: AwsSettings, credentials?: ClientCredentials, region = settings.region, requestHandler?: NodeHttpHandler): MarketplaceMeteringClient {
  return new MarketplaceMeteringClient({
    ...common(settings, credentials, requestHandler),
    ...(region ? { region } : {}),
    ...(settings.meteringEndpoint ? { endpoint: settings.meteringEndpoint } : {}),
  });
}

export function createStsClient(settings: AwsSettings, credentials?: ClientCredentials, region = settings.region): STSClient {
  // legacy: the global endpoint, signed for us-east-1 (what sts_regional_endpoint=legacy means).
  const legacy = settings.stsRegionalEndpoint === 'legacy' && !settings.stsEndpoint;
  const stsRegion = legacy ? 'us-east-1' : region;
  return new STSClient({
    ...common(settings, credentials),
    ...(stsRegion ? { region: stsRegion } : {}),
    ...(settings.stsEndpoint ? { endpoint: settings.stsEndpoint } : legacy ? { endpoint: 'https://sts.amazonaws.com' } : {}),
  });
}
