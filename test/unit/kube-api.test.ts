// The operator's Kubernetes client: kubeconfig and in-cluster configuration, JSON requests and
// their errors, and watch streams whose lines arrive split across chunks.
import http from 'node:http';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ApiError, currentNamespace, fromKubeconfig, fromKubeconfigFile, inCluster, KubeClient, readKubeconfig } from '../../src/kube/api.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'kube-api-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function kubeconfig(name: string, user: string, cluster = 'server: https://10.9.8.7:6443'): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {${cluster}}}]
users: [{name: u, user: {${user}}}]
`,
  );
  return file;
}

describe('client configuration', () => {
  it('reads a kubeconfig: server, CA and client certificate (data or files relative to it), tokens', async () => {
    writeFileSync(path.join(dir, 'ca.pem'), 'CA-PEM');
    writeFileSync(path.join(dir, 'token'), 'file-token\n');
    const withFiles = fromKubeconfigFile(kubeconfig('files', 'tokenFile: token', 'server: https://10.9.8.7:6443/, certificate-authority: ca.pem, tls-server-name: api.internal'));
    expect(withFiles).toMatchObject({ server: 'https://10.9.8.7:6443', tlsServerName: 'api.internal' });
    expect(String(withFiles.ca)).toBe('CA-PEM');
    expect(await withFiles.authorization?.()).toEqual({ authorization: 'Bearer file-token' });

    const certData = Buffer.from('CERT').toString('base64');
    const keyData = Buffer.from('KEY').toString('base64');
    const withData = fromKubeconfigFile(kubeconfig('data', `client-certificate-data: ${certData}, client-key-data: ${keyData}`, 'server: https://h:1, insecure-skip-tls-verify: true'));
    expect([String(withData.cert), String(withData.key), withData.insecureSkipTlsVerify, withData.authorization]).toEqual(['CERT', 'KEY', true, undefined]);

    const withToken = fromKubeconfigFile(kubeconfig('token', 'token: inline-token'));
    expect(await withToken.authorization?.()).toEqual({ authorization: 'Bearer inline-token' });
  });

  it('names what is missing in a kubeconfig', () => {
    const file = path.join(dir, 'no-context');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\nclusters: []\n');
    expect(() => fromKubeconfigFile(file)).toThrow(`${file}: no current context`);
  });

  it('merges a KUBECONFIG list as kubectl does: the first to name an entry or set the context wins, paths stay relative to their own file, missing files are skipped', async () => {
    const a = path.join(dir, 'merge-a');
    const b = path.join(mkdtempSync(path.join(dir, 'merge-b-')), 'config');
    writeFileSync(path.join(path.dirname(b), 'b-ca.pem'), 'B-CA');
    writeFileSync(a, `current-context: work
contexts: [{name: work, context: {cluster: shared, user: me, namespace: team-a}}]
users: [{name: me, user: {token: from-a}}]
`);
    writeFileSync(b, `current-context: other
