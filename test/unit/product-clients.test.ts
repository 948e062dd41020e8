// ProductClients, the one way the controllers call AWS: each operation in a lane of its own, so an
// hour's MeterUsage records never hold back a starting pod's RegisterUsage.
import type { MarketplaceProduct } from '../../src/api/marketplace-product.js';
import { meterUsage, registerUsage } from '../../src/aws/metering-operations.js';
import { newNonce } from '../../src/aws/nonce.js';
import type { ApiClient } from '../../src/kube/api.js';
import { Metrics } from '../../src/observability/metrics.js';
import { fakeAwsForSuite, fakeProductClients } from '../support/fake-aws.js';
import { waitFor } from '../support/wait.js';

const fake = fakeAwsForSuite();
// Operator identity: no TokenRequest, so no API server is called.
const noApi: ApiClient = {
  request: () => Promise.reject(new Error('no API server in this test')),
  send: () => Promise.reject(new Error('no API server in this test')),
};
const pod = { namespace: 'shop', name: 'app-0', uid: 'uid-app-0' };

function product(productCode: string): MarketplaceProduct {
  return {
    apiVersion: 'marketplace.entitlements.io/v1alpha1',
    kind: 'MarketplaceProduct',
    metadata: { name: productCode, namespace: 'shop' },
    spec: { productCode, publicKeyVersion: 1, publicKey: { pem: fake().publicKeyPem }, identity: { mode: 'Operator' } },
  };
}

it('a registration does not wait behind MeterUsage calls, which have a lane of their own; each lane keeps its bound', async () => {
  fake().setBehaviour('slow-meter', { delayMs: 1_500 });
  const clients = fakeProductClients(fake(), noApi, new Metrics(), { RegisterUsage: 1, MeterUsage: 1 });
  const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
  const finished: string[] = [];
  const meters = ['pods', 'vcpu'].map((dimension) =>
    clients
      .run(product('slow-meter'), pod, 'MeterUsage', (client) => meterUsage(client, { productCode: 'slow-meter', timestamp: hour, usageDimension: dimension, usageQuantity: 1 }))
      .then(() => finished.push(`MeterUsage ${dimension}`)),
  );
  await waitFor('the first MeterUsage at the fake', () => Promise.resolve(fake().state.delayed.get('slow-meter') === 1 ? true : undefined), 10_000, 20);
  await clients.run(product('fast-code'), pod, 'RegisterUsage', (client) => registerUsage(client, { productCode: 'fast-code', publicKeyVersion: 1, nonce: newNonce() }));
  finished.push('RegisterUsage');
  // The second MeterUsage still waits in its lane (one at a time), not at the fake.
  expect(fake().state.delayed.get('slow-meter')).toBe(1);
  await Promise.all(meters);
  // One lane shared by both would have made the registration wait for both (1.5 s each).
  expect(finished).toEqual(['RegisterUsage', 'MeterUsage pods', 'MeterUsage vcpu']);
});

it('while a registration is under way, MeterUsage calls narrow to two in flight, and widen a second after it is done', async () => {
  fake().setBehaviour('narrow-meter', { delayMs: 400 });
  fake().setBehaviour('slow-register', { delayMs: 1_200 });
  const clients = fakeProductClients(fake(), noApi, new Metrics(), { RegisterUsage: 4, MeterUsage: 16 });
  const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
  const registering = clients.run(product('slow-register'), pod, 'RegisterUsage', (client) => registerUsage(client, { productCode: 'slow-register', publicKeyVersion: 1, nonce: newNonce() }));
  await waitFor('the registration at the fake', () => Promise.resolve(fake().state.delayed.get('slow-register') === 1 ? true : undefined), 10_000, 20);
  const meters = Array.from({ length: 20 }, (_, i) =>
    clients.run(product('narrow-meter'), pod, 'MeterUsage', (client) => meterUsage(client, { productCode: 'narrow-meter', timestamp: hour, usageDimension: `d${i}`, usageQuantity: 1 })),
  );
  const inFlight: number[] = [];
  for (let i = 0; i < 10; i++) {
    inFlight.push(fake().state.delayed.get('narrow-meter') ?? 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(Math.max(...inFlight)).toBe(2);
  await registering;
  await waitFor('the rest at once', () => Promise.resolve((fake().state.delayed.get('narrow-meter') ?? 0) > 2 ? true : undefined), 5_000, 10);
  await Promise.all(meters);
});
