// What a pod's state means, in words, and what to do about it: the plugin's `why`, and the
// README's troubleshooting table says the same.
import { notEntitledReasons, type NotEntitledReason } from '../api/marketplace-product.js';

export interface PodState {
  productName: string | undefined;
  productFound: boolean;
  verdict: string | undefined;
  reason: string | undefined;
  gated: boolean;
  enforcement: 'Enforce' | 'Audit';
  /** The product's Entitled condition message (why registrations are being retried). */
  productMessage?: string | undefined;
}

const reasons: Readonly<Record<NotEntitledReason, { means: string; action: string }>> = {
  CustomerNotEntitled: {
    means: 'AWS says the account running this pod has no active subscription to the product',
    action: 'subscribe to the product in AWS Marketplace; the pod is checked again within 15 minutes, or at once with `kubectl marketplace recheck POD`.',
  },
  InvalidSignature: {
    means: "the RegisterUsage answer's signature does not verify against spec.publicKey (or its product code, key version or nonce differ)",
    action: 'set spec.publicKey and spec.publicKeyVersion to the key AWS Marketplace shows for the product; the change checks the pod again at once.',
  },
  InvalidProductCode: { means: 'AWS does not know spec.productCode', action: 'create the product again with the right productCode (it cannot be changed in place).' },
  InvalidPublicKeyVersion: { means: 'AWS does not know spec.publicKeyVersion for this product', action: 'set spec.publicKeyVersion to a version AWS Marketplace lists; the change checks the pod again at once.' },
  PlatformNotSupported: { means: 'AWS Marketplace does not take registrations from this platform', action: 'run the pod on a platform AWS Marketplace supports for container products (EKS, ECS, or a supported Kubernetes).' },
  InvalidRegion: { means: 'Marketplace Metering is not available in the region used', action: 'set spec.region (or the operator\'s --region) to a region Marketplace Metering serves.' },
  DisabledApi: { means: 'the Metering API is disabled for this account or region', action: 'enable it with AWS, then `kubectl marketplace recheck POD` (it is also checked again periodically).' },
  AccessDenied: {
    means: 'AWS refused the identity the call was made with',
    action: 'give the role aws-marketplace:RegisterUsage (and MeterUsage), and check its trust policy for the cluster\'s OIDC issuer; checked again periodically.',
  },
  PublicKeyUnavailable: { means: "the product's public key could not be loaded (a missing ConfigMap or key, or not a usable RSA key)", action: 'fix spec.publicKey or the ConfigMap it names; checked again periodically.' },
  IdentityUnavailable: {
    means: 'no AWS identity for the pod: no role to assume, or no token for its ServiceAccount',
    action: 'set spec.identity.roleArn, or annotate the pod\'s ServiceAccount with eks.amazonaws.com/role-arn; checked again periodically.',
  },
};

export function explain(state: PodState): { summary: string; action?: string } {
  if (!state.productName) return { summary: 'it carries no marketplace.entitlements.io/product label, so the operator never gates it' };
  if (state.verdict === 'Entitled') {
    return { summary: `entitled: its RegisterUsage for product ${state.productName} verified${state.gated ? '; the gate is being removed' : ', and it runs'}` };
  }
  if (state.reason === 'ProductNotFound' || !state.productFound) {
    return { summary: `gated: there is no MarketplaceProduct ${state.productName} in its namespace`, action: `create MarketplaceProduct ${state.productName}; the pod is checked as soon as it exists.` };
  }
  if (state.verdict === 'NotEntitled') {
    const known = isNotEntitledReason(state.reason) ? reasons[state.reason] : undefined;
    const consequence = state.enforcement === 'Audit' ? 'it runs anyway (enforcement: Audit)' : state.gated ? 'it stays gated' : 'it is evicted';
    return { summary: `not entitled (${state.reason ?? 'no reason'}): ${known?.means ?? 'the check failed'}; ${consequence}`, ...(known ? { action: known.action } : {}) };
  }
  return {
    summary: `waiting for its verdict: the operator has not finished its registration${state.productMessage ? ` (product: ${state.productMessage})` : ''}`,
    action: "if this lasts, see the product's Entitled condition (Retrying: AWS unreachable, throttled, or the operator's credentials missing) and the operator's logs.",
  };
}

function isNotEntitledReason(reason: string | undefined): reason is NotEntitledReason {
  return (notEntitledReasons as readonly (string | undefined)[]).includes(reason);
}
