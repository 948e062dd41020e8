// The webhook's self-managed CA rotation, step by step in a clock the test moves, against a
// Secret kept in memory the way the API server keeps it (a resourceVersion per write).
import { X509Certificate } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { ApiError, type ApiClient } from '../../src/kube/api.js';
import { createLogger } from '../../src/observability/logger.js';
import { CertificateStore } from '../../src/webhook/certificates.js';

const minute = 60_000;
const hour = 60 * minute;
const day = 24 * hour;

/** One Secret, stored as the API server would: create, read, compare-and-swap update. */
class SecretApi implements ApiClient {
  secret: V1Secret | undefined;
  private version = 0;

  request<T>(method: string, _path: string, body?: unknown): Promise<T> {
    if (method === 'GET') return this.secret ? Promise.resolve(structuredClone(this.secret) as T) : Promise.reject(new ApiError(404, 'not found', '{}'));
    const next = structuredClone(body) as V1Secret;
    next.metadata = { ...next.metadata, resourceVersion: String(++this.version) };
    this.secret = next;
    return Promise.resolve(structuredClone(next) as T);
  }

  send(): Promise<string> {
    return Promise.reject(new Error('not used'));
  }
}

const trusted = (caPem: string): number => caPem.match(/BEGIN CERTIFICATE/g)?.length ?? 0;

it("drops the previous CA an overlap after the serving certificate was re-issued, even when that step came late", async () => {
  const api = new SecretApi();
  const store = new CertificateStore(api, { namespace: 'ns', secretName: 'tls', dnsNames: ['svc'], ipAddresses: [], caValidityMs: 30 * day, caRenewBeforeMs: 10 * day, caOverlapMs: 10 * minute }, createLogger({ level: 'error' }));
  const t0 = Date.now();
  const first = await store.ensure(t0);
  const firstCa = new X509Certificate(first.caPem);

  // Step 1: the CA is due for rotation; a new one joins the bundle, the old one still signs.
  const rotating = t0 + 21 * day;
  const step1 = await store.ensure(rotating);
  expect(trusted(step1.caPem)).toBe(2);
  expect(new X509Certificate(step1.certPem).checkIssued(firstCa)).toBe(true);

  // No replica ran for five hours; step 2 re-issues the serving certificate from the new CA.
  const late = rotating + 5 * hour;
  const step2 = await store.ensure(late);
  expect(new X509Certificate(step2.certPem).checkIssued(firstCa)).toBe(false);
  expect(trusted(step2.caPem)).toBe(2);

  // Replicas still serving the old certificate stay trusted for a whole overlap after step 2.
  expect(trusted((await store.ensure(late + minute)).caPem)).toBe(2);
  expect(trusted((await store.ensure(late + 9 * minute)).caPem)).toBe(2);
  expect(trusted((await store.ensure(late + 10 * minute)).caPem)).toBe(1);
});
