// The key only the operator holds, for the seals on pods' verdicts (seal.ts): 32 random
// bytes in a Secret of the operator's own namespace, which no namespace user can read. The first
// replica makes it; replicas starting together converge on one (create, and on conflict read what
// won). Every replica watches it: deleted, it is made again with the key the replica holds (so
// the verdicts already sealed stay valid); replaced by another key, the replica must restart
// with it, since a seal made with one key cannot be checked with another.
//
// The upgrade from a release without seals: when the key is first made where that release ran
// (its leader Lease is there already), a verdict that carries no seal at all is adopted and sealed
// for a while, rather than checked again, so the upgrade neither registers nor evicts running pods
// anew, and the old replicas still leading during a rolling update may go on writing verdicts. The
// gate guard, installed with the same apply, keeps anyone else from writing one meanwhile. The
// Secret records since when (only on such an upgrade); made again after a deletion, it keeps that
// time. A fresh install adopts nothing.
import { operatorKeySecretName } from '../api/names.js';
import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { segment, type KubeClient } from '../kube/api.js';
import { describeError, isConflict, isNotFound } from '../kube/errors.js';
import { Informer } from '../runtime/informer.js';
import type { Logger } from '../observability/logger.js';
import { RegistrationNonces } from './nonce.js';
import { VerdictSeal } from './seal.js';

const dataKey = 'key';
/** When (RFC 3339) the key was first made on an upgrade from a release without seals. */
export const sealedSinceAnnotation = 'marketplace.entitlements.io/sealed-since';
/** How long after that unsealed verdicts are adopted. */
const adoptionMs = 10 * 60 * 1000;

export class OperatorKey {
  private readonly informer: Informer<V1Secret>;
  private key: Buffer | undefined;
  private sealedSince = 0;
  private current: VerdictSeal | undefined;
  private currentNonces: RegistrationNonces | undefined;

  /**
   * `leaseName`: the operator's leader Lease, there already when a release before this one ran.
   * `onReplaced` is called when the Secret holds another key than this replica's: it must restart.
   */
  constructor(
    private readonly client: KubeClient,
    private readonly where: { namespace: string; leaseName: string },
    private readonly log: Logger,
    private readonly onReplaced: (reason: string) => void,
  ) {
    const { namespace } = where;
    const path = `/api/v1/namespaces/${segment(namespace)}/secrets`;
    const fieldSelector = `metadata.name=${operatorKeySecretName}`;
    this.informer = new Informer<V1Secret>(
      client,
      { name: 'operator-key', path, fieldSelector },
      log,
    );
    this.informer.onUpsert((secret) => {
      if (this.key && !holds(secret, this.key)) this.onReplaced(`the operator key in Secret ${namespace}/${operatorKeySecretName} was replaced`);
    });
    this.informer.onDelete(() => void this.restore());
  }

  private get namespace(): string {
    return this.where.namespace;
  }

  /** The seal under this replica's key; there is none before start(). */
  get seal(): VerdictSeal {
    if (!this.current) throw new Error('the operator key is not loaded yet');
    return this.current;
  }

  /** The registrations' nonces under this replica's key; there are none before start(). */
  get nonces(): RegistrationNonces {
    if (!this.currentNonces) throw new Error('the operator key is not loaded yet');
    return this.currentNonces;
  }

  /** Whether a verdict without any seal is adopted now: a release before seals wrote it. */
  adoptsUnsealed(now = Date.now()): boolean {
    return now < this.sealedSince + adoptionMs;
  }

  /** Reads the key, or makes it; then watches it. Rejects when `signal` aborts first. */
  async start(signal?: AbortSignal): Promise<void> {
    await this.informer.start(signal);
    if (signal?.aborted) throw new Error('start-up aborted before the operator key was loaded');
    const secret = this.informer.get(`${this.namespace}/${operatorKeySecretName}`) ?? (await this.create(randomBytes(32), (await this.upgrading()) ? Date.now() : undefined));
    this.key = keyIn(secret);
    this.sealedSince = Date.parse(secret.metadata?.annotations?.[sealedSinceAnnotation] ?? '') || 0;
    this.current = new VerdictSeal(this.key);
    this.currentNonces = new RegistrationNonces(this.key);
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  /** Whether a release ran here before this one made a key: its leader Lease is there. */
  private async upgrading(): Promise<boolean> {
    try {
      await this.client.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${segment(this.namespace)}/leases/${segment(this.where.leaseName)}`);
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Makes the Secret with `key`; if another replica was first, resolves to the one that won. */
  private async create(key: Buffer, sealedSince: number | undefined): Promise<V1Secret> {
    const path = `/api/v1/namespaces/${segment(this.namespace)}/secrets`;
    try {
      return await this.client.request<V1Secret>('POST', path, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: operatorKeySecretName,
          namespace: this.namespace,
          labels: { 'app.kubernetes.io/name': 'entitlement-operator' },
          ...(sealedSince ? { annotations: { [sealedSinceAnnotation]: new Date(sealedSince).toISOString() } } : {}),
        },
        type: 'Opaque',
        data: { [dataKey]: key.toString('base64') },
      });
    } catch (error) {
      if (!(isConflict(error))) throw error;
      return this.client.request<V1Secret>('GET', `${path}/${operatorKeySecretName}`);
    }
  }

  private async restore(): Promise<void> {
    if (!this.key) return;
    try {
      const key = keyIn(await this.create(this.key, this.sealedSince || undefined));
      if (key.equals(this.key)) this.log.warn('the operator key Secret was deleted; made it again with the same key', { secret: `${this.namespace}/${operatorKeySecretName}` });
      else this.onReplaced(`the operator key Secret ${this.namespace}/${operatorKeySecretName} was deleted and made again with another key`);
    } catch (error) {
      this.log.warn('could not make the deleted operator key Secret again', { error: describeError(error) });
    }
  }
}

function holds(secret: V1Secret, key: Buffer): boolean {
  return Buffer.from(secret.data?.[dataKey] ?? '', 'base64').equals(key);
}

function keyIn(secret: V1Secret): Buffer {
  const key = Buffer.from(secret.data?.[dataKey] ?? '', 'base64');
  if (key.length < 32) throw new Error(`Secret ${secret.metadata?.namespace ?? ''}/${operatorKeySecretName} holds no key of 32 bytes or more in data.${dataKey}`);
  return key;
}
