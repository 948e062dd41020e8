// The latest registration outcome per product, as the pod reconciler saw it. The product status
// reconciler turns it into the Entitled condition. In memory: after a restart the condition
// already in the status stands until the next registration.
export interface ProductOutcome {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  registeredAt?: string;
  publicKeyRotationTimestamp?: string;
}

export class ProductOutcomes {
  private readonly latest = new Map<string, ProductOutcome>();
  private readonly listeners: ((productKey: string) => void)[] = [];

  onChange(listener: (productKey: string) => void): void {
    this.listeners.push(listener);
  }

  /** Records the outcome; true when its status or reason differs from the previous one. */
  record(productKey: string, outcome: ProductOutcome): boolean {
    const previous = this.latest.get(productKey);
    this.latest.set(productKey, {
      ...outcome,
      // Keep times that this outcome does not carry.
      ...(outcome.registeredAt ?? previous?.registeredAt ? { registeredAt: outcome.registeredAt ?? previous?.registeredAt } : {}),
      ...(outcome.publicKeyRotationTimestamp ?? previous?.publicKeyRotationTimestamp
        ? { publicKeyRotationTimestamp: outcome.publicKeyRotationTimestamp ?? previous?.publicKeyRotationTimestamp }
        : {}),
    });
    for (const listener of this.listeners) listener(productKey);
    return previous?.status !== outcome.status || previous.reason !== outcome.reason;
  }

  get(productKey: string): ProductOutcome | undefined {
    return this.latest.get(productKey);
  }
}
