// The one channel between controllers: what the pods and metering controllers tell the products
// controller about a product, which it writes into the product's status. The pods controller
// reports its latest registration (the Entitled condition), the metering controller what metering
// shows. In memory: after a restart, what the status shows stands until the next report.
import type { Source } from '../runtime/controller.js';

export interface Condition {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** The latest registration of one of the product's pods, and the times the status keeps. */
export interface RegistrationReport extends Condition {
  registeredAt?: string;
  publicKeyRotationTimestamp?: string;
}

/** What the product's status shows of metering. */
export interface MeteringReport {
  lastReportedHour?: string;
  lostHours: string[];
  condition: Condition;
}

/** A source of the keys of products whose reports changed. */
export class ProductReports implements Source<string> {
  private readonly registrations = new Map<string, RegistrationReport>();
  private readonly meterings = new Map<string, MeteringReport>();
  private readonly listeners: ((productKey: string) => void)[] = [];

  onUpsert(listener: (productKey: string) => void): void {
    this.listeners.push(listener);
  }

  /** Records the registration; true when its status or reason differs from the previous one. */
  reportRegistration(productKey: string, report: RegistrationReport): boolean {
    const previous = this.registrations.get(productKey);
    // Times this report does not carry are kept.
    const registeredAt = report.registeredAt ?? previous?.registeredAt;
    const rotation = report.publicKeyRotationTimestamp ?? previous?.publicKeyRotationTimestamp;
    this.registrations.set(productKey, { ...report, ...(registeredAt ? { registeredAt } : {}), ...(rotation ? { publicKeyRotationTimestamp: rotation } : {}) });
    this.changed(productKey);
    return previous?.status !== report.status || previous.reason !== report.reason;
  }

  registration(productKey: string): RegistrationReport | undefined {
    return this.registrations.get(productKey);
  }

  /** Records what metering shows; resolves to the previous report. Listeners hear of it only when it differs. */
  reportMetering(productKey: string, report: MeteringReport): MeteringReport | undefined {
    const previous = this.meterings.get(productKey);
    this.meterings.set(productKey, report);
    if (JSON.stringify(previous) !== JSON.stringify(report)) this.changed(productKey);
    return previous;
  }

  metering(productKey: string): MeteringReport | undefined {
    return this.meterings.get(productKey);
  }

  /** The product is gone: so are its reports. */
  productDeleted(productKey: string): void {
    this.registrations.delete(productKey);
    this.meterings.delete(productKey);
  }

  private changed(productKey: string): void {
    for (const listener of this.listeners) listener(productKey);
  }
}
