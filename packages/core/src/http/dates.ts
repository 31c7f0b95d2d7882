/**
 * HTTP-date (RFC 9110 §5.6.7). Date.parse accepts IMF-fixdate and the obsolete RFC 850 / asctime forms. Returns
 * epoch milliseconds, or undefined for an invalid date.
 */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/** IMF-fixdate for `ms`. */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
