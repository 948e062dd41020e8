// The health and metrics servers: first to start, so probes answer while the rest starts.
import type http from 'node:http';
import { close } from '../net/servers.js';
import type { Manager } from '../runtime/manager.js';
import { HealthServer } from './health.js';
import type { Metrics } from './metrics.js';

export function setupServers(manager: Manager, metrics: Metrics, ports: { healthPort: number; metricsPort: number }): HealthServer {
  const health = new HealthServer();
  let metricsServer: http.Server | undefined;
  manager.add(
    'servers',
    {
      name: 'health',
      start: async () => {
        await health.listen(ports.healthPort);
      },
      stop: () => health.close(),
    },
    {
      name: 'metrics',
      start: async () => {
        metricsServer = await metrics.serve(ports.metricsPort);
      },
      stop: async () => {
        if (metricsServer) await close(metricsServer);
      },
    },
  );
  return health;
}
