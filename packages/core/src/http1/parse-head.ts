import type { HeaderMap } from '../http/headers.js';

/**
 * Pure HTTP/1.1 request-head parser (RFC 9112 §2-§6). Input: the bytes up to and excluding the blank line that ends
 * the head. Strict where leniency enables request smuggling: Content-Length and Transfer-Encoding together are
 * rejected, as are invalid or conflicting lengths, whitespace before a colon, obsolete line folding and control
 * characters in values.
 */
export interface RequestHead {
  method: string;
  target: string;
  /** '1.1' or '1.0' */
  version: string;
  headers: HeaderMap;
  /** Body framing decided from the head. */
  body: { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };
  /** Whether the connection may be reused after this exchange (RFC 9112 §9.3). */
  keepAlive: boolean;
  expectContinue: boolean;
}

export type HeadError = { status: 400 | 414 | 431 | 501 | 505; reason: string };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
const MAX_TARGET = 8192;

export function parseRequestHead(head: string): RequestHead | HeadError {
  // RFC 9112 §2.2: a bare LF is accepted as a line terminator. Split on CRLF first (the common case, no regex).
  let lines = head.split('\r\n');
  if (lines.some((l) => l.includes('\n'))) lines = head.split(/\r?\n/);
  const requestLine = lines[0] ?? '';
  const sp1 = requestLine.indexOf(' ');
  const sp2 = requestLine.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 === sp1) return { status: 400, reason: 'malformed request line' };
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const proto = requestLine.slice(sp2 + 1);
  if (!TOKEN.test(method)) return { status: 400, reason: 'invalid method' };
  if (target.length > MAX_TARGET) return { status: 414, reason: 'request target too long' };
  if (target === '' || /[\s\0-\x1f\x7f]/.test(target)) return { status: 400, reason: 'invalid request target' };
  const pm = /^HTTP\/(\d)\.(\d)$/.exec(proto);
  if (pm === null) return { status: 400, reason: 'invalid protocol version' };
  if (pm[1] !== '1') return { status: 505, reason: 'HTTP version not supported' };
  const version = pm[2] === '0' ? '1.0' : '1.1';

  const headers = parseHeaderLines(lines);
  if (isHeadError(headers)) return headers;
  const body = framingOf(headers, version);
  if (isHeadError(body)) return body;

  const conn = (Array.isArray(headers['connection']) ? headers['connection'].join(',') : headers['connection'] ?? '').toLowerCase();
  const keepAlive = version === '1.1' ? !/(^|,)\s*close\s*(,|$)/.test(conn) : /(^|,)\s*keep-alive\s*(,|$)/.test(conn);
  const expect = headers['expect'];
  const expectContinue = typeof expect === 'string' && expect.toLowerCase() === '100-continue';
  return { method, target, version, headers, body, keepAlive, expectContinue };
}

/** A refusal (its status is a number; a header map's values are strings, so a `Status:` header is never one). */
export function isHeadError<T extends object>(v: T | HeadError): v is HeadError {
  return typeof (v as HeadError).status === 'number';
}

/** Header lines into a map (names lowercased; repeated fields joined, Set-Cookie kept as a list). */
function parseHeaderLines(lines: string[]): HeaderMap | HeadError {
  const headers: HeaderMap = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    // §2.2: the first empty line ends the head. One inside it (mixed LF and CRLF: `\n\r\n`) would end it early for
    // a peer that splits lines the other way, and what follows would be its body or next request: refused, not skipped.
    if (line === '') return { status: 400, reason: 'empty line in header section' };
    // §5.2: obsolete line folding is rejected.
    if (line[0] === ' ' || line[0] === '\t') return { status: 400, reason: 'obsolete line folding' };
    const colon = line.indexOf(':');
    if (colon <= 0) return { status: 400, reason: 'malformed header line' };
    const name = line.slice(0, colon);
    // §5.1: no whitespace between the field name and the colon.
    if (!TOKEN.test(name)) return { status: 400, reason: 'invalid header name' };
    const value = line.slice(colon + 1).trim();
    if (BAD_VALUE.test(value)) return { status: 400, reason: 'invalid header value' };
    const key = name.toLowerCase();
    const prev = headers[key];
    if (prev === undefined) headers[key] = value;
    else if (key === 'host') return { status: 400, reason: 'duplicate Host' };
    else if (Array.isArray(prev)) prev.push(value);
    else headers[key] = key === 'set-cookie' ? [prev, value] : `${prev}, ${value}`;
  }
  // §3.2: a 1.1 request without Host gets 400 too, but from the proxy (as Varnish's vcl_req_host), where it is
  // logged as a transaction; a duplicate Host is refused here because it makes the request ambiguous.

  return headers;
}

/** Body framing from the head (RFC 9112 §6.1-§6.3); refuses what could smuggle a request. */
function framingOf(headers: HeaderMap, version: string): RequestHead['body'] | HeadError {
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined) {
    // §6.1 and §6.3: both present is a smuggling vector; a proxy rejects it.
    if (cl !== undefined) return { status: 400, reason: 'both Content-Length and Transfer-Encoding' };
    if (version === '1.0') return { status: 400, reason: 'Transfer-Encoding in HTTP/1.0' };
    const codings = (Array.isArray(te) ? te.join(',') : te).split(',').map((s) => s.trim().toLowerCase());
    if (codings[codings.length - 1] !== 'chunked') return { status: 400, reason: 'chunked must be the final transfer coding' };
    if (codings.length > 1) return { status: 501, reason: 'unsupported transfer coding' };
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    // §6.3: a list of identical values may be collapsed; anything else invalid is a 400.
    const values = (Array.isArray(cl) ? cl.join(',') : cl).split(',').map((s) => s.trim());
    const first = values[0] as string;
    if (!/^\d{1,15}$/.test(first) || values.some((v) => v !== first)) return { status: 400, reason: 'invalid Content-Length' };
    const length = Number(first);
    headers['content-length'] = String(length);
    if (length > 0) return { kind: 'length', length };
  }
  return { kind: 'none' };

}
