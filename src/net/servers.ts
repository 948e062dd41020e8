// Starting and stopping Node HTTP(S) servers, the same way everywhere.
import type { Server } from 'node:net';
import type http from 'node:http';

/** Listens and resolves to the bound port (useful with port 0). */
export function listen(server: Server, port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

/**
 * Stops accepting connections and resolves once the server is closed. `drain`: let requests in
 * flight finish (only idle connections are cut); otherwise every connection is cut at once.
 */
export function close(server: http.Server, options: { drain?: boolean; drainMs?: number } = {}): Promise<void> {
  return new Promise((resolve) => {
    // Keep-alive clients (the API server) may hold connections open: cut them after the drain.
    const timer = options.drain
      ? setTimeout(() => {
          server.closeAllConnections();
        }, options.drainMs ?? 5_000)
      : undefined;
    timer?.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    if (options.drain) server.closeIdleConnections();
    else server.closeAllConnections();
  });
}

/**
 * Reads a request body of at most maxBytes. An oversized body is drained, not kept, and resolves
 * to undefined, so the caller can still answer (413 or 400) and the server keeps serving.
 */
export function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    // Closed before its end (the client went away, perhaps before this was called): never settles otherwise.
    const unfinished = (): void => {
      reject(new Error('the request was closed before its body ended'));
    };
    if (req.destroyed && !req.complete) {
      unfinished();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
    });
    req.on('end', () => {
      resolve(size > maxBytes ? undefined : Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) unfinished();
    });
  });
}
