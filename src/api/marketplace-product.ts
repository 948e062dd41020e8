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
  /** Written before RegisterUsage, so a retry after a crash reuses the same registration. */
  nonce: `${group}/nonce`,
} as const;

export type Verdict = 'Entitled' | 'NotEntitled';

export type NotEntitledReason =
  | 'CustomerNotEntitled'
  | 'InvalidSignature'
  | 'InvalidProductCode'
  | 'InvalidPublicKeyVersion'
  | 'PlatformNotSupported'
  | 'InvalidRegion'
  | 'DisabledApi'
  | 'AccessDenied'
  | 'PublicKeyUnavailable'
  | 'IdentityUnavailable';

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
  lastRegistrationTime?: string;
  publicKeyRotationTimestamp?: string;
  metering?: { lastReportedHour?: string; lostHours?: string[] };
}

export interface MarketplaceProduct extends KubernetesObject {
  metadata: V1ObjectMeta & { name: string; namespace: string };
  spec: MarketplaceProductSpec;
  status?: MarketplaceProductStatus;
}
