// eksProbe: the API server's version tells an EKS cluster; asked once, asked again after a failure.
import { eksProbe } from '../../src/kube/cluster.js';
import type { ApiClient } from '../../src/kube/api.js';

function versions(...answers: (string | Error)[]): ApiClient & { asked: number } {
  const client = {
    asked: 0,
    request<T>(): Promise<T> {
      const answer = answers[client.asked++] ?? new Error('no more answers');
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve({ gitVersion: answer } as T);
    },
    send: () => Promise.reject(new Error('not used')),
  };
  return client;
}

it('tells EKS by its version, asks once, and again after a failure', async () => {
  const eks = versions('v1.33.5-eks-113cf36');
  const onEks = eksProbe(eks);
  expect([await onEks(), await onEks()]).toEqual([true, true]);
  expect(eks.asked).toBe(1);
  expect(await eksProbe(versions('v1.37.2'))()).toBe(false);
  const flaky = versions(new Error('HTTP 503'), 'v1.30.4-eks-a737599');
  const probe = eksProbe(flaky);
  await expect(probe()).rejects.toThrow('HTTP 503');
  expect(await probe()).toBe(true);
});
