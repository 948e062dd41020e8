// WEBHOOK_CERTIFICATES=cert-manager: the operator serves the certificate someone else writes to
// the Secret, waits for it, and never writes the Secret itself.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { CoreV1Api } from '@kubernetes/client-node';
import { webhookSecretName } from '../../src/api/names.js';
import { createCertificateAuthority, issueCertificate } from '../../src/pki/certificates.js';
import { FakeAws } from '../fake-aws/server.js';
import { operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { installBundle, serviceAccountKubeconfig, startOperatorProcess, waitForGating } from '../support/operator.js';
import { gated, labelledPod } from '../support/pods.js';
import { freePort, waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
let fake: FakeAws;
afterAll(async () => fake.close());

it('waits for the Secret, serves its certificate, and leaves the Secret alone', async () => {
  const plane = controlPlane();
  fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')] });
  await installBundle(plane);
  const core = plane.kubeConfig().makeApiClient(CoreV1Api);
  const port = await freePort();
  const operator = await startOperatorProcess(plane, fake, await serviceAccountKubeconfig(plane), {
    webhookPort: port,
    env: { WEBHOOK_CERTIFICATES: 'cert-manager', CERTIFICATE_CHECK_SECONDS: '1' },
    waitReady: false,
  });
  await waitFor('the operator to wait for the Secret', async () => ((await readFile(plane.file('operator.log'), 'utf8')).includes('webhook certificate not ready') ? true : undefined));
  expect((await fetch(`${operator.healthUrl}/readyz`)).status).toBe(503);

  // What cert-manager's CA issuer writes: ca.crt, tls.crt, tls.key (no CA key).
  const ca = await createCertificateAuthority('cert-manager-ca', 24 * 3_600_000);
  const serving = await issueCertificate(ca, { commonName: 'webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: 3_600_000 });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const created = await core.createNamespacedSecret({
    namespace: operatorNamespace,
    body: { metadata: { name: webhookSecretName }, type: 'kubernetes.io/tls', data: { 'ca.crt': b64(ca.certPem), 'tls.crt': b64(serving.certPem), 'tls.key': b64(serving.keyPem) } },
  });
  await plane.waitHealthy(operator.proc, `${operator.healthUrl}/readyz`, 60_000);
  await waitForGating(plane);

  const served = await new Promise<string>((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', ca: ca.certPem }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
  expect(served).toBe(new X509Certificate(serving.certPem).fingerprint256);
  expect(gated(await core.createNamespacedPod({ namespace: 'default', body: labelledPod('cm-0', 'any') }))).toBe(true);

  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const after = await core.readNamespacedSecret({ name: webhookSecretName, namespace: operatorNamespace });
  expect(after.metadata?.resourceVersion).toBe(created.metadata?.resourceVersion);
  await operator.proc.stop();
}, 180_000);
