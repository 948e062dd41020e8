// A short, log-friendly description of a Kubernetes API error (client-node's messages carry the
// whole body and every header).
import { ApiException } from '@kubernetes/client-node';

export function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    let message = '';
    try {
      const body: unknown = typeof error.body === 'string' ? JSON.parse(error.body) : error.body;
      if (typeof body === 'object' && body !== null && 'message' in body) message = String(body.message);
    } catch {
      // Not JSON: the code alone.
    }
    return `HTTP ${error.code}${message ? `: ${message}` : ''}`;
  }
  return error instanceof Error ? error.message : String(error);
}
