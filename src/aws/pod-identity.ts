// A pod's own AWS identity, obtained the way IRSA does inside the pod: a token of the pod's
// ServiceAccount bound to the pod (TokenRequest, audience sts.amazonaws.com), exchanged with STS
// AssumeRoleWithWebIdentity for the product's role or the ServiceAccount's
// eks.amazonaws.com/role-arn.
import { createHash } from 'node:crypto';
import { AssumeRoleWithWebIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { ApiException, type CoreV1Api } from '@kubernetes/client-node';
import type { AwsCredentialIdentity } from '@smithy/types';
import { awsCall } from './errors.js';
import { toIdentity } from './credentials.js';

export const roleArnAnnotation = 'eks.amazonaws.com/role-arn';
export const stsAudience = 'sts.amazonaws.com';
/** The shortest expiry the API server grants a TokenRequest. */
const tokenExpirationSeconds = 600;
const refreshBeforeMs = 5 * 60 * 1000;
const maxCached = 10_000;

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
  serviceAccountName?: string;
}

/** No role to assume, or no token for the pod's ServiceAccount: condition reason IdentityUnavailable. */
export class IdentityUnavailableError extends Error {
  override name = 'IdentityUnavailableError';
}

export class PodIdentity {
  private readonly cache = new Map<string, AwsCredentialIdentity>();

  /** `sts` sends unsigned requests: the web-identity token is the credential. */
  constructor(
    private readonly core: CoreV1Api,
    private readonly sts: STSClient,
  ) {}

  async credentials(pod: PodRef, productRoleArn?: string): Promise<AwsCredentialIdentity> {
    const serviceAccount = pod.serviceAccountName ?? 'default';
    const roleArn = productRoleArn ?? (await this.serviceAccountRole(pod.namespace, serviceAccount));
    const key = `${pod.uid}|${roleArn}`;
    const cached = this.cache.get(key);
    if (cached?.expiration && cached.expiration.getTime() - refreshBeforeMs > Date.now()) return cached;

    const token = await this.podToken(pod, serviceAccount);
    const out = await awsCall('AssumeRoleWithWebIdentity', () =>
      this.sts.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: roleArn, RoleSessionName: roleSessionName(pod), WebIdentityToken: token })),
    );
    const identity = toIdentity(out.Credentials, 'AssumeRoleWithWebIdentity');
    if (this.cache.size >= maxCached) this.cache.clear();
    this.cache.set(key, identity);
    return identity;
  }

  private async serviceAccountRole(namespace: string, name: string): Promise<string> {
    try {
      const account = await this.core.readNamespacedServiceAccount({ name, namespace });
      const role = account.metadata?.annotations?.[roleArnAnnotation];
      if (role) return role;
    } catch (error) {
      if (!(error instanceof ApiException) || error.code >= 500) throw error;
      throw new IdentityUnavailableError(`cannot read ServiceAccount ${namespace}/${name}: HTTP ${error.code}`);
    }
    throw new IdentityUnavailableError(`no role to assume: set spec.identity.roleArn, or annotate ServiceAccount ${namespace}/${name} with ${roleArnAnnotation}`);
  }

  private async podToken(pod: PodRef, serviceAccount: string): Promise<string> {
    try {
      const review = await this.core.createNamespacedServiceAccountToken({
        name: serviceAccount,
        namespace: pod.namespace,
        body: {
          spec: {
            audiences: [stsAudience],
            expirationSeconds: tokenExpirationSeconds,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid },
          },
        },
      });
      if (!review.status?.token) throw new IdentityUnavailableError(`TokenRequest for ${pod.namespace}/${serviceAccount} returned no token`);
      return review.status.token;
    } catch (error) {
      if (!(error instanceof ApiException) || error.code >= 500) throw error;
      throw new IdentityUnavailableError(`TokenRequest for ServiceAccount ${pod.namespace}/${serviceAccount} failed: HTTP ${error.code}`);
    }
  }
}

/** A role session name from the pod: `namespace.name`, within STS's 64 characters and charset. */
export function roleSessionName(pod: { namespace: string; name: string }): string {
  const name = `${pod.namespace}.${pod.name}`.replace(/[^\w+=,.@-]/g, '-');
  if (name.length <= 64) return name;
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 55)}-${digest}`;
}
