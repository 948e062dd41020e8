// Points the MutatingWebhookConfiguration at this operator: the CA bundle to trust and, out of
// cluster, the URL to call instead of the Service. Only patches what differs.
import { PatchStrategy, setHeaderOptions, type AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { mutatePodPath } from './server.js';

export const webhookConfigurationName = 'entitlement-operator-mutating-webhook-configuration';

export async function configureWebhook(api: AdmissionregistrationV1Api, caPem: string, webhookUrl?: string, name = webhookConfigurationName): Promise<boolean> {
  const config = await api.readMutatingWebhookConfiguration({ name });
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
  await api.patchMutatingWebhookConfiguration({ name, body: patch }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
  return true;
}
