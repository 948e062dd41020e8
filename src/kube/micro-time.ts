// MicroTime fields (Lease renewTime, Event eventTime) must have exactly six fractional digits;
// the API server rejects a plain ISO time with three. client-node's types call these fields
// Date, so the string is typed as one.
export function microTime(date: Date = new Date()): Date {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}
