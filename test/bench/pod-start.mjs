// Benchmarks of the pod-start path, run against the build (npm run bench). Each figure comes with
// a baseline measured in the same process, and the ratio between them:
// - admission: the webhook's answer to an AdmissionReview, against a bare HTTPS server with the
//   same TLS setup that returns a fixed body (what TLS and HTTP cost on their own);
// - signature: the full RegisterUsage signature check (PS256, claims, nonce), against jose's bare
//   PS256 verification of the same token.
import https from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, compactVerify } from 'jose';
import { createCertificateAuthority, issueCertificate } from '../../dist/pki/certificates.js';
import { importPublicKey, verifyRegistrationSignature } from '../../dist/aws/signature.js';
import { WebhookServer } from '../../dist/webhook/server.js';

const requests = Number(process.env.BENCH_REQUESTS ?? 3000);
const verifications = Number(process.env.BENCH_VERIFICATIONS ?? 3000);

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { mean: sorted.reduce((s, x) => s + x, 0) / sorted.length, p50: at(0.5), p99: at(0.99) };
}
const fmt = (ms) => `${(ms * 1000).toFixed(0)} µs`;

async function admission() {
  const ca = await createCertificateAuthority('bench-ca', 3_600_000);
  const cert = await issueCertificate(ca, { commonName: 'bench-webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: 3_600_000 });
  const webhook = new WebhookServer(() => undefined);
  webhook.setCertificate(cert);
  const webhookPort = await webhook.listen(0, '127.0.0.1');
  const fixed = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u', allowed: true } });
  const bare = https.createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(fixed));
  });
  await new Promise((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.certPem });
  const body = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'bench', operation: 'CREATE', namespace: 'shop',
      object: { metadata: { name: 'p', labels: { 'marketplace.entitlements.io/product': 'x', app: 'paid' } }, spec: { containers: [{ name: 'app', image: 'registry.invalid/paid:1', resources: { requests: { cpu: '100m' } } }] } },
    },
  });
  const post = (port) =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const req = https.request({ host: '127.0.0.1', port, path: '/mutate-v1-pod', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(performance.now() - started));
      });
      req.on('error', reject);
      req.end(body);
    });
  const run = async (port) => {
    for (let i = 0; i < 200; i++) await post(port); // warm-up
    const samples = [];
    for (let i = 0; i < requests; i++) samples.push(await post(port));
    return stats(samples);
  };
  const base = await run(bare.address().port);
  const hook = await run(webhookPort);
  agent.destroy();
  await webhook.close();
  bare.close();
  console.log(`admission (${requests} sequential requests, keep-alive)`);
  console.log(`  baseline bare HTTPS : p50 ${fmt(base.p50)}  p99 ${fmt(base.p99)}  mean ${fmt(base.mean)}`);
  console.log(`  webhook             : p50 ${fmt(hook.p50)}  p99 ${fmt(hook.p99)}  mean ${fmt(hook.mean)}`);
  console.log(`  ratio webhook/bare  : p50 ${(hook.p50 / base.p50).toFixed(2)}  mean ${(hook.mean / base.mean).toFixed(2)}`);
}

async function signature() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const key = importPublicKey(pem);
  const expected = { productCode: 'bench-product', publicKeyVersion: 1, nonce: 'n'.repeat(43) };
  const payload = new TextEncoder().encode(JSON.stringify({ ...expected, iat: Math.floor(Date.now() / 1000) }));
  const token = await new CompactSign(payload).setProtectedHeader({ alg: 'PS256', typ: 'JWT' }).sign(privateKey);
  const time = async (label, fn) => {
    for (let i = 0; i < 200; i++) await fn();
    const started = performance.now();
    for (let i = 0; i < verifications; i++) await fn();
    const ms = performance.now() - started;
    return { label, perOp: ms / verifications, perSecond: (verifications / ms) * 1000 };
  };
  const base = await time('jose compactVerify', () => compactVerify(token, key, { algorithms: ['PS256'] }));
  const full = await time('verifyRegistrationSignature', () => verifyRegistrationSignature(token, key, expected));
  console.log(`signature (${verifications} verifications, RSA-2048 PS256)`);
  for (const r of [base, full]) console.log(`  ${r.label.padEnd(28)}: ${fmt(r.perOp)} each, ${r.perSecond.toFixed(0)}/s`);
  console.log(`  ratio full/bare            : ${(full.perOp / base.perOp).toFixed(2)}`);
}

await admission();
await signature();
