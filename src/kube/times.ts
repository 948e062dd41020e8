// Time formats of the Kubernetes API.

/**
 * MicroTime fields (Lease renewTime, Event eventTime) must have exactly six fractional digits;
 * the API server rejects a plain ISO time with three. client-node's types call these fields
 * Date, so the string is typed as one.
 */
export function microTime(date: Date = new Date()): Date {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}

/** A Time field (conditions, status times): RFC 3339 in whole seconds, as the API server writes them. */
export function rfc3339(time: Date | number | string): string {
  return new Date(time).toISOString().replace(/\.\d+Z$/, 'Z');
}