contexts: [{name: work, context: {cluster: elsewhere, user: me}}]
clusters: [{name: shared, cluster: {server: 'https://b.example:6443', certificate-authority: b-ca.pem}}]
users: [{name: me, user: {token: from-b}}]
`);
    const config = fromKubeconfig(readKubeconfig([a, path.join(dir, 'missing'), b]));
    expect([config.server, String(config.ca), await config.authorization?.()]).toEqual(['https://b.example:6443', 'B-CA', { authorization: 'Bearer from-a' }]);

    const saved = process.env.KUBECONFIG;
    try {
      process.env.KUBECONFIG = [a, b].join(path.delimiter);
      expect(currentNamespace()).toBe('team-a');
    } finally {
      if (saved === undefined) Reflect.deleteProperty(process.env, 'KUBECONFIG');
      else process.env.KUBECONFIG = saved;
    }
    expect(() => readKubeconfig([path.join(dir, 'missing')])).toThrow(/no kubeconfig: .*missing not found/);
  });

  it('exec credentials (as aws eks get-token gives) through client-node, also when two files name the same user', async () => {
    const bin = path.join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const plugin = path.join(bin, 'get-token');
    writeFileSync(plugin, `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token"}}'\n`);
    chmodSync(plugin, 0o755);
    const first = path.join(dir, 'exec-first');
    const second = path.join(dir, 'exec-second');
    writeFileSync(first, `current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: 'https://10.9.8.7:6443'}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ${plugin}, interactiveMode: Never}}}]
`);
    writeFileSync(second, 'users: [{name: u, user: {token: not-this-one}}]\n');
    const config = fromKubeconfig(readKubeconfig([first, second]));
    expect(await config.authorization?.()).toEqual({ authorization: 'Bearer exec-token' });
  });

  it('in a cluster: the service host (IPv6 in brackets), the CA and the mounted token', async () => {
    const mount = mkdtempSync(path.join(dir, 'sa-'));
    writeFileSync(path.join(mount, 'ca.crt'), 'CLUSTER-CA');
    writeFileSync(path.join(mount, 'token'), 'sa-token');
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    try {
      process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
      process.env.KUBERNETES_SERVICE_PORT = '443';
      const config = inCluster(mount);
      expect([config.server, String(config.ca), await config.authorization?.()]).toEqual(['https://[fd00::1]:443', 'CLUSTER-CA', { authorization: 'Bearer sa-token' }]);
    } finally {
      for (const [key, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (value === undefined) Reflect.deleteProperty(process.env, key);
        else process.env[key] = value;
      }
    }
  });
});

describe('KubeClient', () => {
  let server: http.Server;
  let client: KubeClient;
  const seen: { method: string; url: string; auth: string | undefined; type: string | undefined; body: string }[] = [];
  let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void = (_req, res) => res.end('{}');

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, type: req.headers['content-type'], body });
        handler(req, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, authorization: () => Promise.resolve({ authorization: 'Bearer t' }) });
  });
  afterAll(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends JSON with the content type asked for and the authorization, and parses the answer', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"Pod"}');
    expect(await client.request('PATCH', '/api/v1/namespaces/a/pods/b', { metadata: {} }, 'application/strategic-merge-patch+json')).toEqual({ kind: 'Pod' });
    expect(seen.at(-1)).toEqual({ method: 'PATCH', url: '/api/v1/namespaces/a/pods/b', auth: 'Bearer t', type: 'application/strategic-merge-patch+json', body: '{"metadata":{}}' });
  });

  it("turns an answer other than 2xx into an ApiError with the code and the Status's message", async () => {
    handler = (_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end('{"kind":"Status","message":"the object has been modified"}');
    const error = await client.request('PUT', '/apis/x/v1/things/a?dryRun=All', {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: 409, message: 'HTTP 409 from PUT /apis/x/v1/things/a: the object has been modified' });
  });

  it('streams watch events whose lines are split across chunks, and ends when the server ends', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"MODI');
      setTimeout(() => res.end('FIED","object":{"metadata":{"name":"b"}}}\n\n'), 20);
    };
    const events: string[] = [];
    await client.watch('/api/v1/pods?watch=1', (type, object) => events.push(`${type} ${(object.metadata as { name: string }).name}`), new AbortController().signal);
    expect(events).toEqual(['ADDED a', 'MODIFIED b']);
  });

  it('a watch answered 410 Gone rejects with that code; an aborted watch resolves', async () => {
    handler = (_req, res) => res.writeHead(410).end('{"kind":"Status","message":"too old resource version"}');
    await expect(client.watch('/api/v1/pods?watch=1', () => undefined, new AbortController().signal)).rejects.toMatchObject({ code: 410 });
    handler = (_req, res) => res.writeHead(200).write('\n'); // held open
    const abort = new AbortController();
    const watching = client.watch('/api/v1/pods?watch=1', () => undefined, abort.signal);
    setTimeout(() => {
      abort.abort();
    }, 50);
    await expect(watching).resolves.toBeUndefined();
  });
});
