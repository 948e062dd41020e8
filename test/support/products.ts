// Builders for MarketplaceProduct manifests in tests.
import { generateKeyPairSync } from 'node:crypto';

export const testPublicKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

export interface ProductManifest {
  apiVersion: 'marketplace.entitlements.io/v1alpha1';
  kind: 'MarketplaceProduct';
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
}

/** A valid product; `spec` entries replace the defaults, and an undefined value removes a field. */
export function productManifest(name: string, spec: Record<string, unknown> = {}): ProductManifest {
  const fields: Record<string, unknown> = { productCode: 'prod-1234abcd', publicKeyVersion: 1, publicKey: { pem: testPublicKeyPem }, ...spec };
  const merged = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
  return { apiVersion: 'marketplace.entitlements.io/v1alpha1', kind: 'MarketplaceProduct', metadata: { name }, spec: merged };
}
