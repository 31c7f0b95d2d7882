import { deltaSeconds, type CacheControl } from './cache-control.js';
import { parseHttpDate } from './dates.js';
import { getHeader, getHeaderList, type HeaderMap } from './headers.js';
import { RFC_RULES, VARNISH_RULES, directivesOf, type CacheRules } from './targeted.js';

/**
 * Pure RFC 9111 rules for storing and freshness. No I/O and no clock: every time is a parameter (epoch ms).
 */

/** Status codes that are heuristically cacheable (RFC 9110 §15.1). */
export const HEURISTICALLY_CACHEABLE = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** The statuses the varnish profile stores (Varnish's builtin set, as before the rfc profile). */
const VARNISH_STORABLE = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);

/**
 * Final statuses defined by RFC 9110 §15, whose caching requirements this cache implements: what `must-understand`
 * (RFC 9111 §5.2.2.3) asks a cache to understand. 206 and 304 are never stored as a new object (partial storage is
 * the slicer's; a 304 only freshens).
 */
const RFC9110_FINAL = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
  410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
]);

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
  | 'must-understand'
  | 'no-freshness'
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
 * reuse a response to a request with Authorization unless must-revalidate, public or s-maxage allow it. The response
 * directives are those `rules` select (a targeted field over Cache-Control, RFC 9213). The varnish profile stores
 * only Varnish's status set; the rfc profile any final status (§3: a status it does not know only without
 * must-understand) that has explicit freshness, `public` or a heuristically cacheable status.
 */
export function notStorableReason(
  method: string,
  status: number,
  resHeaders: HeaderMap,
  reqCc: CacheControl,
  requestHadAuthorization: boolean,
  rules: CacheRules = RFC_RULES,
): NotStorableReason | undefined {
  if (method !== 'GET') return 'method';
  const { cc, targeted } = directivesOf(resHeaders, rules);
  const statusWhy = rules.profile === 'varnish' ? (VARNISH_STORABLE.has(status) ? undefined : 'status') : rfcStatusReason(status, cc);
  if (statusWhy !== undefined) return statusWhy;
  // §3: the no-store directive is not present in the request or response. §5.2.2.3: a cache that understands the
  // status of a must-understand response ignores no-store.
  if ((cc.has('no-store') && !cc.has('must-understand')) || reqCc.has('no-store')) return 'no-store';
  // §3: a shared cache MUST NOT store a response with the private directive.
  if (cc.has('private')) return 'private';
  if (requestHadAuthorization && !(cc.has('must-revalidate') || cc.has('public') || cc.has('s-maxage'))) {
    return 'authorization';
  }
  // §4.1: "A stored response with a Vary header field value containing a member "*" always fails to match."
  if (getHeaderList(resHeaders, 'vary').includes('*')) return 'vary-star';
  if (rules.profile === 'rfc' && !mayStoreFreshness(status, cc, targeted === undefined ? resHeaders : {})) return 'no-freshness';
  return undefined;
}

/** The rfc profile's status rule (RFC 9111 §3, §5.2.2.3). */
function rfcStatusReason(status: number, cc: ReadonlyMap<string, string | true>): NotStorableReason | undefined {
  if (status < 200 || status > 999 || status === 206 || status === 304) return 'status';
  if (cc.has('must-understand') && !RFC9110_FINAL.has(status)) return 'must-understand';
  return undefined;
}

/**
 * RFC 9111 §3: the response contains Expires, max-age, s-maxage or public, or has a heuristically cacheable status.
 * (`private` is for private caches; cache extensions that allow storing are none here.)
 */
function mayStoreFreshness(status: number, cc: ReadonlyMap<string, string | true>, headers: HeaderMap): boolean {
  return (
    HEURISTICALLY_CACHEABLE.has(status) ||
    cc.has('max-age') ||
    cc.has('s-maxage') ||
    cc.has('public') ||
    getHeader(headers, 'expires') !== undefined
  );
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
  rules: CacheRules = RFC_RULES,
): { lifetimeSec: number; source: FreshnessSource } {
  const { cc, targeted } = directivesOf(headers, rules);
  if (cc.has('s-maxage')) return { lifetimeSec: deltaSeconds(cc.get('s-maxage')) ?? 0, source: 's-maxage' };
  if (cc.has('max-age')) return { lifetimeSec: deltaSeconds(cc.get('max-age')) ?? 0, source: 'max-age' };
  // RFC 9213 §2.1: with a targeted field in use, Expires is ignored too.
  const expiresRaw = targeted === undefined ? getHeader(headers, 'expires') : undefined;
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
export function mayServeStale(headers: HeaderMap, rules: CacheRules = RFC_RULES): boolean {
  const { cc } = directivesOf(headers, rules);
  return !(cc.has('must-revalidate') || cc.has('proxy-revalidate') || cc.has('s-maxage') || cc.has('no-cache'));
}

// The age calculation lives in age.ts; re-exported for existing importers.
export { initialAgeSec, currentAgeSec } from './age.js';

/**
 * Responses the builtin policy refuses to share even when RFC-storable. The varnish profile (builtin.vcl
 * vcl_backend_response): Set-Cookie, no-cache, Surrogate-Control no-store. The rfc profile refuses none of these:
 * RFC 9111 lets a shared cache store Set-Cookie responses (the origin marks personal ones `private`), a no-cache
 * response is stored and revalidated on every use (its TTL is 0), and Surrogate-Control is a targeted field.
 */
export function builtinUncacheableReason(headers: HeaderMap, rules: CacheRules = VARNISH_RULES): BuiltinUncacheableReason | undefined {
  if (rules.profile === 'rfc') return undefined;
  const { cc } = directivesOf(headers, rules);
  if (headers['set-cookie'] !== undefined) return 'set-cookie';
  if (cc.has('no-cache')) return 'no-cache';
  const sc = getHeader(headers, 'surrogate-control');
  if (sc !== undefined && /no-store/i.test(sc)) return 'surrogate-control';
  return undefined;
}

/** RFC 9111 §5.2.2.4: a no-cache response (qualified or not, as most caches) is never reused without revalidation. */
export function mustRevalidateEachUse(headers: HeaderMap, rules: CacheRules = RFC_RULES): boolean {
  return directivesOf(headers, rules).cc.has('no-cache');
}
