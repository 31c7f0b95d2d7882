import { parseHttpDate } from './dates.js';
import { getHeader, getHeaderList, type HeaderMap } from './headers.js';

/**
 * Conditional requests a cache answers from a stored response (RFC 9110 §13.2.2 order, RFC 9111 §4.3.2):
 * If-None-Match first (weak comparison); only without it, If-Modified-Since against Last-Modified (or, without one,
 * Date). Only GET/HEAD.
 * Returns true when the answer is 304 Not Modified.
 */
export function isNotModified(method: string, reqHeaders: HeaderMap, stored: HeaderMap): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const inm = getHeader(reqHeaders, 'if-none-match');
  if (inm !== undefined) {
    const etag = getHeader(stored, 'etag');
    if (inm.trim() === '*') return true;
    if (etag === undefined) return false;
    const opaque = (t: string): string => (t.startsWith('W/') ? t.slice(2) : t);
    // §13.1.2: If-None-Match uses the weak comparison function.
    return getHeaderList(reqHeaders, 'if-none-match').some((t) => opaque(t) === opaque(etag));
  }
  const ims = parseHttpDate(getHeader(reqHeaders, 'if-modified-since'));
  if (ims === undefined) return false;
  // RFC 9111 §4.3.2: a stored response without Last-Modified is dated by its Date field.
  const lm = parseHttpDate(getHeader(stored, 'last-modified') ?? getHeader(stored, 'date'));
  return lm !== undefined && lm <= ims;
}

/**
 * Fields a 304 carries (RFC 9110 §15.4.5): those that would have been sent in a 200 among Cache-Control,
 * Content-Location, Date, ETag, Expires and Vary, plus Last-Modified (useful to caches downstream).
 */
const NOT_MODIFIED_FIELDS = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified'];

export function notModifiedHeaders(stored: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const k of NOT_MODIFIED_FIELDS) {
    const v = stored[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** Validators of a stored response for a conditional origin request (RFC 9111 §4.3.1). */
export function revalidationHeaders(stored: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  const etag = getHeader(stored, 'etag');
  const lm = getHeader(stored, 'last-modified');
  if (etag !== undefined) out['if-none-match'] = etag;
  if (lm !== undefined) out['if-modified-since'] = lm;
  return out;
}

export function hasValidator(stored: HeaderMap): boolean {
  return stored['etag'] !== undefined || stored['last-modified'] !== undefined;
}

/**
 * Fields a 304 never replaces (RFC 9111 §3.2): framing (Content-Length, Transfer-Encoding) and fields that describe
 * the stored content's bytes (Content-Encoding, Content-Range, Content-MD5 and the digests). Nor ETag: a 304's
 * validator selects the stored response it freshens (§4.3.4), it does not rename the stored representation (a 304
 * whose strong ETag differs may not update it at all; the public suite's 304-etag-update-response-ETag).
 */
const NOT_UPDATED_BY_304 = new Set([
  'etag',
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'content-range',
  'content-md5',
  'digest',
  'content-digest',
  'repr-digest',
]);

/**
 * RFC 9111 §4.3.4 and §3.2: on a 304, every header field of the 304 replaces the stored one (Cache-Control, Expires,
 * Content-Type, extension fields...), except those in NOT_UPDATED_BY_304. Returns the merged map (a new object).
 */
export function mergeNotModified(stored: HeaderMap, notModified: HeaderMap): HeaderMap {
  const out: HeaderMap = { ...stored };
  for (const k in notModified) {
    if (NOT_UPDATED_BY_304.has(k)) continue;
    const v = notModified[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
