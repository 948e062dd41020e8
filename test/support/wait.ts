import { readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Ports handed out from below the kernel's ephemeral range (and below the NodePort range), so
 * that no outgoing connection is given one between the check and the bind: a port picked by
 * listening on port 0 comes from that range, and with every client holding a keep-alive
 * connection per request in flight, one was taken before an operator could bind it.
 */
const [pickFrom, pickBelow] = [20_000, Math.min(30_000, ephemeralRangeStart())];
const handedOut = new Set<number>();

function ephemeralRangeStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

/** Whether a TCP port can be bound on every address (as the operator's servers bind). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => { resolve(false); });
    server.listen(port, () => server.close(() => { resolve(true); }));
  });
}

/** A TCP port, free on every address a moment ago, that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200 && pickBelow > pickFrom; attempt++) {
    const port = pickFrom + Math.floor(Math.random() * (pickBelow - pickFrom));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  // An ephemeral range that leaves nothing below it (1024-65535): what the kernel hands out.
  return anyPort();
}

function anyPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port assigned'));
      });
    });
  });
}

/** Thrown by a check to stop waiting at once (the thing waited for can no longer happen). */
export class StopWaiting extends Error {}

/**
 * Polls check until it returns a value other than undefined, or throws describing what it
 * waited for (and the last error check threw). A StopWaiting error ends the wait at once.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await sleep(intervalMs);
  }
}
