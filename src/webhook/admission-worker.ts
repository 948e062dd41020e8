// The admission webhook's own thread: the HTTPS server and the gate decision, nothing else, so
// admission never waits behind reconcile work on the main event loop. It talks to the main
// thread (AdmissionThread) through messages only.
import { parentPort, workerData } from 'node:worker_threads';
import { WebhookServer } from './server.js';
import type { AdmissionWorkerData, ToWorker, FromWorker } from './admission-thread.js';

const port = parentPort;
if (!port) throw new Error('admission-worker runs as a worker thread (see AdmissionThread)');
const send = (message: FromWorker): void => {
  port.postMessage(message);
};

// Each answered request is counted in the main thread's metrics.
const { exempt } = workerData as AdmissionWorkerData;
const server = new WebhookServer((outcome, seconds) => {
  send({ type: 'observed', outcome, seconds });
}, new Set(exempt));

port.on('message', (message: ToWorker) => {
  const reply = (result: { port?: number; error?: string }): void => {
    send({ type: 'done', id: message.id, ...result });
  };
  switch (message.type) {
    case 'certificate':
      server.setCertificate(message.certificate);
      reply({});
      break;
    case 'listen':
      server.listen(message.port, message.host).then(
        (bound) => {
          reply({ port: bound });
        },
        (error: unknown) => {
          reply({ error: error instanceof Error ? error.message : String(error) });
        },
      );
      break;
    case 'close':
      void server.close().then(() => {
        reply({});
        port.close();
      });
      break;
  }
});
