// Self-managed TLS for the webhook: a CA and a serving certificate kept in one Secret. Replicas
// starting together converge on one Secret (create, and on conflict read what won). The serving
// certificate is renewed from the same CA well before it expires. The CA itself rotates well
// before it expires, in three steps an overlap apart, so that the API server trusts whatever a
// replica serves at every moment (as cert-manager's webhook authority does):
//   1. a new CA joins the trusted bundle (`ca.crt` holds both); the old CA still signs what is served;
//   2. after the overlap (every API server has the new bundle), the serving certificate is
//      re-issued by the new CA;
//   3. an overlap after step 2 was taken (every replica serves its certificate), the old CA leaves
//      the bundle. Timed from step 2, not from step 1: step 2 may be taken late (no replica ran).
// Every step is one Secret update with a resourceVersion, so replicas racing each other converge.
import { X509Certificate } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { segment, type ApiClient } from '../kube/api.js';
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority, type CertificateAuthority } from '../pki/certificates.js';
import type { Logger } from '../observability/logger.js';
import { isConflict, isNotFound } from '../kube/errors.js';

const day = 24 * 60 * 60 * 1000;
/** When the current CA joined the bundle (RFC 3339), for the overlap of a CA rotation. */
const caRotatedAtAnnotation = 'marketplace.entitlements.io/ca-rotated-at';
/** When the serving certificate was re-issued by the new CA (step 2), for the overlap before step 3. */
const caReissuedAtAnnotation = 'marketplace.entitlements.io/ca-reissued-at';

export interface WebhookTls {
  /** Every CA the API server is to trust (PEM bundle): the current one, and during a CA rotation the previous one. */
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
  /** Rotate the CA when it has less than this left (a third of its validity). */
  caRenewBeforeMs?: number;
  /** How long each step of a CA rotation waits for every API server and replica to catch up (10 minutes). */
  caOverlapMs?: number;
  servingValidityMs?: number;
  /** Renew the serving certificate when it has less than this left. */
  renewBeforeMs?: number;
  /** Someone else (cert-manager) writes the Secret: only read it, never create or renew it. */
  external?: boolean;
}

/** What the Secret holds, parsed. */
interface Stored {
  /** Trusted CAs, the current (signing) one first. */
  cas: { pem: string; cert: X509Certificate }[];
  caKeyPem: string;
  serving: X509Certificate;
  /** Index in `cas` of the CA that issued the serving certificate. */
  servingIssuer: number;
  rotatedAt: number;
  /** When step 2 was taken; undefined before it, or when a release that did not record it took it. */
  reissuedAt: number | undefined;
}

type Step =
  | { kind: 'startCaRotation' }
  | { kind: 'servingFromNewCa' }
  | { kind: 'dropPreviousCa' }
  | { kind: 'renewServing' };

export class CertificateStore {
  private readonly caValidityMs: number;
  private readonly caRenewBeforeMs: number;
  private readonly caOverlapMs: number;
  private readonly servingValidityMs: number;
  private readonly renewBeforeMs: number;

  constructor(
    private readonly client: ApiClient,
    private readonly options: CertificateOptions,
    private readonly log: Logger,
  ) {
    this.caValidityMs = options.caValidityMs ?? 10 * 365 * day;
    this.caRenewBeforeMs = options.caRenewBeforeMs ?? this.caValidityMs / 3;
    this.caOverlapMs = options.caOverlapMs ?? 10 * 60 * 1000;
    this.servingValidityMs = options.servingValidityMs ?? 90 * day;
    this.renewBeforeMs = options.renewBeforeMs ?? 30 * day;
  }

  /**
   * The current TLS material, taking the step that is due (create, renew, a step of a CA
   * rotation). Safe to call from every replica. `secret` is the Secret as a watch last saw it;
   * without it, it is read.
   */
  async ensure(now = Date.now(), secret?: V1Secret): Promise<WebhookTls> {
    const current = secret ?? (await this.read());
    if (this.options.external) {
      const tls = current && fromSecret(current);
      if (!tls) throw new Error(`waiting for Secret ${this.options.namespace}/${this.options.secretName} with ca.crt, tls.crt and tls.key (cert-manager)`);
      return tls;
    }
    return this.advance(current, now, (stored) => this.due(stored, now));
  }

