// Self-managed TLS for the webhook: a CA and a serving certificate kept in one Secret. Replicas
// starting together converge on one Secret (create, and on conflict read what won). The serving
// certificate is renewed from the same CA well before it expires, so the CA bundle the API server
// trusts never changes and no admission fails during a rotation.
import { X509Certificate } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { ApiError, segment, type KubeClient } from '../kube/api.js';
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority, type CertificateAuthority } from '../pki/certificates.js';
import type { Logger } from '../observability/logger.js';

const day = 24 * 60 * 60 * 1000;

export interface WebhookTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
  /** The Secret's resourceVersion this came from. */
  version: string;
}

export interface CertificateOptions {
  namespace: string;
  secretName: string;
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  caValidityMs?: number;
  servingValidityMs?: number;
  /** Renew the serving certificate when it has less than this left. */
  renewBeforeMs?: number;
  /** Someone else (cert-manager) writes the Secret: only read it, never create or renew it. */
  external?: boolean;
}

export class CertificateStore {
  private readonly caValidityMs: number;
  private readonly servingValidityMs: number;
  private readonly renewBeforeMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly options: CertificateOptions,
    private readonly log: Logger,
  ) {
    this.caValidityMs = options.caValidityMs ?? 10 * 365 * day;
    this.servingValidityMs = options.servingValidityMs ?? 90 * day;
    this.renewBeforeMs = options.renewBeforeMs ?? 30 * day;
  }

  /** The current TLS material, creating or renewing it when needed. Safe to call from every replica. */
  async ensure(now = Date.now()): Promise<WebhookTls> {
    const secret = await this.read();
    if (this.options.external) {
      const tls = secret && fromSecret(secret);
      if (!tls) throw new Error(`waiting for Secret ${this.options.namespace}/${this.options.secretName} with ca.crt, tls.crt and tls.key (cert-manager)`);
      return tls;
    }
    if (!secret) return this.create();
    const tls = fromSecret(secret);
    if (tls && !this.needsRenewal(tls, now)) return tls;
    return this.renew(secret, tls === undefined);
  }

  /** Issues a new serving certificate now (operators can force a rotation). */
  async rotate(): Promise<WebhookTls> {
    const secret = await this.read();
    if (!secret) return this.create();
    return this.renew(secret, false);
  }

  private needsRenewal(tls: WebhookTls, now: number): boolean {
    if (tls.notAfter.getTime() - now < this.renewBeforeMs) return true;
    const cert = new X509Certificate(tls.certPem);
    return !this.options.dnsNames.every((name) => cert.checkHost(name) !== undefined) || !this.options.ipAddresses.every((ip) => cert.checkIP(ip) !== undefined);
  }

  private secretPath(): string {
    return `/api/v1/namespaces/${segment(this.options.namespace)}/secrets/${segment(this.options.secretName)}`;
  }

  private async read(): Promise<V1Secret | undefined> {
    try {
      return await this.client.request<V1Secret>('GET', this.secretPath());
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) return undefined;
      throw error;
    }
  }

  private async issue(ca: CertificateAuthority): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
    return issueCertificate(ca, {
      commonName: this.options.dnsNames[0] ?? 'entitlement-operator-webhook',
      dnsNames: this.options.dnsNames,
      ipAddresses: this.options.ipAddresses,
      usage: 'server',
      validForMs: this.servingValidityMs,
    });
  }

  private async create(): Promise<WebhookTls> {
    const ca = await createCertificateAuthority('entitlement-operator-webhook-ca', this.caValidityMs);
    const serving = await this.issue(ca);
    try {
      const created = await this.client.request<V1Secret>('POST', `/api/v1/namespaces/${segment(this.options.namespace)}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: this.options.secretName, namespace: this.options.namespace },
        type: 'kubernetes.io/tls',
        data: secretData(ca.certPem, ca.keyPem, serving.certPem, serving.keyPem),
      });
      this.log.info('created webhook certificate', { certificateStore: `${this.options.namespace}/${this.options.secretName}`, notAfter: serving.notAfter.toISOString() });
      return fromSecretOrThrow(created);
    } catch (error) {
      // Another replica created it first: use theirs.
      if (error instanceof ApiError && error.code === 409) return this.ensure();
      throw error;
    }
  }

  private async renew(secret: V1Secret, replaceCa: boolean): Promise<WebhookTls> {
    const data = secret.data ?? {};
    const caPem = decode(data['ca.crt']);
    const caKeyPem = decode(data['ca.key']);
    let ca: CertificateAuthority;
    if (replaceCa || !caPem || !caKeyPem) {
      ca = await createCertificateAuthority('entitlement-operator-webhook-ca', this.caValidityMs);
    } else {
      ca = await loadCertificateAuthority(caPem, caKeyPem);
    }
    const serving = await this.issue(ca);
    try {
      const updated = await this.client.request<V1Secret>('PUT', this.secretPath(), { ...secret, data: secretData(ca.certPem, ca.keyPem, serving.certPem, serving.keyPem) });
      this.log.info('renewed webhook certificate', { certificateStore: `${this.options.namespace}/${this.options.secretName}`, notAfter: serving.notAfter.toISOString() });
      return fromSecretOrThrow(updated);
    } catch (error) {
      // Another replica renewed it at the same time (resourceVersion conflict): use theirs.
      if (error instanceof ApiError && error.code === 409) return this.ensure();
      throw error;
    }
  }
}

function secretData(caPem: string, caKeyPem: string, certPem: string, keyPem: string): Record<string, string> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return { 'ca.crt': b64(caPem), 'ca.key': b64(caKeyPem), 'tls.crt': b64(certPem), 'tls.key': b64(keyPem) };
}

function decode(value: string | undefined): string | undefined {
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

function fromSecret(secret: V1Secret): WebhookTls | undefined {
  const data = secret.data ?? {};
  const caPem = decode(data['ca.crt']);
  const certPem = decode(data['tls.crt']);
  const keyPem = decode(data['tls.key']);
  if (!caPem || !certPem || !keyPem) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.checkIssued(new X509Certificate(caPem))) return undefined;
    return { caPem, certPem, keyPem, notAfter: new Date(cert.validTo), version: secret.metadata?.resourceVersion ?? '' };
  } catch {
    return undefined; // unreadable: renew
  }
}

function fromSecretOrThrow(secret: V1Secret): WebhookTls {
  const tls = fromSecret(secret);
  if (!tls) throw new Error('webhook certificate Secret is unreadable right after writing it');
  return tls;
}
