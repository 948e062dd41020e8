// A local fake of AWS Marketplace Metering and STS for tests and demos. It speaks the real wire
// protocols (JSON 1.1 with X-Amz-Target; STS Query with XML answers), checks SigV4 signatures,
// signs RegisterUsage answers PS256, and can be told per product code to fail in the ways AWS
// does. It records every call. A small control API under /_fake/ lets another process steer it.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../../src/clock.js';
import { close, listen, readBody } from '../../src/net/servers.js';
import { handleMetering, type SigningKeys } from './metering.js';
import { AuthError, verifySigV4, type KnownCredentials, type SignedRequest } from './sigv4.js';
import { AwsFault, FakeState, type CallRecord, type Customer, type MeteringRecord, type ProductBehaviour } from './state.js';
import { handleSts, stsErrorXml, type StsAnswer, type StsOptions } from './sts.js';

export type { CallRecord, Customer, MeteringRecord, ProductBehaviour };

export interface FakeAwsOptions {
  /** PKCS#8 PEM of the RSA key that signs RegisterUsage answers; generated when absent. */
  signingKeyPem?: string;
  /** Accept requests without a SigV4 signature (for --anonymous clients). */
  allowUnsigned?: boolean;
  /** Long-term access keys the fake accepts, besides the temporary ones it issues. */
  credentials?: readonly KnownCredentials[];
  /** PEM public keys of the cluster's service-account token issuer, for AssumeRoleWithWebIdentity. */
  serviceAccountKeyPems?: readonly string[];
  audience?: string;
  accountId?: string;
  products?: Readonly<Record<string, ProductBehaviour>>;
  customers?: readonly Customer[];
  deniedRoles?: readonly string[];
  /** The clock of usage timestamps (the operator's SIMULATED_CLOCK in tests and demos). */
  clock?: Clock;
}

/** The access key the fake accepts unless told otherwise; documented for demos. */
export const fakeCredentials: KnownCredentials = { accessKeyId: 'AKIAFAKEMETERING0001', secretAccessKey: 'fake-secret-access-key-for-local-tests-only' };

export const demoCustomer: Customer = {
  registrationToken: 'demo-registration-token',
  customerIdentifier: 'demo-customer',
  customerAWSAccountId: '111122223333',
  productCode: 'demo-product',
};

const maxBodyBytes = 2 * 1024 * 1024;

export class FakeAws {
  readonly state: FakeState;
  readonly publicKeyPem: string;
  private readonly keys: SigningKeys;
  private readonly sts: StsOptions;
  private readonly server = http.createServer((req, res) => {
    void this.handle(req, res);
  });

  private constructor(private readonly options: FakeAwsOptions) {
    const published = options.signingKeyPem ? createPrivateKey(options.signingKeyPem) : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    this.keys = { published, rogue: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey };
    this.publicKeyPem = createPublicKey(published).export({ type: 'spki', format: 'pem' }).toString();
    this.state = new FakeState(options.credentials ?? [fakeCredentials], options.customers ?? [demoCustomer], options.clock);
    for (const [code, behaviour] of Object.entries(options.products ?? {})) this.state.behaviours.set(code, behaviour);
    this.sts = {
      serviceAccountKeys: (options.serviceAccountKeyPems ?? []).map((pem): KeyObject => createPublicKey(pem)),
      audience: options.audience ?? 'sts.amazonaws.com',
      accountId: options.accountId ?? '123456789012',
      deniedRoles: new Set(options.deniedRoles ?? []),
    };
  }

  static async start(options: FakeAwsOptions = {}, port = 0, host = '127.0.0.1'): Promise<FakeAws> {
    const fake = new FakeAws(options);
    await listen(fake.server, port, host);
    return fake;
  }

