/**
 * A metav1.MicroTime as the API server parses it: RFC 3339 with exactly six fractional digits
 * ("2026-03-01T12:00:00.000000Z"). Go's parser rejects JavaScript's three (toISOString), so
 * Lease and Event times written with a plain Date would be refused.
 */
export function microTime(at: Date | number = Date.now()): string {
  const date = typeof at === 'number' ? new Date(at) : at;
  return `${date.toISOString().slice(0, -1)}000Z`;
}
