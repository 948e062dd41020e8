// A POST to a local HTTPS server that trusts `ca`: the webhook's tests send AdmissionReviews so.
import https from 'node:https';

export function postHttps(target: { port: number; ca: string; path?: string }, body: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = https.request({ host: '127.0.0.1', port: target.port, path: target.path ?? '/mutate-v1-pod', method: 'POST', ca: target.ca, headers }, (res) => {
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
