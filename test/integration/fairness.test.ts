// One product's checks do not starve another's registrations: the built operator against a real
// API server, a Pod-mode product with hundreds of refused pods whose recheck annotation is changed
// in a loop (each change a TokenRequest, an STS exchange and a RegisterUsage per pod), and a new
// pod of another product meanwhile.
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type CustomObjectsApi } from '@kubernetes/client-node';
import { annotations, group, plural, version } from '../../src/api/marketplace-product.js';
import { ApiHttp } from '../support/api-http.js';
import { createMany } from '../support/scale.js';
import { roleArnAnnotation } from '../../src/aws/pod-identity.js';
import type { FakeAws } from '../fake-aws/server.js';
import { controlPlaneForSuite } from '../support/control-plane.js';
import { prepareOperatorEnvironment, startOperatorProcess, waitForPod } from '../support/operator.js';
import { createProduct, labelledPod, readPod, reason, verdict } from '../support/pods.js';
import { waitFor } from '../support/wait.js';

const controlPlane = controlPlaneForSuite();
const ns = 'fairness';
const refusedPods = 300;
let fake: FakeAws;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

beforeAll(async () => {
  const env = await prepareOperatorEnvironment(controlPlane());
  ({ fake, core, custom } = env);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { [roleArnAnnotation]: 'arn:aws:iam::123456789012:role/app' } } } });
  await startOperatorProcess(controlPlane(), fake, env.kubeconfig);
}, 120_000);
afterAll(async () => fake.close());

const podMode = (productCode: string) => ({ publicKey: { pem: fake.publicKeyPem }, productCode, identity: { mode: 'Pod' } });
const callsFor = (code: string) => fake.calls('RegisterUsage').filter((c) => c.productCode === code);
const askForChecks = (value: string) =>
  custom.patchNamespacedCustomObject({ group, version, plural, namespace: ns, name: 'busy', body: { metadata: { annotations: { [annotations.recheck]: value } } } }, mergePatch);

it("a new pod of one product is registered ahead of another product's recheck of its hundreds of refused pods, asked for again and again", async () => {
  // Slow answers for the busy product: its rechecks hold the shared AWS lanes a while.
  fake.setBehaviour('busy-code', { error: 'CustomerNotEntitledException', delayMs: 50 });
  await createProduct(custom, ns, 'busy', podMode('busy-code'));
  await createProduct(custom, ns, 'quiet', podMode('quiet-code'));
  const api = new ApiHttp(controlPlane());
  await createMany(api, ns, 0, refusedPods, { concurrency: 16 }, (i) => labelledPod(`busy-${String(i).padStart(3, '0')}`, 'busy', { serviceAccountName: 'app' }));
  api.close();
  await waitFor(`${refusedPods} refused pods`, () => Promise.resolve(callsFor('busy-code').length >= refusedPods ? true : undefined), 120_000, 500);

  // Checks asked for in a loop: each change queues every refused pod again.
  const before = callsFor('busy-code').length;
  const asking = new AbortController();
  const loop = (async () => {
    for (let round = 0; !asking.signal.aborted; round++) {
      await askForChecks(`round-${round}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  await waitFor('the rechecks under way', () => Promise.resolve(callsFor('busy-code').length > before ? true : undefined), 30_000, 10);
  const startedAt = callsFor('busy-code').length;
  await core.createNamespacedPod({ namespace: ns, body: labelledPod('quiet-0', 'quiet', { serviceAccountName: 'app' }) });
  const pod = await waitForPod('quiet-0 entitled', async () => {
    const p = await readPod(core, ns, 'quiet-0');
    return verdict(p) === 'Entitled' ? p : undefined;
  });
  asking.abort();
  await loop;
  expect(reason(pod)).toBe('SignatureVerified');
  // The quiet pod waited for what was in flight when it came (the workers and the AWS lane), not
  // for the hundreds of rechecks queued before it.
  const busyCallsMeanwhile = callsFor('busy-code').filter((c) => c.seq < (callsFor('quiet-code')[0]?.seq ?? Infinity)).length - startedAt;
  expect(busyCallsMeanwhile).toBeLessThan(refusedPods / 3);
}, 300_000);
