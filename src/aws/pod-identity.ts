// A pod's own AWS identity, obtained the way IRSA does inside the pod: a token of the pod's
// ServiceAccount bound to the pod (TokenRequest, audience sts.amazonaws.com), exchanged with STS
// AssumeRoleWithWebIdentity for the product's role or the ServiceAccount's
// eks.amazonaws.com/role-arn.
import { createHash } from 'node:crypto';
import { AssumeRoleWithWebIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import type { AuthenticationV1TokenRequest, V1ServiceAccount } from '@kubernetes/client-node';
import { ApiError, segment, type ApiClient } from '../kube/api.js';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { AwsCallError, awsCall } from './errors.js';
import { cachedCredentials, toIdentity } from './credentials.js';
import { keyOf } from '../runtime/informer.js';
import { describeError } from '../kube/errors.js';

export const roleArnAnnotation = 'eks.amazonaws.com/role-arn';
const stsAudience = 'sts.amazonaws.com';
/** The shortest expiry the API server grants a TokenRequest. */
const tokenExpirationSeconds = 600;
const maxCached = 10_000;
/** How long a ServiceAccount's role annotation is used before it is read again. */
const roleCacheMs = 30_000;

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
  serviceAccountName?: string;
  /**
   * The pod has ended (its usage is still reported, hours later): its token is bound to nothing,
   * as the API server binds tokens only to pods that exist. STS sees the same caller: the same
   * ServiceAccount, role and session name.
   */
  ended?: boolean;
}

/** No role to assume, or no token for the pod's ServiceAccount: condition reason IdentityUnavailable. */
export class IdentityUnavailableError extends Error {
  override name = 'IdentityUnavailableError';
  constructor(
    message: string,
    /** The API server's answer, when it refused a read or a TokenRequest. */
    readonly httpStatus?: number,
  ) {
    super(message);
  }
}

/**
 * The operator could not get the pod's identity for a reason of its own or the cluster's (its
 * permissions, the API server's throttling): not the customer's, so retried and never a verdict.
 */
export class IdentityRetryError extends Error {
  override name = 'IdentityRetryError';
  constructor(
    message: string,
    readonly httpStatus: number,
  ) {
    super(message);
  }
}

export class PodIdentity {
  // One cached, self-refreshing provider per pod and role (cachedCredentials: refresh before
  // expiry, one exchange at a time, failures not cached).
  private readonly providers = new Map<string, AwsCredentialIdentityProvider>();
  // The role annotation of each ServiceAccount, for a short while: the pods of a Deployment
  // share one account, and reading it for every pod was a request per pod. Failures are not kept.
  private readonly roles = new Map<string, { role: Promise<string>; readAt: number }>();

  /** `sts` sends unsigned requests: the web-identity token is the credential. */
  constructor(
    private readonly client: ApiClient,
    private readonly sts: STSClient,
    private readonly now: () => number = Date.now,
  ) {}

