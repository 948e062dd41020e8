// Starts the local fake AWS around a jest suite, with settings for SDK clients that reach it.
import { resolveAwsSettings, type AwsSettings } from '../../src/aws/settings.js';
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

/** Settings that send Metering and STS calls to the fake, ignoring the machine's environment. */
export function fakeSettings(fake: FakeAws, overrides: Partial<AwsSettings> = {}): AwsSettings {
  return { ...resolveAwsSettings({ region: 'us-east-1', meteringEndpoint: fake.url, stsEndpoint: fake.url, timeout: 5 }, {}), ...overrides };
}
