// The Metering clients behind a product's AWS calls: the identity its identity.mode names (the
// pod's own, or the operator's), a client per identity and region, a bound on concurrent AWS
// calls for each operation, and per-operation metrics. Registration and metering both call AWS
// through here, each in a lane of its own: at the hour's end thousands of MeterUsage records go
// out (in Pod mode each with its TokenRequest and STS exchange), and a pod that starts then must
// not wait behind them for its RegisterUsage, nor behind their work on the event loop: while
// registrations are under way (and for a second after the last), metering narrows to two calls
// in flight.
import type { MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
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
      const client = this.client(credentials, spec.region ?? this.settings.region);
      return this.timed(operation, () => call(client));
    };
    // Registrations first: while they go on, metering goes on narrowly (it has hours to spare; a
    // pod start has not), unless its hour is running out of them.
    if (operation === 'RegisterUsage') return this.priority.urgent(() => this.lanes.RegisterUsage.run(attempt, options));
    return this.lanes.MeterUsage.run(() => (urgency === 'pressing' ? attempt() : this.priority.deferred(attempt, signal)), options);
  }

  /**
   * A Metering client for these credentials and region. Clients of the operator's own identities
   * (providers, one per role) are built once: a new client resolves its configuration again
   * (region, endpoint and retry settings, reading the shared config files) on its first call.
   * A pod's credentials are its own, so its client is built per call and not kept.
   */
  private client(credentials: ClientCredentials | undefined, region: string | undefined): MarketplaceMeteringClient {
    if (typeof credentials === 'object') return createMeteringClient(this.settings, credentials, region, this.handler);
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