  /** Issues a new serving certificate now (operators can force a rotation). */
  async rotate(): Promise<WebhookTls> {
    return this.advance(await this.read(), Date.now(), () => ({ kind: 'renewServing' }));
  }

  /** Creates a missing Secret, replaces an unreadable one, or takes the step `pick` names (if any). */
  private async advance(secret: V1Secret | undefined, now: number, pick: (stored: Stored) => Step | undefined): Promise<WebhookTls> {
    if (!secret) return this.create();
    const stored = parse(secret);
    if (!stored) return this.replace(secret);
    const step = pick(stored);
    return step ? this.take(step, secret, stored, now) : fromSecretOrThrow(secret);
  }

  /** Which step is due now, if any. */
  private due(stored: Stored, now: number): Step | undefined {
    const current = stored.cas[0];
    if (!current) return undefined;
    const rotating = stored.cas.length > 1;
    if (rotating && stored.servingIssuer > 0) {
      // Step 2 waits out the overlap, unless the serving certificate expires first.
      if (now - stored.rotatedAt >= this.caOverlapMs || Date.parse(stored.serving.validTo) <= now) return { kind: 'servingFromNewCa' };
      return undefined;
    }
    if (rotating && now - (stored.reissuedAt ?? stored.rotatedAt + this.caOverlapMs) >= this.caOverlapMs) return { kind: 'dropPreviousCa' };
    if (!rotating && Date.parse(current.cert.validTo) - now < this.caRenewBeforeMs) return { kind: 'startCaRotation' };
    if (this.servingNeedsRenewal(stored.serving, now)) return { kind: 'renewServing' };
    return undefined;
  }

  private servingNeedsRenewal(cert: X509Certificate, now: number): boolean {
    if (Date.parse(cert.validTo) - now < this.renewBeforeMs) return true;
    return !this.options.dnsNames.every((name) => cert.checkHost(name) !== undefined) || !this.options.ipAddresses.every((ip) => cert.checkIP(ip) !== undefined);
  }

