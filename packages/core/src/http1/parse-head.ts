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

/** Reason phrases of the statuses the connection answers by itself. */
export const REASONS: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  505: 'HTTP Version Not Supported',
};

export type HeadError = { status: 400 | 414 | 431 | 501 | 505; reason: string };

export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
export const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
const MAX_TARGET = 8192;
// Module constants, not literals in the parser: a regex literal in a function body is a new RegExp object per call.
export const BAD_TARGET = /[\s\0-\x1f\x7f]/;
const CONN_CLOSE = /(^|,)\s*close\s*(,|$)/;
const CONN_KEEP_ALIVE = /(^|,)\s*keep-alive\s*(,|$)/;

// The checks below are these regexes as character loops (a RegExp call costs more than the loop over a short method,
// target, field name or value: a 1 KiB hit's profile); the fuzz tests hold them equal to the regexes.
/** tchar (RFC 9110 §5.6.2) by character code below 128. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

/** TOKEN.test(s): one or more tchars. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** BAD_VALUE.test(v): a control character other than HTAB, or DEL. */
export function hasBadValueChar(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

/** BAD_TARGET.test(t): whitespace (JavaScript's \s, Unicode's included), a control character or DEL. */
export function hasBadTargetChar(t: string): boolean {
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c <= 32 || c === 127 || c === 0xa0) return true;
    // Past latin1 (never from the socket, which is decoded as latin1): \s also holds Unicode spaces.
    if (c > 0xff) return BAD_TARGET.test(t);
  }
  return false;
}

/**
 * name.toLowerCase(), as the literal for the common request fields in their usual spellings: an interned string is a
 * property key as it is, where a new one is hashed and looked up in V8's string table on every store and load.
 */
function lowerName(name: string): string {
  switch (name) {
    case 'Host':
    case 'host':
      return 'host';
    case 'User-Agent':
    case 'user-agent':
      return 'user-agent';
    case 'Accept':
    case 'accept':
      return 'accept';
    case 'Accept-Encoding':
    case 'accept-encoding':
      return 'accept-encoding';
    case 'Accept-Language':
    case 'accept-language':
      return 'accept-language';
    case 'Connection':
    case 'connection':
      return 'connection';
    case 'Cookie':
    case 'cookie':
      return 'cookie';
    default:
      return name.toLowerCase();
  }
}

/**
 * headers[key] = value for a field not there yet; the common request fields by name. A store with a changing key is
 * a megamorphic keyed store (a stub-cache probe and often a runtime call) on every request; a store by name is an
 * inline map transition, and the usual heads (Host first) then share their objects' shapes. `key` is lowerName's:
 * the literal for these names, so the comparisons are by reference.
 */
function storeField(headers: HeaderMap, key: string, value: string): void {
  switch (key) {
    case 'host':
      headers['host'] = value;
      return;
    case 'user-agent':
      headers['user-agent'] = value;
      return;
    case 'accept':
      headers['accept'] = value;
      return;
    case 'accept-encoding':
      headers['accept-encoding'] = value;
      return;
    case 'connection':
      headers['connection'] = value;
      return;
    default:
      headers[key] = value;
  }
}

/** The last space of s before `end` (s.lastIndexOf(' ', end - 1) there), without String#lastIndexOf's runtime call. */
function lastSpace(s: string, end: number): number {
  for (let i = end - 1; i >= 0; i--) if (s.charCodeAt(i) === 32) return i;
  return -1;
}

/**
 * Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends of a field value. Not String#trim, which
 * also strips VT, FF, CR and NBSP (0xA0, valid obs-text): a control character at the edge of a value would slip past
 * the check below, and a value ending in 0xA0 would change. A loop, not a regex: `[ \t]+$` is quadratic on a long
 * run of inner spaces.
 */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return s.slice(a, b);
}

