import { parseHttpDate } from './dates.js';
import { getHeader, getHeaderList, type HeaderMap } from './headers.js';

/**
 * Conditional requests a cache answers from a stored response (RFC 9110 §13.2.2 order, RFC 9111 §4.3.2):
 * If-None-Match first (weak comparison); only without it, If-Modified-Since against Last-Modified. Only GET/HEAD.
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
  const lm = parseHttpDate(getHeader(stored, 'last-modified'));
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
 * RFC 9111 §4.3.4: on a 304, the stored response's header fields are updated with those of the 304, except
 * framing fields. Returns the merged header map (a new object).
 */
export function mergeNotModified(stored: HeaderMap, notModified: HeaderMap): HeaderMap {
  const out: HeaderMap = { ...stored };
  for (const k in notModified) {
    if (k === 'content-length' || k === 'transfer-encoding' || k === 'content-encoding' || k === 'content-range') continue;
    const v = notModified[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