  private async take(step: Step, secret: V1Secret, stored: Stored, now: number): Promise<WebhookTls> {
    const current = stored.cas[0];
    if (!current) throw new Error('webhook certificate Secret has no CA');
    const data = secret.data ?? {};
    let annotations = secret.metadata?.annotations ?? {};
    let next: Record<string, string>;
    let trustedCas = stored.cas.length;
    switch (step.kind) {
      case 'startCaRotation': {
        const ca = await createCertificateAuthority('entitlement-operator-webhook-ca', this.caValidityMs);
        next = { ...data, ...encode({ 'ca.crt': pemBundle(ca.certPem, current.pem), 'ca.key': ca.keyPem }) };
        const earlier = Object.entries(annotations).filter(([key]) => key !== caReissuedAtAnnotation);
        annotations = { ...Object.fromEntries(earlier), [caRotatedAtAnnotation]: new Date(now).toISOString() };
        trustedCas = 2;
        break;
      }
      case 'dropPreviousCa':
        next = { ...data, ...encode({ 'ca.crt': current.pem }) };
        trustedCas = 1;
        break;
      case 'servingFromNewCa':
      case 'renewServing': {
        const serving = await this.issue(await loadCertificateAuthority(current.pem, stored.caKeyPem));
        next = { ...data, ...encode({ 'tls.crt': serving.certPem, 'tls.key': serving.keyPem }) };
        if (step.kind === 'servingFromNewCa') annotations = { ...annotations, [caReissuedAtAnnotation]: new Date(now).toISOString() };
        break;
      }
    }
    try {
      const { name, namespace, resourceVersion, labels } = secret.metadata ?? {};
      // The resourceVersion makes this a compare-and-swap: of replicas racing, one wins.
      const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, resourceVersion, labels, annotations }, type: secret.type, data: next };
      const updated = await this.client.request<V1Secret>('PUT', this.secretPath(), body);
      this.log.info('webhook certificate step taken', { certificateStore: `${this.options.namespace}/${this.options.secretName}`, step: step.kind, trustedCas });
      return fromSecretOrThrow(updated);
    } catch (error) {
      // Another replica took a step at the same time (resourceVersion conflict): use theirs.
      if (isConflict(error)) return this.ensure(now);
      throw error;
    }
  }

  private secretPath(): string {
    return `/api/v1/namespaces/${segment(this.options.namespace)}/secrets/${segment(this.options.secretName)}`;
  }

  private async read(): Promise<V1Secret | undefined> {
    try {
      return await this.client.request<V1Secret>('GET', this.secretPath());
    } catch (error) {
      if (isNotFound(error)) return undefined;
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

  private async freshData(): Promise<Record<string, string>> {
    const ca = await createCertificateAuthority('entitlement-operator-webhook-ca', this.caValidityMs);
    const serving = await this.issue(ca);
    return encode({ 'ca.crt': ca.certPem, 'ca.key': ca.keyPem, 'tls.crt': serving.certPem, 'tls.key': serving.keyPem });
  }

  private async create(): Promise<WebhookTls> {
    try {
      const created = await this.client.request<V1Secret>('POST', `/api/v1/namespaces/${segment(this.options.namespace)}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: this.options.secretName, namespace: this.options.namespace },
        type: 'kubernetes.io/tls',
        data: await this.freshData(),
      });
      this.log.info('created webhook certificate', { certificateStore: `${this.options.namespace}/${this.options.secretName}` });
      return fromSecretOrThrow(created);
    } catch (error) {
      // Another replica created it first: use theirs.
      if (isConflict(error)) return this.ensure();
      throw error;
    }
  }

  /** The Secret is unreadable (edited by hand, truncated): start again with a new CA. */
  private async replace(secret: V1Secret): Promise<WebhookTls> {
    try {
      const updated = await this.client.request<V1Secret>('PUT', this.secretPath(), { ...secret, data: await this.freshData() });
      this.log.warn('replaced an unreadable webhook certificate Secret', { certificateStore: `${this.options.namespace}/${this.options.secretName}` });
      return fromSecretOrThrow(updated);
    } catch (error) {
      if (isConflict(error)) return this.ensure();
      throw error;
    }
  }
}

function encode(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
}

function decode(value: string | undefined): string | undefined {
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

/** PEM certificates as one bundle, each on lines of its own (the API server rejects a run-together bundle). */
function pemBundle(...pems: string[]): string {
  return pems.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)).join('');
}

/** The certificates of a PEM bundle, in order. */
function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)) ?? [];
}

function parse(secret: V1Secret): Stored | undefined {
  const data = secret.data ?? {};
  const caKeyPem = decode(data['ca.key']);
  const certPem = decode(data['tls.crt']);
  if (!caKeyPem || !certPem || !decode(data['tls.key'])) return undefined;
  try {
    const cas = splitPem(decode(data['ca.crt']) ?? '').map((pem) => ({ pem, cert: new X509Certificate(pem) }));
    const serving = new X509Certificate(certPem);
    const servingIssuer = cas.findIndex((ca) => serving.checkIssued(ca.cert));
    if (cas.length === 0 || servingIssuer < 0) return undefined;
    const rotatedAt = Date.parse(secret.metadata?.annotations?.[caRotatedAtAnnotation] ?? '');
    const reissuedAt = Date.parse(secret.metadata?.annotations?.[caReissuedAtAnnotation] ?? '');
    return { cas, caKeyPem, serving, servingIssuer, rotatedAt: Number.isNaN(rotatedAt) ? 0 : rotatedAt, reissuedAt: Number.isNaN(reissuedAt) ? undefined : reissuedAt };
  } catch {
    return undefined; // unreadable: replaced
  }
}

/** What a replica serves and what the API server is to trust, from the Secret (this replica's or cert-manager's). */
function fromSecret(secret: V1Secret): WebhookTls | undefined {
  const data = secret.data ?? {};
  const caPem = decode(data['ca.crt']);
  const certPem = decode(data['tls.crt']);
  const keyPem = decode(data['tls.key']);
  if (!caPem || !certPem || !keyPem) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    if (!splitPem(caPem).some((pem) => cert.checkIssued(new X509Certificate(pem)))) return undefined;
    return { caPem, certPem, keyPem, notAfter: new Date(cert.validTo), version: secret.metadata?.resourceVersion ?? '' };
  } catch {
    return undefined;
  }
}

function fromSecretOrThrow(secret: V1Secret): WebhookTls {
  const tls = fromSecret(secret);
  if (!tls) throw new Error('webhook certificate Secret is unreadable right after writing it');
  return tls;
}
