// The operator's settings from its environment, beside its flags (flags.ts): POD_NAMESPACE and
// POD_NAME (downward API), WEBHOOK_CERTIFICATES (self-managed or cert-manager), SIMULATED_CLOCK
// (tests and demos), RECHECK_MAX_INTERVAL_SECONDS, UNENTITLED_EVICTION_GRACE_SECONDS, and for
// tuning LEASE_DURATION_SECONDS (renew deadline 2/3 of it) and CERTIFICATE_CHECK_SECONDS.
import os from 'node:os';
import { defaultNamespace } from '../api/names.js';
import { clockFromEnv, type Clock } from '../clock.js';

export interface OperatorEnvironment {
  namespace: string;
  identity: string;
  /** 'cert-manager': the webhook Secret and CA bundle are managed outside the operator. */
  certificates: 'self-managed' | 'cert-manager';
  /** How often every replica checks whether a certificate renewal or CA-rotation step is due (it watches the Secret for changes). */
  certificateCheckMs: number;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** The time reported to AWS and users (see clock.ts); SIMULATED_CLOCK in tests and demos. */
  clock: Clock;
  /** The longest wait between periodic checks of a NotEntitled pod. */
  recheckMaxIntervalMs: number;
  /** How long PodDisruptionBudgets may refuse the eviction of a pod that was never entitled before it is deleted. */
  evictionGraceMs: number;
}

export function operatorEnvironment(env: NodeJS.ProcessEnv = process.env): OperatorEnvironment {
  const seconds = (name: string, fallback: number): number => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: ${JSON.stringify(env[name])} is not a positive number of seconds`);
    return value * 1000;
  };
  const leaseDurationMs = seconds('LEASE_DURATION_SECONDS', 15);
  const certificates = env.WEBHOOK_CERTIFICATES ?? 'self-managed';
  if (certificates !== 'self-managed' && certificates !== 'cert-manager') throw new Error(`WEBHOOK_CERTIFICATES: ${JSON.stringify(certificates)} is not self-managed or cert-manager`);
  return {
    certificates,
    namespace: env.POD_NAMESPACE ?? defaultNamespace,
    identity: env.POD_NAME ?? `${os.hostname()}-${process.pid}`,
    certificateCheckMs: seconds('CERTIFICATE_CHECK_SECONDS', 60),
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.min(2_000, Math.round(leaseDurationMs / 5)),
    clock: clockFromEnv(env),
    recheckMaxIntervalMs: seconds('RECHECK_MAX_INTERVAL_SECONDS', 900),
    evictionGraceMs: seconds('UNENTITLED_EVICTION_GRACE_SECONDS', 60),
  };
}
