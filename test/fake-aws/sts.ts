// AWS STS operations as the fake answers them (AWS Query protocol: form-encoded requests, XML
// answers). Web-identity tokens are verified against the cluster's service-account issuer keys.
import { randomUUID, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { AwsFault, type BoundPod, type FakeState } from './state.js';
import type { SignedRequest } from './sigv4.js';

const roleArnPattern = /^arn:aws[a-zA-Z-]*:iam::(\d{12}):role\/(.+)$/;
const sessionNamePattern = /^[\w+=,.@-]{2,64}$/;
const xmlns = 'https://sts.amazonaws.com/doc/2011-06-15/';

export interface StsOptions {
  /** Public keys of the cluster's service-account token issuer. */
  serviceAccountKeys: readonly KeyObject[];
  audience: string;
  accountId: string;
  deniedRoles: ReadonlySet<string>;
}

export interface StsAnswer {
  xml: string;
  roleArn?: string;
  roleSessionName?: string;
  /** The pod the web-identity token was bound to (its kubernetes.io claim), if it was. */
  boundPod?: BoundPod;
}

export async function handleSts(params: URLSearchParams, caller: SignedRequest | undefined, state: FakeState, options: StsOptions): Promise<StsAnswer> {
  const action = params.get('Action') ?? '';
  switch (action) {
    case 'AssumeRoleWithWebIdentity': {
      const { roleArn, sessionName, duration } = roleParams(params, options);
      const { subject, boundPod } = await verifyWebIdentity(params.get('WebIdentityToken') ?? '', options);
      const credentials = state.issue(roleArn, sessionName, duration, boundPod);
      return {
        roleArn,
        roleSessionName: sessionName,
        ...(boundPod ? { boundPod } : {}),
        xml: answer(action, `<SubjectFromWebIdentityToken>${escape(subject)}</SubjectFromWebIdentityToken><Audience>${escape(options.audience)}</Audience>${assumed(roleArn, sessionName, credentials)}`),
      };
    }
    case 'AssumeRole': {
      if (!caller) throw new AwsFault(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
      const { roleArn, sessionName, duration } = roleParams(params, options);
      const credentials = state.issue(roleArn, sessionName, duration);
      return { roleArn, roleSessionName: sessionName, xml: answer(action, assumed(roleArn, sessionName, credentials)) };
    }
    case 'GetCallerIdentity': {
      if (!caller) throw new AwsFault(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
      const issued = state.issued.get(caller.accessKeyId);
      const arn = issued ? assumedRoleArn(issued.roleArn, issued.roleSessionName) : `arn:aws:iam::${options.accountId}:user/fake-user`;
      return { xml: answer(action, `<Arn>${escape(arn)}</Arn><UserId>${escape(caller.accessKeyId)}</UserId><Account>${options.accountId}</Account>`) };
    }
    default:
      throw new AwsFault(400, 'InvalidAction', `Could not find operation ${action} for version ${params.get('Version') ?? ''}`);
  }
}

function roleParams(params: URLSearchParams, options: StsOptions): { roleArn: string; sessionName: string; duration: number } {
  const roleArn = params.get('RoleArn') ?? '';
  const sessionName = params.get('RoleSessionName') ?? '';
  const duration = Number(params.get('DurationSeconds') ?? 3600);
  if (!roleArnPattern.test(roleArn)) throw new AwsFault(400, 'ValidationError', `RoleArn ${roleArn} is not a role ARN`);
  if (!sessionNamePattern.test(sessionName)) {
    throw new AwsFault(400, 'ValidationError', "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*");
  }
  if (!Number.isInteger(duration) || duration < 900 || duration > 43200) throw new AwsFault(400, 'ValidationError', 'DurationSeconds must be from 900 to 43200');
  if (options.deniedRoles.has(roleArn)) throw new AwsFault(403, 'AccessDenied', `Not authorized to perform sts:AssumeRole on ${roleArn}`);
  return { roleArn, sessionName, duration };
}

/** The subject of a verified token, and the pod it is bound to (the API server's kubernetes.io claim). */
async function verifyWebIdentity(token: string, options: StsOptions): Promise<{ subject: string; boundPod?: BoundPod }> {
  if (!token) throw new AwsFault(400, 'ValidationError', 'WebIdentityToken is required');
  let alg: string | undefined;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw new AwsFault(400, 'InvalidIdentityToken', 'Couldn\'t parse the web identity token');
  }
  if (alg !== 'RS256' && alg !== 'ES256') throw new AwsFault(400, 'InvalidIdentityToken', `web identity token algorithm ${String(alg)} is not accepted`);
  for (const key of options.serviceAccountKeys) {
    try {
      const { payload } = await jwtVerify(token, key, { audience: options.audience, algorithms: [alg] });
      const boundPod = podClaim(payload['kubernetes.io']);
      return { subject: payload.sub ?? '', ...(boundPod ? { boundPod } : {}) };
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw new AwsFault(400, 'ExpiredTokenException', 'Token expired');
      if (error instanceof errors.JWTClaimValidationFailed) throw new AwsFault(400, 'InvalidIdentityToken', `Incorrect token audience or claims: ${error.message}`);
      // Another key may have signed it: try the next one.
    }
  }
  throw new AwsFault(400, 'InvalidIdentityToken', 'The web identity token signature could not be verified with the issuer keys');
}

function podClaim(claim: unknown): BoundPod | undefined {
  if (typeof claim !== 'object' || claim === null) return undefined;
  const { namespace, pod } = claim as { namespace?: unknown; pod?: { name?: unknown; uid?: unknown } };
  if (typeof namespace !== 'string' || typeof pod?.name !== 'string' || typeof pod.uid !== 'string') return undefined;
  return { namespace, name: pod.name, uid: pod.uid };
}

function assumedRoleArn(roleArn: string, sessionName: string): string {
  const [, account = '', path = ''] = roleArnPattern.exec(roleArn) ?? [];
  return `arn:aws:sts::${account}:assumed-role/${path.split('/').pop() ?? ''}/${sessionName}`;
}

function assumed(roleArn: string, sessionName: string, c: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: Date }): string {
  return (
    `<AssumedRoleUser><Arn>${escape(assumedRoleArn(roleArn, sessionName))}</Arn><AssumedRoleId>AROAFAKE${escape(sessionName)}</AssumedRoleId></AssumedRoleUser>` +
    `<Credentials><AccessKeyId>${c.accessKeyId}</AccessKeyId><SecretAccessKey>${escape(c.secretAccessKey)}</SecretAccessKey>` +
    `<SessionToken>${escape(c.sessionToken)}</SessionToken><Expiration>${c.expiration.toISOString()}</Expiration></Credentials>`
  );
}

function answer(action: string, result: string): string {
  return `<${action}Response xmlns="${xmlns}"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`;
}

export function stsErrorXml(fault: AwsFault): string {
  const type = fault.status >= 500 ? 'Receiver' : 'Sender';
  return `<ErrorResponse xmlns="${xmlns}"><Error><Type>${type}</Type><Code>${escape(fault.code)}</Code><Message>${escape(fault.message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
}

function escape(value: string): string {
  return value.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
