// The admission webhook over HTTPS: the gate mutation, and bad requests answered 400 while the
// server keeps serving.
import https from 'node:https';
import tls from 'node:tls';
import { createCertificateAuthority, issueCertificate } from '../../src/pki/certificates.js';
import { Metrics } from '../../src/observability/metrics.js';
import { gatePatch } from '../../src/webhook/pod-gate.js';
import { WebhookServer } from '../../src/webhook/server.js';
import { postHttps } from '../support/https-post.js';

const gate = 'marketplace.entitlements.io/entitlement';
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
  }, new Set(['kube-system', 'operator-ns']));
  server.setCertificate(await issueCertificate(ca, { commonName: 'webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: 3_600_000 }));
  port = await server.listen(0, '127.0.0.1');
});
afterAll(async () => server.close());

function post(body: string | Buffer, path = '/mutate-v1-pod'): Promise<{ status: number; body: string }> {
  return postHttps({ port, ca: caPem, path }, body);
}

const review = (object: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u-1', operation: 'CREATE', namespace: 'ns', object, ...extra } });

const exempt: ReadonlySet<string> = new Set(['kube-system', 'operator-ns']);

describe('gatePatch', () => {
  const gateList = { op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] };
  it('adds the gate list, appends to existing gates, and adds no second gate to a pod made with it', () => {
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: {} } }, exempt)).toEqual([gateList]);
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: { schedulingGates: [{ name: 'other' }] } } }, exempt)).toEqual([{ op: 'add', path: '/spec/schedulingGates/-', value: { name: gate } }]);
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label }, spec: { schedulingGates: [{ name: gate }] } } }, exempt)).toBeUndefined();
  });

  it("removes verdicts and every other operator annotation a new pod brought (a forged 'Entitled', a chosen check id), keeping a recheck request", () => {
    const annotations = {
      'marketplace.entitlements.io/status': 'Entitled',
      'marketplace.entitlements.io/registered-at': '2026-01-01T00:00:00Z',
      'marketplace.entitlements.io/check': 'chosen',
      'marketplace.entitlements.io/recheck': 'now',
      'team.example/owner': 'a',
    };
    const removals = [
      { op: 'remove', path: '/metadata/annotations/marketplace.entitlements.io~1status' },
      { op: 'remove', path: '/metadata/annotations/marketplace.entitlements.io~1registered-at' },
      { op: 'remove', path: '/metadata/annotations/marketplace.entitlements.io~1check' },
    ];
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: label, annotations }, spec: {} } }, exempt)).toEqual([gateList, ...removals]);
    // Made with the gate already: the forged annotations still go.
    const gatedAlready = { metadata: { labels: label, annotations }, spec: { schedulingGates: [{ name: gate }] } };
    expect(gatePatch({ uid: 'u', object: gatedAlready }, exempt)).toEqual(removals);
  });

  it("leaves unlabelled pods, other operations and the exempt namespaces (the operator's actual one) alone", () => {
    expect(gatePatch({ uid: 'u', object: { metadata: { labels: { app: 'x' } }, spec: {} } }, exempt)).toBeUndefined();
    expect(gatePatch({ uid: 'u', operation: 'UPDATE', object: { metadata: { labels: label }, spec: {} } }, exempt)).toBeUndefined();
    expect(gatePatch({ uid: 'u', namespace: 'operator-ns', object: { metadata: { labels: label }, spec: {} } }, exempt)).toBeUndefined();
    expect(gatePatch({ uid: 'u', namespace: 'team', object: { metadata: { labels: label }, spec: {} } }, exempt)).toEqual([gateList]);
  });
});

describe('WebhookServer', () => {
  it('answers an AdmissionReview with the JSON Patch', async () => {
    const res = await post(review({ metadata: { name: 'p', labels: label }, spec: { containers: [] } }));
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body) as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } };
    expect(answer).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-1', allowed: true, patchType: 'JSONPatch' } });
    expect(JSON.parse(Buffer.from(answer.response.patch, 'base64').toString())).toEqual([{ op: 'add', path: '/spec/schedulingGates', value: [{ name: gate }] }]);
  });

  it.each([
    ['not JSON', '{"apiVersion":', /body is not JSON/],
    ['a JSON array', '[1,2]', /not a JSON object/],
    ['another kind', JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }), /not an admission\.k8s\.io\/v1 AdmissionReview/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /has no request/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: {} } }), /has no request\.uid/],
    ['an object that is a string', review('pod'), /request\.object is not an object/],
    ['gates that are no list', review({ metadata: { labels: label }, spec: { schedulingGates: 'x' } }), /schedulingGates is not a list of \{name\}/],
    ['labels that are no map of strings', review({ metadata: { labels: { 'marketplace.entitlements.io/product': 1 } }, spec: {} }), /metadata\.labels is not a map of strings/],
    ['a spec that is a list', review({ metadata: { labels: label }, spec: [] }), /request\.object\.spec is not an object/],
    ['4 MB', Buffer.alloc(4 * 1024 * 1024, 'a'), /body larger than/],
  ])('answers %s with 400 and keeps serving', async (_name, body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(res.body).toMatch(message);
    expect((await post(review({ metadata: { labels: label }, spec: {} }))).status).toBe(200);
  });

  it("keeps an idle connection open past Node's default 5 s, so the API server's reuse of it (up to 90 s idle) never meets a reset", async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: caPem });
    const send = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = https.request({ agent, host: '127.0.0.1', port, method: 'POST', path: '/mutate-v1-pod', headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket });
          });
        });
        req.on('error', reject);
        req.end(review({ metadata: { labels: label }, spec: {} }));
      });
    try {
      expect(await send()).toEqual({ status: 200, reused: false });
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      expect(await send()).toEqual({ status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  }, 20_000);

  it('gives up the body budget of clients that go away, waiting or reading, and keeps answering', async () => {
    // Two clients that declare the largest body and send none: the first holds the budget, the
    // second waits its turn. Both go away; a large request after them (one that fits the budget
    // only if neither is still counted) is answered.
    const declareAndStall = (): Promise<tls.TLSSocket> =>
      new Promise((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem }, () => {
          socket.write(`POST /mutate-v1-pod HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${3 * 1024 * 1024}\r\n\r\n{`);
          resolve(socket);
        });
      });
    const holding = await declareAndStall();
    const waiting = await declareAndStall();
    await new Promise((resolve) => setTimeout(resolve, 100));
    waiting.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    holding.destroy();
    const large = review({ metadata: { labels: label, annotations: { 'team.example/blob': 'x'.repeat(1.5 * 1024 * 1024) } }, spec: {} });
    const res = await post(large);
    expect(res.status).toBe(200);
  });

  it('answers other paths 404, and counts requests by outcome', async () => {
    expect((await post('{}', '/validate')).status).toBe(404);
    const text = await metrics.registry.getSingleMetricAsString('entitlement_webhook_requests_total');
    expect(text).toMatch(/outcome="gated"\} \d+/);
    expect(text).toMatch(/outcome="bad_request"\} 10/);
    expect(text).toMatch(/outcome="not_found"\} 1/);
  });
});
