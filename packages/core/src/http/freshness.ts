import { cacheControlOf, deltaSeconds, type CacheControl } from './cache-control.js';
import { parseHttpDate } from './dates.js';
import { getHeader, getHeaderList, type HeaderMap } from './headers.js';

/**
 * Pure RFC 9111 rules for storing and freshness. No I/O and no clock: every time is a parameter (epoch ms).
 */

/** Status codes that are heuristically cacheable (RFC 9110 §15.1). */
export const HEURISTICALLY_CACHEABLE = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** Status codes a cache understands well enough to store (RFC 9111 §3: "the response status code is final" and
 * understood by the cache). 206 is not stored whole: partial storage is the slicer's job. */
const UNDERSTOOD = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);

export interface FreshnessOptions {
  /** Used when the response carries no explicit freshness (Varnish's default_ttl); undefined = RFC heuristics. */
  defaultTtlSec?: number | undefined;
  /** Fraction of (Date - Last-Modified) used as heuristic lifetime; RFC 9111 §4.2.2 suggests 10%. */
  heuristicFraction: number;
  /** Cap on a heuristic lifetime, seconds. */
  heuristicMaxSec: number;
}

export const DEFAULT_FRESHNESS: FreshnessOptions = { heuristicFraction: 0.1, heuristicMaxSec: 86_400 };

/** Why a response may not be stored by a shared cache, or undefined when it may. */
export type NotStorableReason =
  | 'method'
  | 'status'
  | 'no-store'
  | 'private'
  | 'authorization'
  | 'vary-star';

/** builtin.vcl's extra reasons not to store (on top of RFC 9111's). */
export type BuiltinUncacheableReason = 'set-cookie' | 'no-cache' | 'surrogate-control';

/**
 * Why an object is not stored: a closed union (logged, and the Cache-Status detail derived from it). `policy` is any
 * hook's own decision; `pass`, `stale-if-error` and `response-too-large` come from the machine and the store.
 */
export type NotStoredReason =
  | NotStorableReason
  | BuiltinUncacheableReason
  | 'ttl-zero'
  | 'hit-for-pass'
  | 'policy'
  | 'pass'
  | 'stale-if-error'
  | 'response-too-large'
  | 'evicted';

/**
 * RFC 9111 §3 (storing responses) for a shared cache. `requestHadAuthorization` triggers §3.5: a shared cache MUST NOT
 * reuse a response to a request with Authorization unless must-revalidate, public or s-maxage allow it.
 */
export function notStorableReason(
  method: string,
  status: number,
  resHeaders: HeaderMap,
  reqCc: CacheControl,
  requestHadAuthorization: boolean,
): NotStorableReason | undefined {
  if (method !== 'GET') return 'method';
  if (!UNDERSTOOD.has(status)) return 'status';
  const cc = cacheControlOf(resHeaders);
  // §3: the no-store directive is not present in the request or response.
  if (cc.has('no-store') || reqCc.has('no-store')) return 'no-store';
  // §3: a shared cache MUST NOT store a response with the private directive.
  if (cc.has('private')) return 'private';
  if (requestHadAuthorization && !(cc.has('must-revalidate') || cc.has('public') || cc.has('s-maxage'))) {
    return 'authorization';
  }
  // §4.1: "A stored response with a Vary header field value containing a member "*" always fails to match."
  if (getHeaderList(resHeaders, 'vary').includes('*')) return 'vary-star';
  return undefined;
}

/** Where a freshness lifetime came from; logged and used by policy (Varnish users expect to see it). */
export type FreshnessSource = 's-maxage' | 'max-age' | 'expires' | 'default-ttl' | 'heuristic' | 'none';

/**
 * Freshness lifetime in seconds (RFC 9111 §4.2.1) for a shared cache: s-maxage, then max-age, then Expires - Date.
 * Without explicit freshness: `defaultTtlSec` when configured, otherwise the §4.2.2 heuristic from Last-Modified on a
 * heuristically cacheable status, otherwise 0 (not reused without revalidation).
 */
export function freshnessLifetime(
  status: number,
  headers: HeaderMap,
  responseTimeMs: number,
  opts: FreshnessOptions = DEFAULT_FRESHNESS,
): { lifetimeSec: number; source: FreshnessSource } {
  const cc = cacheControlOf(headers);
  if (cc.has('s-maxage')) return { lifetimeSec: deltaSeconds(cc.get('s-maxage')) ?? 0, source: 's-maxage' };
  if (cc.has('max-age')) return { lifetimeSec: deltaSeconds(cc.get('max-age')) ?? 0, source: 'max-age' };
  const expiresRaw = getHeader(headers, 'expires');
  if (expiresRaw !== undefined) {
    // §5.3: an invalid Expires (e.g. "0") represents a time in the past: already expired.
    const expires = parseHttpDate(expiresRaw);
    const date = parseHttpDate(getHeader(headers, 'date')) ?? responseTimeMs;
    const lifetimeSec = expires === undefined ? 0 : Math.max(0, Math.floor((expires - date) / 1000));
    return { lifetimeSec, source: 'expires' };
  }
  if (opts.defaultTtlSec !== undefined) return { lifetimeSec: opts.defaultTtlSec, source: 'default-ttl' };
  // §4.2.2: heuristics only when no explicit expiration and the status is heuristically cacheable (or public).
  if (HEURISTICALLY_CACHEABLE.has(status) || cc.has('public')) {
    const lm = parseHttpDate(getHeader(headers, 'last-modified'));
    if (lm !== undefined) {
      const date = parseHttpDate(getHeader(headers, 'date')) ?? responseTimeMs;
      const ageOfDocSec = Math.max(0, (date - lm) / 1000);
      const lifetimeSec = Math.min(opts.heuristicMaxSec, Math.floor(ageOfDocSec * opts.heuristicFraction));
      return { lifetimeSec, source: 'heuristic' };
    }
  }
  return { lifetimeSec: 0, source: 'none' };
}

/**
 * RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an explicit in-protocol
 * directive (e.g., by a no-cache response directive, a must-revalidate response directive, or an applicable s-maxage
 * or proxy-revalidate response directive)". For a shared cache s-maxage carries proxy-revalidate's semantics
 * (§5.2.2.10), and must-revalidate / proxy-revalidate hold even when the origin cannot be reached (§5.2.2.2), so
 * stale-if-error and operator grace give way too. True when no such directive is present.
 */
export function mayServeStale(headers: HeaderMap): boolean {
  const cc = cacheControlOf(headers);
  return !(cc.has('must-revalidate') || cc.has('proxy-revalidate') || cc.has('s-maxage') || cc.has('no-cache'));
}

// The age calculation lives in age.ts; re-exported for existing importers.
export { initialAgeSec, currentAgeSec } from './age.js';

/** Responses the default policy refuses to share even when RFC-storable (Varnish builtin vcl_backend_response). */
export function builtinUncacheableReason(headers: HeaderMap): BuiltinUncacheableReason | undefined {
  const cc = cacheControlOf(headers);
  if (headers['set-cookie'] !== undefined) return 'set-cookie';
  // no-cache: storable, but every reuse needs revalidation; until revalidation exists it is treated like Varnish does.
  if (cc.has('no-cache')) return 'no-cache';
  const sc = getHeader(headers, 'surrogate-control');
  if (sc !== undefined && /no-store/i.test(sc)) return 'surrogate-control';
  return undefined;
}
