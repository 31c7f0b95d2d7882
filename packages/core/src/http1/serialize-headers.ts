import type { HeaderMap } from '../http/headers.js';
import { ProxyError } from '../errors.js';

const BAD_VALUE = /[\r\n\0]/;
/** What serializeHeaders must look at in a value: a byte that breaks framing, or a character past one byte. */
const NEEDS_CARE = /[\r\n\0\u0100-\uffff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `name: value\r\n` lines, leaving out the names in `skip`; throws on a name or value that would break the framing (response splitting). */
export function serializeHeaders(headers: HeaderMap, skip?: ReadonlySet<string>): string {
  let out = '';
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || skip?.has(k) === true) continue;
    if (!TOKEN.test(k)) throw invalidHeader(`invalid header name ${JSON.stringify(k)}`);
    if (Array.isArray(v)) {
      for (const one of v) out += `${k}: ${NEEDS_CARE.test(one) ? wireValue(k, one) : one}\r\n`;
    } else {
      out += `${k}: ${NEEDS_CARE.test(v) ? wireValue(k, v) : v}\r\n`;
    }
  }
  return out;
}

/**
 * A value as the head's bytes (heads are written as latin1: one byte per character). CR, LF or NUL: refused. A
 * character above U+00FF can only come from policy (the wire is decoded as latin1): the value goes out as its UTF-8
 * bytes, as Varnish sends VCL strings. Values up to U+00FF keep one byte per character.
 */
function wireValue(k: string, v: string): string {
  if (BAD_VALUE.test(v)) throw invalidHeader(`invalid value for header ${k}`);
  return Buffer.from(v, 'utf8').toString('latin1');
}

/** A header that would break the response's framing (response splitting): refused, never written. */
function invalidHeader(message: string): ProxyError {
  return new ProxyError('CORE_ERR_INVALID_HEADER', message, { source: 'internal', status: 502 });
}
