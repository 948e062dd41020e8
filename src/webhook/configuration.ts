// Points the MutatingWebhookConfiguration at this operator: the CA bundle to trust and, out of
// cluster, the URL to call instead of the Service. Only patches what differs.
import type { V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { contentTypes, segment, type KubeClient } from '../kube/api.js';
import { webhookConfigurationName } from '../api/names.js';
import { mutatePodPath } from './server.js';

export async function configureWebhook(client: KubeClient, caPem: string, webhookUrl?: string, name = webhookConfigurationName): Promise<boolean> {
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${segment(name)}`;
  const config = await client.request<V1MutatingWebhookConfiguration>('GET', path);
  const caBundle = Buffer.from(caPem).toString('base64');
  const patch: { op: 'replace'; path: string; value: unknown }[] = [];
  (config.webhooks ?? []).forEach((webhook, i) => {
    const current = webhook.clientConfig;
    const desired = webhookUrl ? { url: new URL(mutatePodPath, webhookUrl).toString(), caBundle } : { ...current, caBundle };
    if (current.caBundle !== desired.caBundle || current.url !== desired.url || (webhookUrl !== undefined && current.service !== undefined)) {
      patch.push({ op: 'replace', path: `/webhooks/${i}/clientConfig`, value: desired });
    }
  });
  if (patch.length === 0) return false;
  await client.send('PATCH', path, patch, contentTypes.jsonPatch);
  return true;
}
