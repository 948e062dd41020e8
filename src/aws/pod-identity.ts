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

/** How many pods and ServiceAccounts PodIdentity keeps what it learnt of. */
export interface PodIdentityLimits {
  /** Pods whose credentials are kept; past it, the least recently used pod's go. */
  pods: number;
  /** ServiceAccounts whose role annotation is kept; past it, the oldest read goes. */
  serviceAccounts: number;
}

const defaultLimits: PodIdentityLimits = { pods: 10_000, serviceAccounts: 10_000 };
/** How often every pod's credentials are checked for expiry (else only the least recently used are). */
const expirySweepMs = 60_000;
/** How long credentials not yet issued are kept (their TokenRequest and exchange under way, or failed). */
const pendingMs = tokenExpirationSeconds * 1000;

interface PodCredentials {
  /** One provider per role (and for the pod ended): refreshed before expiry, one exchange at a time, failures not cached. */
  byRole: Map<string, AwsCredentialIdentityProvider>;
  /** When the last of its credentials expire, epoch ms: after that, nothing of it is worth keeping. */
  expiresAt: number;
}

export class PodIdentity {
  // Each pod's credentials, for their lifetime: its RegisterUsage and its hourly MeterUsage calls
  // are signed with the same ones, without another TokenRequest and exchange. Least recently used
  // first; dropped when they expire, when the pod is deleted (forget), and the least recently
  // used when there are too many. Never all at once.
  private readonly pods = new Map<string, PodCredentials>();
  private sweptAt: number;
  // The role annotation of each ServiceAccount, for a short while: the pods of a Deployment
  // share one account, and reading it for every pod was a request per pod. Failures are not
  // kept. Oldest read first.
  private readonly roles = new Map<string, { role: Promise<string>; readAt: number }>();

  /** `sts` sends unsigned requests: the web-identity token is the credential. */
  constructor(
    private readonly client: ApiClient,
    private readonly sts: STSClient,
    private readonly now: () => number = Date.now,
    private readonly limits: PodIdentityLimits = defaultLimits,
  ) {
    this.sweptAt = now();
  }

  async credentials(pod: PodRef, productRoleArn?: string): Promise<AwsCredentialIdentity> {
    const serviceAccount = pod.serviceAccountName ?? 'default';
    const roleArn = productRoleArn ?? (await this.serviceAccountRole(pod.namespace, serviceAccount));
    const entry = this.podEntry(pod.uid);
    const key = `${roleArn}${pod.ended ? '|ended' : ''}`;
    let provider = entry.byRole.get(key);
    if (!provider) {
      provider = cachedCredentials(
        async () => {
          const identity = await this.exchange(pod, serviceAccount, roleArn, productRoleArn);
          entry.expiresAt = Math.max(entry.expiresAt, identity.expiration?.getTime() ?? this.now() + pendingMs);
          return identity;
        },
        { now: this.now },
      );
      entry.byRole.set(key, provider);
    }
    return provider();
  }

  /** Drops what is kept for a pod: it was deleted (its hours after are reported with credentials of an ended pod). */
  forget(uid: string): void {
    this.pods.delete(uid);
  }

  /** How many pods' credentials are kept (for tests). */
  get cachedPods(): number {
    return this.pods.size;
  }

  /** The pod's entry, now the most recently used; a new one makes room first. */
  private podEntry(uid: string): PodCredentials {
    const now = this.now();
    let entry = this.pods.get(uid);
    if (entry) {
      this.pods.delete(uid);
    } else {
      this.prunePods(now);
      entry = { byRole: new Map(), expiresAt: now + pendingMs };
    }
    this.pods.set(uid, entry);
    return entry;
  }

  private prunePods(now: number): void {
    if (now - this.sweptAt >= expirySweepMs) {
      this.sweptAt = now;
      for (const [uid, entry] of this.pods) if (entry.expiresAt <= now) this.pods.delete(uid);
    }
    for (const [uid, entry] of this.pods) {
      if (entry.expiresAt > now && this.pods.size < this.limits.pods) break;
      this.pods.delete(uid);
    }
  }

  private async exchange(pod: PodRef, serviceAccount: string, roleArn: string, productRoleArn: string | undefined): Promise<AwsCredentialIdentity> {
    const token = await this.podToken(pod, serviceAccount);
    const out = await awsCall('AssumeRoleWithWebIdentity', () =>
      this.sts.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: roleArn, RoleSessionName: roleSessionName(pod), WebIdentityToken: token })),
    ).catch((error: unknown) => {
      throw malformedRole(error, roleArn, productRoleArn ? 'spec.identity.roleArn' : `ServiceAccount ${pod.namespace}/${serviceAccount}'s ${roleArnAnnotation}`);
    });
    return toIdentity(out.Credentials, 'AssumeRoleWithWebIdentity');
  }

  private serviceAccountRole(namespace: string, name: string): Promise<string> {
    const key = keyOf(namespace, name);
    const now = this.now();
    const cached = this.roles.get(key);
    if (cached && now - cached.readAt < roleCacheMs) return cached.role;
    // Re-inserted, so the map stays in the order of reads and the oldest are pruned from its head.
    this.roles.delete(key);
    for (const [oldest, { readAt }] of this.roles) {
      if (now - readAt < roleCacheMs && this.roles.size < this.limits.serviceAccounts) break;
      this.roles.delete(oldest);
    }
    const role = this.readServiceAccountRole(namespace, name);
    this.roles.set(key, { role, readAt: now });
    role.catch(() => {
      if (this.roles.get(key)?.role === role) this.roles.delete(key);
    });
    return role;
  }

  /** How many ServiceAccounts' roles are kept (for tests). */
  get cachedServiceAccounts(): number {
    return this.roles.size;
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
 * A denial by the bundle's limits on the operator (config/rbac/operator_limits_policy.yaml), whose
 * messages all say what "the operator" may or leaves alone; not any policy's or webhook's, and not
 * an error evaluating one ("expression ... resulted in error"), which are retried.
 */
const operatorLimitsDenial = /ValidatingAdmissionPolicy '[^']*' with binding '[^']*' denied request: the operator (may|leaves)/;

/**
 * Whose fault an API server's refusal of a ServiceAccount read or a TokenRequest is. The pod's
 * side: its ServiceAccount or the pod itself gone or replaced (404, 409, 410), or the operator's
 * limits refusing a token for its namespace (operatorLimitsDenial; its message names the setting
 * that allows it): IdentityUnavailable, a verdict. Anything else is the operator's or the
 * cluster's (its own permissions after an RBAC change, 403; API Priority and Fairness in a
 * burst, 429; 5xx; the network): an IdentityRetryError, retried with backoff, never a verdict.
 */
function identityFailure(error: unknown, what: string): Error {
  if (!(error instanceof ApiError)) return error instanceof Error ? error : new Error(String(error));
  const refusedByPolicy = error.code < 500 && operatorLimitsDenial.test(error.message);
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
