// The operator's own AWS identity: the SDK default chain, a profile, static keys (from the
// config file or a Secret), or anonymous; with a role ARN, STS AssumeRole on top, cached and
// refreshed before it expires.
import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';
import { fromIni, fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { SecretReader } from '../kube/secrets.js';
import type { ClientCredentials } from './clients.js';
import { awsCall } from './errors.js';
import type { CredentialSource } from './settings.js';

const minutes = 60 * 1000;

export interface CacheOptions {
  /** Fetch new credentials this long before the current ones expire. */
  refreshBeforeMs?: number;
  /** Re-fetch credentials without an expiry after this long (a rotated Secret takes effect). */
  maxAgeMs?: number;
  now?: () => number;
}

/**
 * Wraps a fetch of credentials: answers from the cache while they are fresh, and lets only one
 * fetch run at a time however many callers ask.
 */
export function cachedCredentials(fetch: () => Promise<AwsCredentialIdentity>, options: CacheOptions = {}): AwsCredentialIdentityProvider {
  const refreshBeforeMs = options.refreshBeforeMs ?? 5 * minutes;
  const now = options.now ?? Date.now;
  let current: { identity: AwsCredentialIdentity; staleAt: number } | undefined;
  let inflight: Promise<AwsCredentialIdentity> | undefined;
  return () => {
    if (current && now() < current.staleAt) return Promise.resolve(current.identity);
    inflight ??= fetch()
      .then((identity) => {
        const staleAt = identity.expiration ? identity.expiration.getTime() - refreshBeforeMs : options.maxAgeMs !== undefined ? now() + options.maxAgeMs : Infinity;
        current = { identity, staleAt };
        return identity;
      })
      .finally(() => {
        inflight = undefined;
      });
    return inflight;
  };
}

export function baseCredentials(source: CredentialSource, readSecret?: SecretReader): ClientCredentials | undefined {
  switch (source.kind) {
    case 'default':
      return fromNodeProviderChain();
    case 'profile':
      return fromIni({ profile: source.profile });
    case 'static':
      return { accessKeyId: source.accessKeyId, secretAccessKey: source.secretAccessKey, ...(source.sessionToken ? { sessionToken: source.sessionToken } : {}) };
    case 'anonymous':
      return 'anonymous';
    case 'secret': {
      if (!readSecret) throw new Error('credentials from a Secret need a Kubernetes client');
      const { namespace, name } = source;
      return cachedCredentials(
        async () => {
          const data = await readSecret(namespace, name);
          const accessKeyId = data.access_key_id;
          const secretAccessKey = data.secret_access_key;
          if (!accessKeyId || !secretAccessKey) throw new Error(`Secret ${namespace}/${name} needs keys access_key_id and secret_access_key`);
          return { accessKeyId, secretAccessKey, ...(data.session_token ? { sessionToken: data.session_token } : {}) };
        },
        { maxAgeMs: 5 * minutes },
      );
    }
  }
}

/** Credentials of a role assumed with STS AssumeRole by `sts` (signed with the base credentials). */
export function assumeRoleCredentials(sts: STSClient, roleArn: string, sessionName: string, options: CacheOptions = {}): AwsCredentialIdentityProvider {
  return cachedCredentials(async () => {
    const out = await awsCall('AssumeRole', () => sts.send(new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: sessionName })));
    return toIdentity(out.Credentials, 'AssumeRole');
  }, options);
}

export function toIdentity(
  credentials: { AccessKeyId?: string | undefined; SecretAccessKey?: string | undefined; SessionToken?: string | undefined; Expiration?: Date | undefined } | undefined,
  operation: string,
): AwsCredentialIdentity {
  if (!credentials?.AccessKeyId || !credentials.SecretAccessKey) throw new Error(`${operation} answered without credentials`);
  return {
    accessKeyId: credentials.AccessKeyId,
    secretAccessKey: credentials.SecretAccessKey,
    ...(credentials.SessionToken ? { sessionToken: credentials.SessionToken } : {}),
    ...(credentials.Expiration ? { expiration: credentials.Expiration } : {}),
  };
}
