/**
 * HTTP-date (RFC 9110 §5.6.7). Date.parse accepts IMF-fixdate and the obsolete RFC 850 / asctime forms. Returns
 * epoch milliseconds, or undefined for an invalid date.
 */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  // The last value parsed, kept: origins send the same Date for every response of a second, and a miss reads it
  // more than once (age, freshness); Date.parse of a string is a pure function of it (issue 16).
  if (value !== lastDate) {
    lastDate = value;
    lastMs = Date.parse(value);
  }
  return Number.isNaN(lastMs) ? undefined : lastMs;
}

let lastDate: string | undefined;
let lastMs = Number.NaN;

/** IMF-fixdate for `ms`. */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
