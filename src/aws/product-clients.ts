// The Metering clients behind a product's AWS calls: the identity its identity.mode names (the
// pod's own, or the operator's), a client per identity and region, a bound on concurrent AWS
// calls for each operation, and per-operation metrics. Registration and metering both call AWS
// through here, each in a lane of its own: at the hour's end thousands of MeterUsage records go
// out (in Pod mode each with its TokenRequest and STS exchange), and a pod that starts then must
// not wait behind them for its RegisterUsage, nor behind their work on the event loop: while
// registrations are under way (and for a second after the last), metering narrows to two calls
// in flight.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { MarketplaceProduct } from '../api/marketplace-product.js';
import { PriorityGate } from '../runtime/priority.js';
import { Semaphore } from '../runtime/semaphore.js';
import type { Metrics } from '../observability/metrics.js';
import { createMeteringClient, createRequestHandler, type ClientCredentials } from './clients.js';
import { AwsCallError } from './errors.js';
import type { Identities } from './identity.js';
import type { PodRef } from './pod-identity.js';
import type { AwsSettings } from './settings.js';

/** The operations called through ProductClients, each with a concurrency bound of its own. */
export type MeteringOperation = 'RegisterUsage' | 'MeterUsage';

/** A MeterUsage call waits its turn behind registrations, unless its hour has little of AWS's window left. */
export type Urgency = 'deferrable' | 'pressing';

/** MeterUsage calls (with their identities) in flight while registrations are under way, and for a second after the last. */
const meteringWhileRegistering = 2;
const registrationsQuietMs = 1_000;

export class ProductClients {
  private readonly handler: NodeHttpHandler;
  private readonly lanes: Record<MeteringOperation, Semaphore>;
  private readonly priority = new PriorityGate(meteringWhileRegistering, registrationsQuietMs);
  // Clients by credentials provider, then region; anonymous and default-chain ones by region.
  private readonly providerClients = new WeakMap<AwsCredentialIdentityProvider, Map<string, MarketplaceMeteringClient>>();
  private readonly sharedClients = new Map<string, MarketplaceMeteringClient>();
  // Credentials given as values (a pod's own, or static keys), for the call made with them: the
  // clients of perCallClients sign with them.
  private readonly callCredentials = new AsyncLocalStorage<AwsCredentialIdentity>();
  private readonly perCallClients = new Map<string, MarketplaceMeteringClient>();
  private readonly perCallCredentials = perCallProvider(this.callCredentials);

  constructor(
    private readonly settings: AwsSettings,
    private readonly identities: Identities,
    private readonly metrics: Metrics,
    /** How many calls of each operation (with their identities) may be in flight at once. */
    concurrency: Record<MeteringOperation, number>,
  ) {
    this.handler = createRequestHandler(settings);
    this.lanes = { RegisterUsage: new Semaphore(concurrency.RegisterUsage), MeterUsage: new Semaphore(concurrency.MeterUsage) };
  }

  /**
   * Runs `call` with the client of the product's identity for `pod` (the pod is needed in Pod
   * mode). Once `signal` aborts, a call still waiting its turn leaves its lane at once, and one
   * waiting for its identity is not made.
   */
  run<T>(product: MarketplaceProduct, pod: PodRef, operation: MeteringOperation, call: (client: MarketplaceMeteringClient) => Promise<T>, signal?: AbortSignal, urgency: Urgency = 'deferrable'): Promise<T> {
    const { spec } = product;
    const options = signal ? { signal } : {};
    const attempt = async (): Promise<T> => {
      signal?.throwIfAborted();
      const credentials = await this.timed('Identity', () => this.identities.forPod({ mode: spec.identity?.mode ?? 'Pod', ...(spec.identity?.roleArn ? { roleArn: spec.identity.roleArn } : {}) }, pod));
      // The identity's STS exchange is not aborted (it is short); what it was for is.
      signal?.throwIfAborted();
      const region = spec.region ?? this.settings.region;
      if (typeof credentials !== 'object') {
        const client = this.client(credentials, region);
        return this.timed(operation, () => call(client));
      }
      const client = this.perCallClient(region);
      return this.timed(operation, () => this.callCredentials.run(credentials, () => call(client)));
    };
    // Registrations first: while they go on, metering goes on narrowly (it has hours to spare; a
    // pod start has not), unless its hour is running out of them.
    if (operation === 'RegisterUsage') return this.priority.urgent(() => this.lanes.RegisterUsage.run(attempt, options));
    return this.lanes.MeterUsage.run(() => (urgency === 'pressing' ? attempt() : this.priority.deferred(attempt, signal)), options);
  }

  /**
   * A Metering client for an operator identity and region, built once: a new client resolves its
   * configuration again (region, endpoint, FIPS and retry settings, each through the
   * environment and the shared config files) on its first call.
   */
  private client(credentials: Exclude<ClientCredentials, AwsCredentialIdentity> | undefined, region: string | undefined): MarketplaceMeteringClient {
    let clients = this.sharedClients;
    if (typeof credentials === 'function') {
      clients = this.providerClients.get(credentials) ?? new Map<string, MarketplaceMeteringClient>();
      this.providerClients.set(credentials, clients);
    }
    const key = `${credentials === 'anonymous' ? 'anonymous' : ''}|${region ?? ''}`;
    let client = clients.get(key);
    if (!client) clients.set(key, (client = createMeteringClient(this.settings, credentials, region, this.handler)));
    return client;
  }

  /**
   * The client of a region for calls signed with credentials given as values (a pod's own, or
   * static keys), each call's its own (callCredentials). One client for every pod: a client per pod cost 1.4 ms of CPU per call in
   * that configuration work, more than the call itself.
   */
  private perCallClient(region: string | undefined): MarketplaceMeteringClient {
    const key = region ?? '';
    let client = this.perCallClients.get(key);
    if (!client) this.perCallClients.set(key, (client = createMeteringClient(this.settings, this.perCallCredentials, region, this.handler)));
    return client;
  }

  private async timed<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const end = this.metrics.awsLatency.startTimer({ operation });
    try {
      const result = await call();
      this.metrics.awsCalls.inc({ operation, outcome: 'ok' });
      return result;
    } catch (error) {
      this.metrics.awsCalls.inc({ operation, outcome: error instanceof AwsCallError ? error.code : error instanceof Error ? error.name : 'error' });
      throw error;
    } finally {
      end();
    }
  }
}

/**
 * A credentials provider answering with the credentials of the call it is asked for (the SDK
 * asks within the call's async context, to sign it). Marked memoized: the SDK wraps a provider
 * not so marked in a cache of its own, which would sign every pod's calls with the first pod's
 * credentials until they expire.
 */
function perCallProvider(storage: AsyncLocalStorage<AwsCredentialIdentity>): AwsCredentialIdentityProvider {
  const provider = (): Promise<AwsCredentialIdentity> => {
    const credentials = storage.getStore();
    return credentials ? Promise.resolve(credentials) : Promise.reject(new Error('a per-call-credentials Metering client was called outside ProductClients.run'));
  };
  return Object.assign(provider, { memoized: true });
}
