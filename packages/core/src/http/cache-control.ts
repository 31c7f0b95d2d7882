import { getHeader, type HeaderMap } from './headers.js';

/**
 * Parsed Cache-Control (RFC 9111 §5.2). Directive names are case-insensitive; a directive may carry a token or
 * quoted-string argument. Unknown directives are kept so policy code can read extensions.
 */
export type CacheControl = Map<string, string | true>;

export function parseCacheControl(value: string | undefined): CacheControl {
  const out: CacheControl = new Map();
  if (value === undefined || value === '') return out;
  // Split on commas outside quoted strings (`no-cache="a, b"` is one directive).
  let i = 0;
  const n = value.length;
  while (i < n) {
    while (i < n && (value[i] === ' ' || value[i] === ',' || value[i] === '\t')) i++;
    let j = i;
    while (j < n && value[j] !== '=' && value[j] !== ',') j++;
    const name = value.slice(i, j).trim().toLowerCase();
    let arg: string | true = true;
    if (j < n && value[j] === '=') {
      j++;
      if (value[j] === '"') {
        let k = j + 1;
        let s = '';
        while (k < n && value[k] !== '"') {
          if (value[k] === '\\' && k + 1 < n) k++;
          s += value[k];
          k++;
        }
        arg = s;
        j = k + 1;
        while (j < n && value[j] !== ',') j++;
      } else {
        let k = j;
        while (k < n && value[k] !== ',') k++;
        arg = value.slice(j, k).trim();
        j = k;
      }
    }
    // RFC 9111 §4.2.1: with duplicate directives the first occurrence wins (a conservative, common choice).
    if (name !== '' && !out.has(name)) out.set(name, arg);
    i = j + 1;
  }
  return out;
}

export function cacheControlOf(headers: HeaderMap): CacheControl {
  return parseCacheControl(getHeader(headers, 'cache-control'));
}

/**
 * A delta-seconds argument (RFC 9111 §1.2.2): non-negative integer; a value too large saturates at 2^31. Invalid
 * values return undefined, and callers treat an invalid max-age as stale (RFC 9111 §4.2.1: "invalid ... SHOULD be
 * treated as stale" for Expires, and a conservative cache does the same for max-age).
 */
export function deltaSeconds(arg: string | true | undefined): number | undefined {
  if (arg === undefined || arg === true) return undefined;
  if (!/^\d+$/.test(arg)) return undefined;
  const v = Number(arg);
  return v > 2147483648 ? 2147483648 : v;
}
