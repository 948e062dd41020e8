// The MarketplaceProduct API and the names the contract fixes: group, label, gate, annotations,
// condition reasons.
import type { KubernetesObject, V1ObjectMeta } from '@kubernetes/client-node';

export const group = 'marketplace.entitlements.io';
export const version = 'v1alpha1';
export const plural = 'marketplaceproducts';
export const kind = 'MarketplaceProduct';

export const productLabel = `${group}/product`;
export const schedulingGate = `${group}/entitlement`;
export const annotations = {
  status: `${group}/status`,
  reason: `${group}/reason`,
  registeredAt: `${group}/registered-at`,
  /** The id of a check again (verdicts/nonce.ts): with the pod's uid, it makes the registration's nonce. */
  check: `${group}/check`,
  /** Set or changed by a user, on a pod or a product: check the NotEntitled pods again now. */
  recheck: `${group}/recheck`,
  /** The operator's record of a NotEntitled pod's checks (JSON, see CheckRecord). */
  checks: `${group}/checks`,
  /** The operator's MAC of the pod's verdict state (verdicts/seal.ts): without it, no verdict is believed. */
  seal: `${group}/seal`,
} as const;

/** A product as the subject of an Event. */
export function productSubject(product: MarketplaceProduct): { apiVersion: string; kind: string; metadata: V1ObjectMeta } {
  return { apiVersion: `${group}/${version}`, kind, metadata: product.metadata };
}

export type Verdict = 'Entitled' | 'NotEntitled';

/**
 * Every reason a registration refuses a pod (the contract's list), in one place: the AWS error
 * mapping (aws/errors.ts) and the plugin's words (cli/reasons.ts) are typed by it, so a reason
 * missing from either fails to compile, and a test holds the README's table to it. A pod whose
 * product does not exist is NotEntitled with ProductNotFound, no registration's reason.
 */
export const notEntitledReasons = [
  'CustomerNotEntitled',
  'InvalidSignature',
  'InvalidProductCode',
  'InvalidPublicKeyVersion',
  'PlatformNotSupported',
  'InvalidRegion',
  'DisabledApi',
  'AccessDenied',
  'PublicKeyUnavailable',
  'IdentityUnavailable',
] as const;
export type NotEntitledReason = (typeof notEntitledReasons)[number];
/** The reasons that are AWS's answer (the others are the operator's findings). */
export type AwsRefusalReason = Exclude<NotEntitledReason, 'InvalidSignature' | 'PublicKeyUnavailable' | 'IdentityUnavailable'>;

/**
 * Reasons only a change to the product (which triggers a check at once) or to the platform can
 * cure: pods refused for them are not checked again periodically.
 */
export const permanentReasons: ReadonlySet<string> = new Set<NotEntitledReason>(['InvalidProductCode', 'InvalidPublicKeyVersion', 'InvalidSignature', 'InvalidRegion', 'PlatformNotSupported']);

/** What the operator keeps on a NotEntitled pod about its checks (annotation `checks`). */
export interface CheckRecord {
  /** Checks since the last one a change or a user asked for (the backoff counts from it). */
  attempts: number;
  /** When the latest verdict was written (RFC 3339). */
  at?: string;
  /** When the next periodic check is due (RFC 3339); absent for a permanent reason. */
  next?: string;
  /** The reason of the previous verdict, while a check is under way or after it. */
  reason?: string;
  /** What the latest check was for: the product's generation and recheck annotation, the pod's recheck annotation. */
  product: string;
  pod: string;
  /** And the fingerprint of the public key, when a ConfigMap holds it. */
  key?: string;
  /** The operator let the pod run though refused (Audit): under Enforce later, its budget is respected. */
  ranUnderAudit?: true;
}

export interface MarketplaceProductSpec {
  productCode: string;
  publicKeyVersion: number;
  publicKey: { pem?: string; configMapKeyRef?: { name: string; key: string } };
  enforcement?: 'Enforce' | 'Audit';
  onRevocation?: 'Keep' | 'Evict';
  identity?: { mode?: 'Pod' | 'Operator'; roleArn?: string };
  region?: string;
  metering?: { dimensions?: { name: string; unit: 'Pod' | 'vCPU' | 'MemoryGiB' }[] };
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface MarketplaceProductStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  entitledPods?: number;
  blockedPods?: number;
  pendingPods?: number;
  bypassedPods?: number;
  lastRegistrationTime?: string;
  publicKeyRotationTimestamp?: string;
  metering?: { lastReportedHour?: string; lostHours?: string[] };
}

export interface MarketplaceProduct extends KubernetesObject {
  metadata: V1ObjectMeta & { name: string; namespace: string };
  spec: MarketplaceProductSpec;
  status?: MarketplaceProductStatus;
}
