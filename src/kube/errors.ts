// A short, log-friendly description of an error: for an API server answer, its status and message.
import { ApiError } from './api.js';

export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return error instanceof Error ? error.message : String(error);
}
