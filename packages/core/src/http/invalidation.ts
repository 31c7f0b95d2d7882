import { getHeader, type HeaderMap } from './headers.js';
import { normaliseHost } from './target.js';

/**
 * Invalidation by unsafe methods (RFC 9111 §4.4), as pure data: which stored URLs a response makes stale.
 */

/** RFC 9110 §9.2.1: the safe methods. Any other method, unknown ones included, is unsafe. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

export function isUnsafeMethod(method: string): boolean {
  return !SAFE_METHODS.has(method);
}

/**
 * RFC 9111 §4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status code in response to
 * an unsafe request method (including methods whose safety is unknown)", and MAY invalidate the URIs in Location and
 * Content-Location, but only when same-origin (their host is the request's host), so that a response cannot
 * invalidate another site's objects. Returns the origin-form targets (path and query) to invalidate on `host`; empty
 * for a safe method or an error status (4xx, 5xx; RFC 9111 §4.4: a non-error status is 2xx or 3xx).
 */
export function invalidatedTargets(method: string, status: number, url: string, host: string, resHeaders: HeaderMap): string[] {
  if (!isUnsafeMethod(method) || status < 200 || status >= 400) return [];
  const out = [url];
  const self = normaliseHost(host);
  let base: URL;
  try {
    base = new URL(url, `http://${host === '' ? 'invalid.invalid' : host}`);
  } catch {
    return out;
  }
  for (const name of ['location', 'content-location']) {
    const raw = getHeader(resHeaders, name);
    if (raw === undefined) continue;
    let u: URL;
    try {
      u = new URL(raw.trim(), base);
    } catch {
      continue;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') continue;
    if (normaliseHost(u.host) !== self) continue;
    const target = `${u.pathname}${u.search}`;
    if (!out.includes(target)) out.push(target);
  }
  return out;
}
