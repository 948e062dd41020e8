// The admission thread as the operator runs it (the built worker, its own small heap): a burst of
// the largest pods the API server accepts is answered, one budget of bodies at a time, and the
// thread survives it. Its heap was once 16 MiB with no bound on bodies in flight: a few such
// pods at once ended the thread, and with it the operator.
import { createCertificateAuthority, issueCertificate } from '../../src/pki/certificates.js';
import { postHttps } from '../support/https-post.js';

interface Thread {
  setCertificate(certificate: { certPem: string; keyPem: string }): Promise<void>;
  listen(port: number, host?: string): Promise<number>;
  close(): Promise<void>;
  readonly certificateLoaded: boolean;
}
type ThreadClass = new (observe: (outcome: string, seconds: number) => void, exempt: readonly string[]) => Thread;

const { AdmissionThread } = (await import(new URL('../../dist/webhook/admission-thread.js', import.meta.url).href)) as { AdmissionThread: ThreadClass };

/** An AdmissionReview of a labelled pod with `keys` annotations: about 3 MiB of JSON, many small objects once parsed. */
function largeReview(uid: string, keys: number): string {
  const annotations = Object.fromEntries(Array.from({ length: keys }, (_, i) => [`team.example/key-${i}`, `value-${i}-${'x'.repeat(16)}`]));
  const object = { metadata: { name: uid, labels: { 'marketplace.entitlements.io/product': 'p' }, annotations }, spec: { containers: [{ name: 'c', image: 'i' }] } };
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid, operation: 'CREATE', namespace: 'team', object } });
}


it('answers 12 pods of about 3 MiB at once, each with the gate, and keeps running', async () => {
  const outcomes: string[] = [];
  const thread = new AdmissionThread((outcome) => outcomes.push(outcome), ['kube-system', 'operator-ns']);
  try {
    const ca = await createCertificateAuthority('test', 3_600_000);
    await thread.setCertificate(await issueCertificate(ca, { commonName: 'webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: 3_600_000 }));
    const port = await thread.listen(0, '127.0.0.1');
    const bodies = Array.from({ length: 12 }, (_, i) => largeReview(`u-${i}`, 55_000));
    expect(Buffer.byteLength(bodies[0] ?? '')).toBeGreaterThan(2.9 * 1024 * 1024);
    const answers = await Promise.all(bodies.map((body) => postHttps({ port, ca: ca.certPem }, body)));
    expect(answers.map((a) => a.status)).toEqual(bodies.map(() => 200));
    expect(answers.map((a) => (JSON.parse(a.body) as { response: { uid: string; patchType?: string } }).response)).toEqual(bodies.map((_, i) => expect.objectContaining({ uid: `u-${i}`, patchType: 'JSONPatch' }) as unknown));
    expect(thread.certificateLoaded).toBe(true);
    expect(outcomes.filter((o) => o === 'gated')).toHaveLength(12);
  } finally {
    await thread.close();
  }
});
