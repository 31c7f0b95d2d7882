import type { HeaderMap } from '../http/headers.js';

/**
 * Header helpers for hooks (VCL's `req.http.X`, `set`, `unset`): header maps hold a repeated field as an array, so a
 * hook reading `headers['content-type']` gets `string | string[] | undefined`. These take any case of field name
 * (fields are stored lowercase) and hand back plain strings.
 *
 *   hdr.get(beresp.headers, 'Content-Type')?.startsWith('image/')
 *   hdr.set(req.headers, 'X-Forwarded-Proto', 'https')
 *   hdr.delete(req.headers, 'Cookie')
 */
export const hdr = {
  /** Every value of the field as one comma-joined string (`Set-Cookie` values joined too), undefined when absent. */
  get(headers: HeaderMap, name: string): string | undefined {
    const v = own(headers, name.toLowerCase());
    return v === undefined ? undefined : typeof v === 'string' ? v : v.join(', ');
  },
  /** Every value of the field, one per line it was sent on (empty when absent). */
  getAll(headers: HeaderMap, name: string): string[] {
    const v = own(headers, name.toLowerCase());
    return v === undefined ? [] : typeof v === 'string' ? [v] : v.slice();
  },
  /** Whether the field is present. */
  has(headers: HeaderMap, name: string): boolean {
    return own(headers, name.toLowerCase()) !== undefined;
  },
  /** Replaces the field (VCL `set req.http.X = ...`). */
  set(headers: HeaderMap, name: string, value: string | readonly string[]): void {
    headers[name.toLowerCase()] = typeof value === 'string' ? value : value.slice();
  },
  /** Adds a value, keeping the earlier ones as separate lines (as a repeated field, e.g. Set-Cookie). */
  append(headers: HeaderMap, name: string, value: string): void {
    const k = name.toLowerCase();
    const prev = own(headers, k);
    headers[k] = prev === undefined ? value : typeof prev === 'string' ? [prev, value] : [...prev, value];
  },
  /** Removes the field (VCL `unset`); returns whether it was there. */
  delete(headers: HeaderMap, name: string): boolean {
    const k = name.toLowerCase();
    if (own(headers, k) === undefined) return false;
    delete headers[k];
    return true;
  },
} as const;

/** The field's value when it is an own string or array (never an Object.prototype member such as `constructor`). */
function own(headers: HeaderMap, k: string): string | string[] | undefined {
  const v = headers[k];
  return typeof v === 'string' || Array.isArray(v) ? v : undefined;
}
