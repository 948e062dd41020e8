// @kubernetes/client-node serializes MicroTime fields (Lease renewTime, Event eventTime) with
// millisecond precision, which the API server rejects: it wants exactly six fractional digits.
// The serializer passes strings through, so these fields get the string the server expects.
export function microTime(date: Date = new Date()): Date {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}
