// Maps items through an async function with at most `width` calls in flight, results in order.
// For fan-outs of thousands (an hour's records): each call in flight holds its waits and
// listeners (a lane, an abort signal), so starting them all at once costs in proportion to
// their number squared, and the event loop stalls meanwhile.
export async function mapPooled<T, R>(items: readonly T[], width: number, map: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await map(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return results;
}
