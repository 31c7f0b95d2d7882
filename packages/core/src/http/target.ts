import type { HeaderMap } from './headers.js';

/** What target normalisation reads and rewrites of a request. */
export interface TargetRequest {
  method: string;
  url: string;
  headers: HeaderMap;
  httpVersion: string;
}

/**
 * Accepts origin-form, absolute-form (rewritten to origin-form + Host, RFC 9112 §3.2.2) and `OPTIONS *`;
 * false = bad target.
 */
export function normaliseTarget(req: TargetRequest): boolean {
  const url = req.url;
  if (url.startsWith('/')) return true;
  if (url === '*' && req.method === 'OPTIONS') return true;
  if (/^https?:\/\//i.test(url)) {
    try {
      const u = new URL(url);
      req.url = `${u.pathname}${u.search}`;
      req.headers['host'] = u.host;
      return true;
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * RFC 9110 §7.2: Host = uri-host [ ":" port ], RFC 3986 §3.2.2: an IP-literal in brackets, or a reg-name of
 * unreserved characters, pct-encoded octets and sub-delims (an IPv4 address is one). Empty is allowed (§7.2).
 */
const VALID_HOST = /^(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|(?:[0-9A-Za-z._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one, gets 400 (Varnish's builtin vcl_req_host
 * does the same). HTTP/1.0 may omit it. A Host whose value is not a host (a space, `/`, `@`, `\`, quotes: "a Host header
 * field with an invalid field value") gets 400 too, as nginx answers: it would name the object in the cache key.
 */
export function hostOk(req: TargetRequest): boolean {
  const h = req.headers['host'];
  if (Array.isArray(h)) return false;
  if (h === undefined) return req.httpVersion === '1.0';
  return VALID_HOST.test(h);
}

/**
 * The Host as the cache key, the purge and the bans see it. RFC 9110 §4.2.3: a host is case-insensitive and an
 * omitted port means the scheme's default; the client side speaks http only, so `:80` (and an empty port) is dropped.
 * A trailing dot names the same DNS host (a fully qualified name). So `Example.COM.:80` and `example.com` are one object.
 */
export function normaliseHost(host: string): string {
  let h = host.toLowerCase();
  if (h.endsWith(':80')) h = h.slice(0, -3);
  else if (h.endsWith(':')) h = h.slice(0, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}
