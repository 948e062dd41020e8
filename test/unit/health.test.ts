import { HealthServer } from '../../src/observability/health.js';

describe('HealthServer', () => {
  let server: HealthServer;
  let base: string;
  beforeEach(async () => {
    server = new HealthServer();
    base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
  });
  afterEach(async () => server.close());

  it('answers /healthz, and /readyz by its checks', async () => {
    let synced = false;
    server.addReadinessCheck('caches-synced', () => synced);
    server.addReadinessCheck('certificate', () => true);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);

    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toBe('not ready: caches-synced\n');

    synced = true;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('answers 404 and 405 for anything else', async () => {
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
  });
});
