// A clock the test moves, for reconcilers constructed directly: `realMsUntil` is the wait until a
// time of this clock, as the operator's clock (src/clock.ts) answers it.
import type { Clock } from '../../src/clock.js';

export function testClock(start = Date.now()): Clock & { advance: (ms: number) => void } {
  let now = start;
  return {
    now: () => now,
    realMsUntil: (time) => Math.max(0, time - now),
    advance: (ms) => {
      now += ms;
    },
  };
}
