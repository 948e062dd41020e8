// A product's usage ledger as the operator stored it (head and shards), read with a test's client.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Ledger } from '../../src/controllers/metering/ledger.js';
import { ledgerFromConfigMaps, ledgerLabel, ledgerName } from '../../src/controllers/metering/ledger-store.js';
import { operatorNamespace } from './bundle.js';

/** The ledger, and the bytes its ConfigMaps hold; undefined while it has no head. */
export async function storedLedger(core: CoreV1Api, productUid: string): Promise<{ ledger: Ledger; bytes: number } | undefined> {
  const head = await core.readNamespacedConfigMap({ name: ledgerName(productUid), namespace: operatorNamespace }).catch(() => undefined);
  if (!head) return undefined;
  const shards = (await core.listNamespacedConfigMap({ namespace: operatorNamespace, labelSelector: `${ledgerLabel}=${productUid}` })).items;
  const read = ledgerFromConfigMaps(head, shards);
  const bytes = [head, ...shards].reduce((sum, map) => sum + Object.values(map.data ?? {}).reduce((n, text) => n + text.length, 0), 0);
  return read ? { ledger: read.ledger, bytes } : undefined;
}
