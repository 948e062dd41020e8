// The fake's own surface: its control API for other processes, and what it does with bad input.
import { createMeteringClient } from '../../src/aws/clients.js';
import { registerUsage } from '../../src/aws/metering-operations.js';
import { fakeAwsForSuite, fakeCredentials, fakeSettings } from '../support/fake-aws.js';

const fake = fakeAwsForSuite({ allowUnsigned: true });

describe('fake AWS control API', () => {
  it('sets a product behaviour over HTTP, and lists and clears the calls', async () => {
    const put = await fetch(`${fake().url}/_fake/products/${encodeURIComponent('ctl/product')}`, { method: 'PUT', body: JSON.stringify({ error: 'DisabledApiException' }) });
    expect(put.status).toBe(200);
    const client = createMeteringClient(fakeSettings(fake()), fakeCredentials);
    await expect(registerUsage(client, { productCode: 'ctl/product', publicKeyVersion: 1, nonce: 'n' })).rejects.toMatchObject({ reason: 'DisabledApi' });

    const calls = (await (await fetch(`${fake().url}/_fake/calls`)).json()) as { operation: string; errorCode?: string }[];
    expect(calls.slice(-1)[0]).toMatchObject({ operation: 'RegisterUsage', errorCode: 'DisabledApiException' });
    expect(await (await fetch(`${fake().url}/_fake/products/${encodeURIComponent('ctl/product')}`, { method: 'DELETE' })).json()).toBe(true);
    await registerUsage(client, { productCode: 'ctl/product', publicKeyVersion: 1, nonce: 'n' });

    expect(await (await fetch(`${fake().url}/_fake/calls`, { method: 'DELETE' })).json()).toBeGreaterThan(0);
    expect(fake().state.calls).toEqual([]);
  });

  it('serves its public key', async () => {
    expect(await (await fetch(`${fake().url}/_fake/public-key`)).text()).toBe(fake().publicKeyPem);
  });

  it('answers bad control requests with 400 or 404', async () => {
    expect((await fetch(`${fake().url}/_fake/products/p`, { method: 'PUT', body: '{not json' })).status).toBe(400);
    expect((await fetch(`${fake().url}/_fake/nothing`)).status).toBe(404);
  });
});

describe('fake AWS wire protocol', () => {
  const post = (body: string, target = 'AWSMPMeteringService.RegisterUsage') =>
    fetch(fake().url, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target }, body });

  it('answers malformed JSON with SerializationException, as AWS does', async () => {
    const res = await post('{"ProductCode":');
    expect(res.status).toBe(400);
    expect(res.headers.get('x-amzn-errortype')).toBe('SerializationException');
    expect(await res.json()).toMatchObject({ __type: 'SerializationException' });
  });

  it('answers an unknown operation and an unknown STS action', async () => {
    expect(await (await post('{}', 'AWSMPMeteringService.Refund')).json()).toMatchObject({ __type: 'UnknownOperationException' });
    const sts = await fetch(fake().url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'Action=Nope&Version=2011-06-15' });
    expect(sts.status).toBe(400);
    expect(await sts.text()).toMatch(/<Code>InvalidAction<\/Code>/);
  });

  it('refuses bodies over 2 MB and keeps serving', async () => {
    expect((await post(`{"ProductCode":"${'x'.repeat(3 * 1024 * 1024)}"}`)).status).toBe(413);
    expect((await post('{"ProductCode":"ok","PublicKeyVersion":1}')).status).toBe(200);
  });
});
