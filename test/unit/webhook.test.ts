// The admission webhook over HTTPS: the gate mutation, and bad requests answered 400 while the
// server keeps serving.
import https from 'node:https';
import { createCertificateAuthority, issueCertificate } from '../../src/pki/certificates.js';
import { Metrics } from '../../src/observability/metrics.js';
import { gatePatch } from '../../src/webhook/pod-gate.js';
import { WebhookServer } from '../../src/webhook/server.js';

const gate = 'marketplace.entitlements.io/entitlement';
const nonceKey = 'marketplace.entitlements.io/nonce';
const label = { 'marketplace.entitlements.io/product': 'p' };
let server: WebhookServer;
let metrics: Metrics;
let port: number;
let caPem: string;

beforeAll(async () => {
  const ca = await createCertificateAuthority('test', 3_600_000);
  caPem = ca.certPem;
  metrics = new Metrics();
  server = new WebhookServer((outcome, seconds) => {
    metrics.observeAdmission(outcome, seconds);
  });
  server.setCertificate(await issueCertificate(ca, { commonName: 'webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: 3_600_000 }));
  port = await server.listen(0, '127.0.0.1');
});
afterAll(async () => server.close());

function post(body: string | Buffer, path = '/mutate-v1-pod'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method: 'POST', ca: caPem, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const review = (object: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u-1', operation: 'CREATE', namespace: 'ns', object, ...extra } });

describe('gatePatch', () => {
  const nonceOnly = { op: 'add', path: '/metadata/annotations', value: { [nonceKey]: 'n-1' } };
  it('adds the gate list, appends to existing gates, and adds no second gate to a pod made with it', () => {
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: {} } }, 'n-1')).toEqual([{ op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] }, nonceOnly]);
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: { schedulingGates: [{ name: 'other' }] } } }, 'n-1')).toEqual([{ op: 'add', path: '/spec/schedulingGates/-', value: { name: gate } }, nonceOnly]);
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: { schedulingGates: [{ name: gate }] } } }, 'n-1')).toEqual([nonceOnly]);
  });

  it("writes the registration's nonce with the gate, replacing one the pod brought (an escaped JSON Pointer)", () => {
    const pod = { metadata: { labels: label, annotations: { [nonceKey]: 'chosen-by-the-user', keep: 'me' } }, spec: {} };
    expect(gatePatch({ uid: 'u', object: pod }, 'n-2')).toEqual([
      { op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] },
      { op: 'add', path: '/metadata/annotations/marketplace.entitlements.io~1nonce', value: 'n-2' },
    ]);
  });

  it("removes verdicts and other operator annotations a new pod brought (a forged 'Entitled'), keeping a recheck request", () => {
    const annotations = {
      'marketplace.entitlements.io/status': 'Entitled',
      'marketplace.entitlements.io/registered-at': '2026-01-01T00:00:00Z',
      'marketplace.entitlements.io/recheck': 'now',
      'team.example/owner': 'a',
    };
    const removals = [
      { op: 'remove', path: '/metadata/annotations/marketplace.entitlements.io~1status' },
      { op: 'remove', path: '/metadata/annotations/marketplace.entitlements.io~1registered-at' },
    ];
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label, annotations }, spec: {} } }, 'n-3')).toEqual([
      { op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] },
      ...removals,
      { op: 'add', path: '/metadata/annotations/marketplace.entitlements.io~1nonce', value: 'n-3' },
    ]);
    // Made with the gate already, and a nonce of its choosing: the forged annotations still go, and the nonce is the operator's.
    const gatedAlready = { metadata: { labels: label, annotations: { ...annotations, [nonceKey]: 'chosen' } }, spec: { schedulingGates: [{ name: gate }] } };
    expect(gatePatch({ uid: 'u', object: gatedAlready }, 'n-4')).toEqual([...removals, { op: 'add', path: '/metadata/annotations/marketplace.entitlements.io~1nonce', value: 'n-4' }]);
  });

  it('leaves unlabelled pods and other operations alone', () => {
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: { app: 'x' } }, spec: {} } }, 'n')).toBeUndefined();
    expect(gatePatch({ uid: 'u', operation: 'UPDATE', object: { metadata: { labels: label }, spec: {} } }, 'n')).toBeUndefined();
  });
});

describe('WebhookServer', () => {
  it('answers an AdmissionReview with the JSON Patch', async () => {
    const res = await post(review({ metadata: { name: 'p', labels: label }, spec: { containers: [] } }));
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body) as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } };
    expect(answer).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-1', allowed: true, patchType: 'JSONPatch' } });
    expect(JSON.parse(Buffer.from(answer.response.patch, 'base64').toString())).toEqual([
      { op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] },
      { op: 'add', path: '/metadata/annotations', value: { [nonceKey]: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) as unknown } },
    ]);
  });

  it.each([
    ['not JSON', '{"apiVersion":', /body is not JSON/],
    ['a JSON array', '[1,2]', /not a JSON object/],
    ['another kind', JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }), /not an admission\.k8s\.io\/v1 AdmissionReview/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /has no request/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: {} } }), /has no request\.uid/],
    ['an object that is a string', review('pod'), /request\.object is not an object/],
    ['4 MB', Buffer.alloc(4 * 1024 * 1024, 'a'), /body larger than/],
  ])('answers %s with 400 and keeps serving', async (_name, body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(res.body).toMatch(message);
    expect((await post(review({ metadata: { labels: label }, spec: {} }))).status).toBe(200);
  });

  it('answers other paths 404, and counts requests by outcome', async () => {
    expect((await post('{}', '/validate')).status).toBe(404);
    const text = await metrics.registry.getSingleMetricAsString('entitlement_webhook_requests_total');
    expect(text).toMatch(/outcome="gated"\} \d+/);
    expect(text).toMatch(/outcome="bad_request"\} 7/);
    expect(text).toMatch(/outcome="not_found"\} 1/);
  });
});