export function parseRequestHead(head: string): RequestHead | HeadError {
  // The head is read in place, line by line, by offsets: no array of lines and no string per line (a 1 KiB hit's
  // profile), the same lines as `head.split(/\r?\n/)` gives.
  // A head cut before "\n\n" whose last line ended in CRLF keeps that CR: it belongs to the line ending.
  const len = head.charCodeAt(head.length - 1) === 13 ? head.length - 1 : head.length;
  // RFC 9112 §2.2: a bare LF is accepted as a line terminator; a CR just before a LF belongs to the line ending.
  const lf = head.indexOf('\n');
  const lineEnd = lf < 0 ? len : lf > 0 && head.charCodeAt(lf - 1) === 13 ? lf - 1 : lf;
  const next = lf < 0 ? -1 : lf + 1;
  let sp1 = head.indexOf(' ');
  if (sp1 >= lineEnd) sp1 = -1;
  const sp2 = lastSpace(head, lineEnd);
  if (sp1 <= 0 || sp2 === sp1) return { status: 400, reason: 'malformed request line' };
  // GET as the literal: an interned string whose hash is known, for the Set lookups and comparisons after.
  let method = head.slice(0, sp1);
  if (method === 'GET') method = 'GET';
  const target = head.slice(sp1 + 1, sp2);
  const proto = head.slice(sp2 + 1, lineEnd);
  if (method !== 'GET' && !isToken(method)) return { status: 400, reason: 'invalid method' };
  if (target.length > MAX_TARGET) return { status: 414, reason: 'request target too long' };
  if (target === '' || hasBadTargetChar(target)) return { status: 400, reason: 'invalid request target' };
  const version = proto === 'HTTP/1.1' ? '1.1' : versionOf(proto);
  if (typeof version !== 'string') return version;

  const headers = parseFields(head, next, len);
  if (isHeadError(headers)) return headers;

  const body = framingOf(headers, version);
  if (isHeadError(body)) return body;

  const connField = headers['connection'];
  // `Connection: keep-alive` as sent (most clients): kept alive in both versions, without the regexes below.
  const conn = connField === undefined || connField === 'keep-alive' ? '' : (Array.isArray(connField) ? connField.join(',') : connField).toLowerCase();
  const keepAlive = connField === 'keep-alive' || (version === '1.1' ? conn === '' || !CONN_CLOSE.test(conn) : conn !== '' && CONN_KEEP_ALIVE.test(conn));
  const expect = headers['expect'];
  const expectContinue = typeof expect === 'string' && expect.toLowerCase() === '100-continue';
  return { method, target, version, headers, body, keepAlive, expectContinue };
}

/**
 * The header lines of `head` from offset `from` (-1: none) up to `len`, into a map (names lowercased; repeated fields
 * joined, Set-Cookie kept as a list).
 */
