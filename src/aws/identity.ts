// Chooses the credentials that sign the AWS calls made for a pod, by the product's
// identity.mode: the pod's own (web identity) or the operator's (optionally through a role).
import type { ClientCredentials } from './clients.js';
import type { STSClient } from '@aws-sdk/client-sts';
import { assumeRoleCredentials } from './credentials.js';
import type { PodIdentity, PodRef } from './pod-identity.js';

export interface ProductIdentity {
  mode: 'Pod' | 'Operator';
  roleArn?: string;
}

const operatorSessionName = 'entitlement-operator';

export class Identities {
  private readonly roles = new Map<string, ClientCredentials>();

  /** `operatorSts` is signed with the operator's base credentials, for AssumeRole. */
  constructor(
    private readonly base: ClientCredentials | undefined,
    private readonly operatorSts: STSClient,
    private readonly pods: PodIdentity,
  ) {}

  forPod(identity: ProductIdentity, pod: PodRef): Promise<ClientCredentials | undefined> {
    if (identity.mode === 'Pod') return this.pods.credentials(pod, identity.roleArn);
    return Promise.resolve(this.operatorCredentials(identity.roleArn));
  }

  private operatorCredentials(roleArn: string | undefined): ClientCredentials | undefined {
    if (!roleArn) return this.base;
    let role = this.roles.get(roleArn);
    if (!role) {
      // One cached, self-refreshing provider per role, shared by every product that names it.
      role = assumeRoleCredentials(this.operatorSts, roleArn, operatorSessionName);
      this.roles.set(roleArn, role);
    }
    return role;
  }
}