  async credentials(pod: PodRef, productRoleArn?: string): Promise<AwsCredentialIdentity> {
    const serviceAccount = pod.serviceAccountName ?? 'default';
    const roleArn = productRoleArn ?? (await this.serviceAccountRole(pod.namespace, serviceAccount));
    const key = `${pod.uid}|${roleArn}${pod.ended ? '|ended' : ''}`;
    let provider = this.providers.get(key);
    if (!provider) {
      provider = cachedCredentials(async () => {
        const token = await this.podToken(pod, serviceAccount);
        const out = await awsCall('AssumeRoleWithWebIdentity', () =>
          this.sts.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: roleArn, RoleSessionName: roleSessionName(pod), WebIdentityToken: token })),
        ).catch((error: unknown) => {
          throw malformedRole(error, roleArn, productRoleArn ? 'spec.identity.roleArn' : `ServiceAccount ${pod.namespace}/${serviceAccount}'s ${roleArnAnnotation}`);
        });
        return toIdentity(out.Credentials, 'AssumeRoleWithWebIdentity');
      });
      if (this.providers.size >= maxCached) this.providers.clear();
      this.providers.set(key, provider);
    }
    return provider();
  }

  private serviceAccountRole(namespace: string, name: string): Promise<string> {
    const key = keyOf(namespace, name);
    const now = this.now();
    const cached = this.roles.get(key);
    if (cached && now - cached.readAt < roleCacheMs) return cached.role;
    const role = this.readServiceAccountRole(namespace, name);
    if (this.roles.size >= maxCached) this.roles.clear();
    this.roles.set(key, { role, readAt: now });
    role.catch(() => {
      if (this.roles.get(key)?.role === role) this.roles.delete(key);
    });
    return role;
  }

  private async readServiceAccountRole(namespace: string, name: string): Promise<string> {
    let account: V1ServiceAccount;
    try {
      account = await this.client.request<V1ServiceAccount>('GET', `/api/v1/namespaces/${segment(namespace)}/serviceaccounts/${segment(name)}`);
    } catch (error) {
      throw identityFailure(error, `cannot read ServiceAccount ${namespace}/${name}`);
    }
    const role = account.metadata?.annotations?.[roleArnAnnotation];
    if (role) return role;
    throw new IdentityUnavailableError(`no role to assume: set spec.identity.roleArn, or annotate ServiceAccount ${namespace}/${name} with ${roleArnAnnotation}`);
  }

  private async podToken(pod: PodRef, serviceAccount: string): Promise<string> {
    try {
      const review = await this.client.request<AuthenticationV1TokenRequest>('POST', `/api/v1/namespaces/${segment(pod.namespace)}/serviceaccounts/${segment(serviceAccount)}/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: [stsAudience],
          expirationSeconds: tokenExpirationSeconds,
          ...(pod.ended ? {} : { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid } }),
        },
      });
      if (!review.status?.token) throw new IdentityUnavailableError(`TokenRequest for ${pod.namespace}/${serviceAccount} returned no token`);
      return review.status.token;
    } catch (error) {
      throw identityFailure(error, `TokenRequest for ServiceAccount ${pod.namespace}/${serviceAccount} failed`);
    }
  }
}

/**
 * STS refuses a role ARN it cannot parse (a typo in the ServiceAccount's annotation, which no
 * schema checks) with ValidationError: no retry changes that, so it is the pod's IdentityUnavailable.
 */
function malformedRole(error: unknown, roleArn: string, from: string): unknown {
  if (!(error instanceof AwsCallError) || error.code !== 'ValidationError') return error;
  return new IdentityUnavailableError(`STS refused the role ${JSON.stringify(roleArn)} from ${from}: ${error.message}`);
}

/**
 * Whose fault an API server's refusal of a ServiceAccount read or a TokenRequest is. The pod's
 * side: its ServiceAccount or the pod itself gone or replaced (404, 409, 410), or the operator's
 * limits refusing a token for its namespace (a ValidatingAdmissionPolicy; its message names the
 * setting that allows it): IdentityUnavailable, a verdict. Anything else is the operator's or the
 * cluster's (its own permissions after an RBAC change, 403; API Priority and Fairness in a
 * burst, 429; 5xx; the network): an IdentityRetryError, retried with backoff, never a verdict.
 */
export function identityFailure(error: unknown, what: string): Error {
  if (!(error instanceof ApiError)) return error instanceof Error ? error : new Error(String(error));
  const refusedByPolicy = error.code === 403 && error.message.includes('ValidatingAdmissionPolicy');
  if (refusedByPolicy || error.code === 404 || error.code === 409 || error.code === 410) {
    return new IdentityUnavailableError(`${what}: ${error.message}`, error.code);
  }
  return new IdentityRetryError(`${what}: ${describeError(error)}`, error.code);
}

/** A role session name from the pod: `namespace.name`, within STS's 64 characters and charset. */
export function roleSessionName(pod: { namespace: string; name: string }): string {
  const name = `${pod.namespace}.${pod.name}`.replace(/[^\w+=,.@-]/g, '-');
  if (name.length <= 64) return name;
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 55)}-${digest}`;
}
