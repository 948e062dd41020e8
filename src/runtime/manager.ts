// Starts the operator's parts in order and stops them in reverse, as controller-runtime's manager
// does with its runnable groups (servers, webhooks, caches, then what runs only while leading):
// probes answer while the rest starts, and a leader stops reconciling before its caches and
// webhook go away. Start-up can be aborted at any point (a SIGTERM during start-up): the parts
// already started are stopped and nothing else begins.
import type { Logger } from '../observability/logger.js';
import { describeError } from '../kube/errors.js';

export interface Part {
  readonly name: string;
  /** Resolves once the part works; may reject early when `signal` aborts. */
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

export class StartAborted extends Error {
  override name = 'StartAborted';
}

export class Manager {
  private readonly parts: Part[] = [];
  private readonly running: Part[] = [];

  constructor(private readonly log: Logger) {}

  add(...parts: Part[]): this {
    this.parts.push(...parts);
    return this;
  }

  /**
   * Starts every part in order. When `signal` aborts or a part fails, the parts already started
   * are stopped and the promise rejects (StartAborted for an abort).
   */
  async start(signal: AbortSignal): Promise<void> {
    for (const part of this.parts) {
      try {
        if (signal.aborted) throw new StartAborted(`start-up aborted before ${part.name}`);
        this.log.debug('starting', { part: part.name });
        await part.start(signal);
        this.running.push(part);
        if (isAborted(signal)) throw new StartAborted(`start-up aborted while starting ${part.name}`);
      } catch (error) {
        await this.stop();
        throw signal.aborted && !(error instanceof StartAborted) ? new StartAborted(`start-up aborted while starting ${part.name}`) : error;
      }
    }
  }

  /** Stops the started parts in reverse order; a part that fails to stop does not stop the rest. */
  async stop(): Promise<void> {
    for (const part of this.running.splice(0).reverse()) {
      try {
        await part.stop();
        this.log.debug('stopped', { part: part.name });
      } catch (error) {
        this.log.warn('part did not stop cleanly', { part: part.name, error: describeError(error) });
      }
    }
  }
}

/** Read through a call, so the type checker does not assume the signal is unchanged since last read. */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}