function parseFields(head: string, from: number, len: number): HeaderMap | HeadError {
  const headers: HeaderMap = {};
  // Lines stored so far: the first has nothing to join with (no own-field check).
  let fields = 0;
  let next = from;
  let lf: number;
  while (next >= 0) {
    const start = next;
    lf = head.indexOf('\n', start);
    let end: number;
    if (lf < 0) {
      end = len;
      next = -1;
    } else {
      end = lf > start && head.charCodeAt(lf - 1) === 13 ? lf - 1 : lf;
      next = lf + 1;
    }
    // §2.2: the first empty line ends the head. One here means the framing was ambiguous ("\n\n" before "\r\n\r\n");
    // skipping it would read the body or the next request as fields.
    if (start === end) return { status: 400, reason: 'empty line inside the request head' };
    // §5.2: obsolete line folding is rejected.
    const c0 = head.charCodeAt(start);
    if (c0 === 32 || c0 === 9) return { status: 400, reason: 'obsolete line folding' };
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end) return { status: 400, reason: 'malformed header line' };
    const name = head.slice(start, colon);
    // §5.1: no whitespace between the field name and the colon.
    if (!isToken(name)) return { status: 400, reason: 'invalid header name' };
    // Optional whitespace (SP / HTAB, RFC 9110 §5.6.3) off both ends of the value: see trimOws.
    let a = colon + 1;
    let b = end;
    while (a < b && (head.charCodeAt(a) === 32 || head.charCodeAt(a) === 9)) a++;
    while (b > a && (head.charCodeAt(b - 1) === 32 || head.charCodeAt(b - 1) === 9)) b--;
    const value = head.slice(a, b);
    if (hasBadValueChar(value)) return { status: 400, reason: 'invalid header value' };
    const key = lowerName(name);
    // Own fields only: a field named like an Object.prototype member (`constructor`) must not start from the
    // inherited value. A field named `__proto__` cannot be stored in a plain object and is dropped.
    const prev = fields === 0 || !Object.hasOwn(headers, key) ? undefined : headers[key];
    fields++;
    if (prev === undefined) storeField(headers, key, value);
    else if (key === 'host') return { status: 400, reason: 'duplicate Host' };
    else if (Array.isArray(prev)) prev.push(value);
    else headers[key] = key === 'set-cookie' ? [prev, value] : `${prev}, ${value}`;
  }
  // §3.2: a 1.1 request without Host gets 400 too, but from the proxy (as Varnish's vcl_req_host), where it is
  // logged as a transaction; a duplicate Host is refused here because it makes the request ambiguous.
  return headers;
}

/** The version of a protocol field other than `HTTP/1.1` (which the caller checks first, without a regex). */
function versionOf(proto: string): '1.0' | '1.1' | HeadError {
  const pm = /^HTTP\/(\d)\.(\d)$/.exec(proto);
  if (pm === null) return { status: 400, reason: 'invalid protocol version' };
  if (pm[1] !== '1') return { status: 505, reason: 'HTTP version not supported' };
  return pm[2] === '0' ? '1.0' : '1.1';
}

/** A refusal (its status is a number; a header map's values are strings, so a `Status:` header is never one). */
export function isHeadError<T extends object>(v: T | HeadError): v is HeadError {
  return typeof (v as HeadError).status === 'number';
}

/** Body framing from the head (RFC 9112 §6.1-§6.3); refuses what could smuggle a request. */
function framingOf(headers: HeaderMap, version: string): RequestHead['body'] | HeadError {
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined) {
    // §6.1 and §6.3: both present is a smuggling vector; a proxy rejects it.
    if (cl !== undefined) return { status: 400, reason: 'both Content-Length and Transfer-Encoding' };
    if (version === '1.0') return { status: 400, reason: 'Transfer-Encoding in HTTP/1.0' };
    const codings = (Array.isArray(te) ? te.join(',') : te).split(',').map((s) => trimOws(s).toLowerCase());
    if (codings[codings.length - 1] !== 'chunked') return { status: 400, reason: 'chunked must be the final transfer coding' };
    if (codings.length > 1) return { status: 501, reason: 'unsupported transfer coding' };
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    // §6.3: a list of identical values may be collapsed; anything else invalid is a 400.
    const values = (Array.isArray(cl) ? cl.join(',') : cl).split(',').map(trimOws);
    const first = values[0] as string;
    if (!/^\d{1,15}$/.test(first) || values.some((v) => v !== first)) return { status: 400, reason: 'invalid Content-Length' };
    const length = Number(first);
    headers['content-length'] = String(length);
    if (length > 0) return { kind: 'length', length };
  }
  return { kind: 'none' };

}

/**
 * The status for a head over `maxHeadBytes`, given the start of it (`window`, latin1): 431, or 414 when the request
 * line alone is over the limit (no LF in it): RFC 9112 §3, a request-target longer than the server parses MUST get 414,
 * as nginx answers.
 */
export function oversizeStatus(window: string, maxHeadBytes: number): 414 | 431 {
  const lf = window.indexOf('\n');
  return lf < 0 || lf > maxHeadBytes ? 414 : 431;
}
