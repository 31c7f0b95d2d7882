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
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one, gets 400 (Varnish's builtin vcl_req_host
 * does the same). HTTP/1.0 may omit it.
 */
export function hostOk(req: TargetRequest): boolean {
  const h = req.headers['host'];
  if (Array.isArray(h)) return false;
  return h !== undefined || req.httpVersion === '1.0';
}
