import { getHeader, getHeaderList, type HeaderMap } from './headers.js';

/**
 * Vary (RFC 9111 §4.1): a stored response matches a request only if every field the stored Vary names has the same
 * value in the new request as in the request that produced the stored response. Values are compared after
 * normalising whitespace around commas, which §4.1 allows ("combining multiple header fields ... normalizing").
 */

/** The lowercase field names a response varies on (`*` included when present). */
export function varyFields(resHeaders: HeaderMap): string[] {
  return getHeaderList(resHeaders, 'vary').map((s) => s.toLowerCase());
}

/**
 * Fields whose values are case-insensitive tokens (language ranges, RFC 4647 §2; content-codings, RFC 9110 §8.4.1;
 * charsets, §8.3.2): their variants are compared without case. Member order is kept: with equal weights an origin may
 * still pick the first, so `en, de` and `de, en` stay different variants.
 */
const CASELESS = new Set(['accept-language', 'accept-encoding', 'accept-charset']);

function normalise(field: string, v: string | undefined): string {
  if (v === undefined) return '\u0000'; // absent differs from empty
  const joined = v
    .split(',')
    .map((s) => s.trim())
    .join(',');
  return CASELESS.has(field) ? joined.replace(/\s*([;=])\s*/g, '$1').toLowerCase() : joined;
}

/** A string that is equal for two requests exactly when they select the same variant under `fields`. */
export function varySignature(fields: readonly string[], reqHeaders: HeaderMap): string {
  if (fields.length === 0) return '';
  let sig = '';
  for (const f of fields) sig += `${f}:${normalise(f, getHeader(reqHeaders, f))}\n`;
  return sig;
}