  get url(): string {
    const { address, port } = this.server.address() as AddressInfo;
    return `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
  }

  setBehaviour(productCode: string, behaviour: ProductBehaviour): void {
    this.state.behaviours.set(productCode, behaviour);
  }


  /** Recorded calls, optionally of one operation and outcome ('ok', or an error code). */
  calls(operation?: string, outcome?: string): CallRecord[] {
    return this.state.calls.filter(
      (c) => (operation === undefined || c.operation === operation) && (outcome === undefined || (outcome === 'ok' ? c.status === 200 : c.errorCode === outcome)),
    );
  }

  close(): Promise<void> {
    return close(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req, maxBodyBytes).catch(() => undefined);
    if (body === undefined) {
      res.writeHead(413).end();
      return;
    }
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
    if (url.pathname.startsWith('/_fake/')) {
      this.control(req.method ?? 'GET', url, body, res);
      return;
    }
    const target = req.headers['x-amz-target'];
    if (req.method === 'POST' && typeof target === 'string') await this.metering(target, url, req, body, res);
    else if (req.method === 'POST') await this.stsCall(url, req, body, res);
    else res.writeHead(404).end();
  }

  private async authenticate(req: http.IncomingMessage, url: URL, body: string): Promise<SignedRequest | undefined> {
    if (this.options.allowUnsigned && !req.headers.authorization) return undefined;
    return verifySigV4(req.method ?? 'POST', url, req.headers, body, (accessKeyId) => {
      const known = this.state.lookupCredentials(accessKeyId);
      if (known && 'expiration' in known && known.expiration.getTime() < Date.now()) {
        throw new AuthError('ExpiredTokenException', 'The security token included in the request is expired');
      }
      return known;
    });
  }

  /** Who AWS de-duplicates usage by: the role session of credentials it issued, else the access key. */
  private callerOf(caller: SignedRequest | undefined): string {
    if (!caller) return 'anonymous';
    const issued = this.state.issued.get(caller.accessKeyId);
    return issued ? `${issued.roleArn}/${issued.roleSessionName}` : caller.accessKeyId;
  }

  /** Usage records accepted, oldest first. */
  records(): MeteringRecord[] {
    return [...this.state.meteringRecords.values()];
  }

  private callerRecord(caller: SignedRequest | undefined): Pick<CallRecord, 'accessKeyId' | 'signingRegion' | 'roleArn' | 'roleSessionName' | 'boundPod'> {
    if (!caller) return {};
    const issued = this.state.issued.get(caller.accessKeyId);
    if (!issued) return { accessKeyId: caller.accessKeyId, signingRegion: caller.region };
    return { accessKeyId: caller.accessKeyId, signingRegion: caller.region, roleArn: issued.roleArn, roleSessionName: issued.roleSessionName, ...(issued.boundPod ? { boundPod: issued.boundPod } : {}) };
  }

  private async metering(target: string, url: URL, req: http.IncomingMessage, raw: string, res: http.ServerResponse): Promise<void> {
    const operation = target.startsWith('AWSMPMeteringService.') ? target.slice('AWSMPMeteringService.'.length) : target;
    let request: Record<string, unknown> = {};
    let caller: SignedRequest | undefined;
    try {
      caller = await this.authenticate(req, url, raw);
      const parsed: unknown = JSON.parse(raw || '{}');
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new AwsFault(400, 'SerializationException', 'body must be a JSON object');
      request = parsed as Record<string, unknown>;
      const answer = await handleMetering(operation, request, this.state, this.keys, this.callerOf(caller));
      this.state.record({ service: 'metering', operation, status: 200, ...productOf(request), ...this.callerRecord(caller), request });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(answer));
    } catch (error) {
      const fault = asFault(error);
      this.state.record({ service: 'metering', operation, status: fault.status, errorCode: fault.code, ...productOf(request), ...this.callerRecord(caller), request });
      res
        .writeHead(fault.status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': fault.code })
        .end(JSON.stringify({ __type: fault.code, message: fault.message }));
    }
  }

  private async stsCall(url: URL, req: http.IncomingMessage, raw: string, res: http.ServerResponse): Promise<void> {
    const params = new URLSearchParams(raw);
    const operation = params.get('Action') ?? '';
    const request = Object.fromEntries([...params].map(([k, v]) => [k, k === 'WebIdentityToken' ? '[REDACTED]' : v]));
    let caller: SignedRequest | undefined;
    try {
      // AssumeRoleWithWebIdentity is unsigned: the web-identity token is the credential.
      if (operation !== 'AssumeRoleWithWebIdentity') caller = await this.authenticate(req, url, raw);
      const answer = await handleSts(params, caller, this.state, this.sts);
      this.state.record({ service: 'sts', operation, status: 200, ...this.callerRecord(caller), ...roleOf(answer), request });
      res.writeHead(200, { 'content-type': 'text/xml' }).end(answer.xml);
    } catch (error) {
      const fault = asFault(error);
      this.state.record({ service: 'sts', operation, status: fault.status, errorCode: fault.code, ...this.callerRecord(caller), request });
      res.writeHead(fault.status, { 'content-type': 'text/xml' }).end(stsErrorXml(fault));
    }
  }

  private control(method: string, url: URL, body: string, res: http.ServerResponse): void {
    const json = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    };
    const product = /^\/_fake\/products\/(.+)$/.exec(url.pathname);
    try {
      if (url.pathname === '/_fake/calls' && method === 'GET') json(200, this.state.calls);
      else if (url.pathname === '/_fake/records' && method === 'GET') json(200, this.records());
      else if (url.pathname === '/_fake/calls' && method === 'DELETE') json(200, this.state.calls.splice(0).length);
      else if (url.pathname === '/_fake/public-key' && method === 'GET') res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(this.publicKeyPem);
      else if (product && method === 'PUT') {
        const behaviour = JSON.parse(body) as ProductBehaviour;
        this.setBehaviour(decodeURIComponent(product[1] ?? ''), behaviour);
        json(200, behaviour);
      } else if (product && method === 'DELETE') json(200, this.state.behaviours.delete(decodeURIComponent(product[1] ?? '')));
      else json(404, { message: 'unknown control endpoint' });
    } catch (error) {
      json(400, { message: error instanceof Error ? error.message : String(error) });
    }
  }
}

function productOf(request: Record<string, unknown>): { productCode?: string } {
  return typeof request.ProductCode === 'string' ? { productCode: request.ProductCode } : {};
}

function roleOf(answer: StsAnswer): Pick<CallRecord, 'roleArn' | 'roleSessionName' | 'boundPod'> {
  if (!answer.roleArn) return {};
  return { roleArn: answer.roleArn, ...(answer.roleSessionName ? { roleSessionName: answer.roleSessionName } : {}), ...(answer.boundPod ? { boundPod: answer.boundPod } : {}) };
}

function asFault(error: unknown): AwsFault {
  if (error instanceof AwsFault) return error;
  if (error instanceof AuthError) return new AwsFault(error.code === 'IncompleteSignature' ? 400 : 403, error.code, error.message);
  if (error instanceof SyntaxError) return new AwsFault(400, 'SerializationException', 'body is not valid JSON');
  return new AwsFault(500, 'InternalFailure', error instanceof Error ? error.message : String(error));
}
