// What the fake AWS remembers: behaviours per product, credentials it accepts or issued, usage
// it recorded, and every call it answered.
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../../src/clock.js';
import type { KnownCredentials } from './sigv4.js';

/** How the fake answers calls for one product code. */
export interface ProductBehaviour {
  /** Answer RegisterUsage and MeterUsage with this AWS error code, e.g. CustomerNotEntitledException. */
  error?: string;
  /** Share (0..1) of calls answered ThrottlingException, spread evenly (0.5: every second call). */
  throttleShare?: number;
  /** Share (0..1) of calls answered 500 InternalServiceErrorException. */
  serverErrorShare?: number;
  /** Answer RegisterUsage CustomerNotEntitledException to calls signed for these roles (their customer has not subscribed). */
  notEntitledRoles?: string[];
  /** Wait this long before answering. */
  delayMs?: number;
  /** Sign RegisterUsage answers with a key other than the published one. */
  badSignature?: boolean;
  /** Add PublicKeyRotationTimestamp (epoch seconds) to RegisterUsage answers. */
  publicKeyRotationTimestamp?: number;
  /** Date RegisterUsage answers (iat) this many seconds ahead of the fake's clock: AWS's clock ahead of the operator's. */
  clockAheadSeconds?: number;
}

export interface Customer {
  registrationToken: string;
  customerIdentifier: string;
  customerAWSAccountId: string;
  productCode: string;
  licenseArn?: string;
}

export interface CallRecord {
  seq: number;
  time: string;
  service: 'metering' | 'sts';
  operation: string;
  status: number;
  errorCode?: string;
  productCode?: string;
  /** The access key that signed the call, if any, and the region it signed for. */
  accessKeyId?: string;
  signingRegion?: string;
  /** For calls signed with credentials the fake issued: the role and session they belong to. */
  roleArn?: string;
  roleSessionName?: string;
  /** The pod whose bound token the signing credentials were issued for (AssumeRoleWithWebIdentity), or the exchange's. */
  boundPod?: BoundPod;
  request: Record<string, unknown>;
}

/** A pod a service-account token is bound to. */
export interface BoundPod {
  namespace: string;
  name: string;
  uid: string;
}

/** A usage record the fake accepted (MeterUsage or BatchMeterUsage). */
export interface MeteringRecord {
  /** Who AWS de-duplicates by: the role session of issued credentials, else the access key. */
  caller: string;
  productCode: string;
  dimension: string;
  /** Start of the hour, epoch ms. */
  hour: number;
  quantity: number;
  /** UsageAllocations as sent: quantity and tags (`key=value`, in order) of each. */
  allocations?: { quantity: number; tags: string[] }[];
  recordId: string;
}

export interface IssuedCredentials extends KnownCredentials {
  sessionToken: string;
  expiration: Date;
  roleArn: string;
  roleSessionName: string;
  boundPod?: BoundPod;
}

export class FakeState {
  readonly behaviours = new Map<string, ProductBehaviour>();
  readonly calls: CallRecord[] = [];
  readonly issued = new Map<string, IssuedCredentials>();
  readonly meteringRecords = new Map<string, MeteringRecord>();
  readonly clientTokens = new Map<string, string>();
  /** Calls waiting out their product's delayMs now, by product code (a test can act while one is in flight). */
  readonly delayed = new Map<string, number>();
  private readonly counters = new Map<string, number>();

  /** The clock of usage timestamps (the 6-hour window); credential expiry stays on real time. */
  constructor(
    readonly staticCredentials: readonly KnownCredentials[],
    readonly customers: readonly Customer[],
    readonly clock: Clock = systemClock,
  ) {}

  behaviour(productCode: string): ProductBehaviour {
    return this.behaviours.get(productCode) ?? {};
  }

  /** The n-th call for a product code falls in a share when ⌊n·share⌋ grows: an even spread. */
  nextCallHits(productCode: string, kind: string, share: number | undefined): boolean {
    if (!share || share <= 0) return false;
    const key = `${kind}:${productCode}`;
    const n = (this.counters.get(key) ?? 0) + 1;
    this.counters.set(key, n);
    return Math.floor(n * share) > Math.floor((n - 1) * share);
  }

  lookupCredentials(accessKeyId: string): KnownCredentials | IssuedCredentials | undefined {
    return this.staticCredentials.find((c) => c.accessKeyId === accessKeyId) ?? this.issued.get(accessKeyId);
  }

  issue(roleArn: string, roleSessionName: string, durationSeconds: number, boundPod?: BoundPod): IssuedCredentials {
    const credentials: IssuedCredentials = {
      accessKeyId: `ASIA${randomBytes(12).toString('hex').toUpperCase().slice(0, 16)}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: `FakeSessionToken/${randomBytes(96).toString('base64')}`,
      expiration: new Date(Date.now() + durationSeconds * 1000),
      roleArn,
      roleSessionName,
      ...(boundPod ? { boundPod } : {}),
    };
    this.issued.set(credentials.accessKeyId, credentials);
    return credentials;
  }

  record(call: Omit<CallRecord, 'seq' | 'time'>): void {
    this.calls.push({ seq: this.calls.length + 1, time: new Date().toISOString(), ...call });
  }
}

/** An AWS error answer: the code and HTTP status the real service uses. */
export class AwsFault extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
