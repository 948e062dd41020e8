// The operator started before its install: it says what is missing and what to apply, one piece
// at a time as they appear, and starts once everything is there.
import { readFile } from 'node:fs/promises';
import { FakeAws } from '../fake-aws/server.js';
import { bundleObjects, operatorNamespace } from '../support/bundle.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { startOperatorProcess } from '../support/operator.js';
import { waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();

it('names the missing namespace, webhook configuration and CRD with what to apply, then starts', async () => {
  const plane = controlPlane();
  const fake = await FakeAws.start();
  try {
    // As cluster admin, so that only the install is missing, not permissions.
    const operator = await startOperatorProcess(plane, fake, plane.kubeconfigPath, { waitReady: false, env: { LOG_LEVEL: 'info' } });
    const logSays = (text: string) =>
      waitFor(`the operator's log to say: ${text}`, async () => ((await readFile(plane.file('operator.log'), 'utf8')).includes(text) ? true : undefined), 30_000, 200);
    const apply = (kind: string) => plane.kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: bundleObjects().filter((o) => o.kind === kind) }));

    await logSays(`namespace ${operatorNamespace} does not exist: kubectl apply -f config/install.yaml creates the operator's, or set POD_NAMESPACE`);
    await plane.kubectlOk(['create', 'namespace', operatorNamespace]);
    await logSays('the webhook configuration is not installed: kubectl apply -f config/install.yaml');
    await apply('MutatingWebhookConfiguration');
    await logSays('the CustomResourceDefinition marketplaceproducts.marketplace.entitlements.io is not installed: kubectl apply -f crds/');
    await apply('CustomResourceDefinition');
    await plane.waitHealthy(operator.proc, `${operator.healthUrl}/readyz`, 60_000);
    expect(operator.proc.running).toBe(true);
  } finally {
    await fake.close();
  }
}, 120_000);
