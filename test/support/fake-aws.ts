// Starts the local fake AWS around a jest suite, with settings for SDK clients that reach it.
import { createStsClient } from '../../src/aws/clients.js';
import { Identities } from '../../src/aws/identity.js';
import { PodIdentity } from '../../src/aws/pod-identity.js';
import { ProductClients, type MeteringOperation } from '../../src/aws/product-clients.js';
import { resolveAwsSettings, type AwsSettings } from '../../src/aws/settings.js';
import type { ApiClient } from '../../src/kube/api.js';
import type { Metrics } from '../../src/observability/metrics.js';
import { FakeAws, fakeCredentials, type FakeAwsOptions } from '../fake-aws/server.js';

export { fakeCredentials };

export function fakeAwsForSuite(options: FakeAwsOptions | (() => FakeAwsOptions) = {}): () => FakeAws {
  let fake: FakeAws | undefined;
  beforeAll(async () => {
    fake = await FakeAws.start(typeof options === 'function' ? options() : options);
  });
  afterAll(async () => {
    await fake?.close();
  });
  return () => {
    if (!fake) throw new Error('the fake AWS did not start');
    return fake;
  };
}

/**
 * The operator's AWS clients (ProductClients) against the fake: its own identity the fake's
 * static credentials, a pod's through TokenRequests to `api`.
 */
export function fakeProductClients(fake: FakeAws, api: ApiClient, metrics: Metrics, concurrency: Record<MeteringOperation, number> = { RegisterUsage: 4, MeterUsage: 4 }): ProductClients {
  const settings = fakeSettings(fake);
  const identities = new Identities(fakeCredentials, createStsClient(settings, fakeCredentials), new PodIdentity(api, createStsClient(settings, 'anonymous')));
  return new ProductClients(settings, identities, metrics, concurrency);
}

/** Settings that send Metering and STS calls to the fake, ignoring the machine's environment. */
export function fakeSettings(fake: FakeAws, overrides: Partial<AwsSettings> = {}): AwsSettings {
  return { ...resolveAwsSettings({ region: 'us-east-1', meteringEndpoint: fake.url, stsEndpoint: fake.url, timeout: 5 }, {}), ...overrides };
}
