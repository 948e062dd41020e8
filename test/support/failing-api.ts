// The API server, until `fails` says a request is one it never answers: a client that stands in
// for an API server going away, or refusing writes, in the middle of what a test drives.
import type { ApiClient, Method } from '../../src/kube/api.js';

export class FailingApi implements ApiClient {
  constructor(
    private readonly api: ApiClient,
    private readonly fails: (method: Method, path: string) => boolean,
    private readonly message = 'the API server went away',
  ) {}

  request<T>(method: Method, path: string, body?: unknown): Promise<T> {
    return this.fails(method, path) ? Promise.reject(new Error(this.message)) : this.api.request<T>(method, path, body);
  }

  send(method: Method, path: string, body?: unknown): Promise<string> {
    return this.fails(method, path) ? Promise.reject(new Error(this.message)) : this.api.send(method, path, body);
  }
}
