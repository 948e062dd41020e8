// The operator's clock: the time it reports to AWS and to users (metering hours, registration
// times, status). Tests and demos run it faster than real time, so hours pass in seconds; every
// process that shares the same SIMULATED_CLOCK setting reads the same time.
//
// Timeouts, the leader Lease and certificates stay on the host's real time: they are judged by
// other parties (the API server, other replicas, TLS peers) that use real time.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Real milliseconds until the clock reads `time` (0 if it already has). */
  realMsUntil(time: number): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  realMsUntil: (time) => Math.max(0, time - Date.now()),
};

export interface SimulatedClockSetting {
  /** What the clock reads at `originMs`. */
  startMs: number;
  /** A real time (epoch ms). */
  originMs: number;
  /** Simulated milliseconds per real millisecond. */
  rate: number;
}

export function simulatedClock({ startMs, originMs, rate }: SimulatedClockSetting, realNow: () => number = Date.now): Clock {
  return {
    now: () => startMs + (realNow() - originMs) * rate,
    realMsUntil: (time) => Math.max(0, Math.ceil((time - (startMs + (realNow() - originMs) * rate)) / rate)),
  };
}

/** `SIMULATED_CLOCK=START,ORIGIN_MS,RATE`, e.g. `2026-01-01T00:00:00Z,1767225600000,360`. */
export function formatSimulatedClock(setting: SimulatedClockSetting): string {
  return `${new Date(setting.startMs).toISOString()},${setting.originMs},${setting.rate}`;
}

function parseSimulatedClock(value: string): SimulatedClockSetting {
  const [start = '', origin = '', rate = ''] = value.split(',');
  const setting = { startMs: Date.parse(start), originMs: Number(origin), rate: Number(rate) };
  if (!Number.isFinite(setting.startMs) || !Number.isFinite(setting.originMs) || !(setting.rate > 0)) {
    throw new Error(`SIMULATED_CLOCK: ${JSON.stringify(value)} is not START,ORIGIN_MS,RATE (an RFC 3339 time, epoch milliseconds, a positive rate)`);
  }
  return setting;
}

export function clockFromEnv(env: NodeJS.ProcessEnv = process.env): Clock {
  return env.SIMULATED_CLOCK ? simulatedClock(parseSimulatedClock(env.SIMULATED_CLOCK)) : systemClock;
}
