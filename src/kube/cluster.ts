// What kind of cluster the operator runs in, as the API server's version says.
import type { ApiClient } from './api.js';

/**
 * Whether the API server is Amazon EKS's (its gitVersion carries `-eks-`, as in
 * v1.33.5-eks-113cf36). Asked once; a failed answer is asked again next time.
 */
export function eksProbe(client: ApiClient): () => Promise<boolean> {
  let answer: Promise<boolean> | undefined;
  return () => {
    if (!answer) {
      const asked = client.request<{ gitVersion?: string }>('GET', '/version').then((version) => /-eks-/.test(version.gitVersion ?? ''));
      asked.catch(() => {
        if (answer === asked) answer = undefined;
      });
      answer = asked;
    }
    return answer;
  };
}
