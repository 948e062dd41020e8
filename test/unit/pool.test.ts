// mapPooled: every item mapped, results in order, never more than `width` calls in flight.
import { mapPooled } from '../../src/runtime/pool.js';

it('maps every item in order with at most `width` in flight', async () => {
  let inFlight = 0;
  let most = 0;
  const results = await mapPooled(Array.from({ length: 100 }, (_, i) => i), 8, async (i) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((resolve) => setTimeout(resolve, i % 3));
    inFlight--;
    return i * 2;
  });
  expect(results).toEqual(Array.from({ length: 100 }, (_, i) => i * 2));
  expect(most).toBe(8);
  expect(await mapPooled([], 8, () => Promise.resolve(1))).toEqual([]);
});
