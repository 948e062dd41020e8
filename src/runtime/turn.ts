// Waiting one's turn, abortable: the way a Semaphore's and a PriorityGate's waiters wait.
/**
 * Resolves once the `start` that `enlist` was given is called; rejects with the signal's reason
 * if it aborts first, after calling the `withdraw` that `enlist` returned. A waiter that started
 * no longer listens: the signal may live as long as a controller, its waiters do not.
 */
export function waitTurn(signal: AbortSignal | undefined, enlist: (start: () => void) => () => void): Promise<void> {
  signal?.throwIfAborted();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      withdraw();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted while waiting its turn'));
    };
    const withdraw = enlist(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
