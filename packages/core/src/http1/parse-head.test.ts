import { describe, expect, it } from 'vitest';
import { parseRequestHead } from './parse-head.js';

describe('parseRequestHead (RFC 9112)', () => {
  it('parses a plain GET', () => {
    expect(parseRequestHead('GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Dup: 1\r\nX-Dup: 2')).toEqual({
      method: 'GET',
      target: '/a?b=1',
      version: '1.1',
      headers: { host: 'x', accept: '*/*', 'x-dup': '1, 2' },
      body: { kind: 'none' },
      keepAlive: true,
      expectContinue: false,
    });
  });

  it('stores the common fields (stored by name) like the rest, in any order and case, repeats joined, a second Host refused', () => {
    const r = parseRequestHead(
      'GET / HTTP/1.1\r\nUSER-AGENT: a\r\nAccept-Encoding: gzip\r\nhost: h\r\nX-Other: 1\r\naccept: */*\r\nUser-Agent: b\r\nConnection: keep-alive\r\nACCEPT-ENCODING: br\r\naccept: text/html',
    );
    expect('headers' in r && r.headers).toEqual({
      'user-agent': 'a, b',
      'accept-encoding': 'gzip, br',
      host: 'h',
      'x-other': '1',
      accept: '*/*, text/html',
      connection: 'keep-alive',
    });
    expect('headers' in r && Object.keys(r.headers)).toEqual(['user-agent', 'accept-encoding', 'host', 'x-other', 'accept', 'connection']);
    expect(parseRequestHead('GET / HTTP/1.1\r\nAccept: x\r\nHost: a\r\nHOST: b')).toEqual({ status: 400, reason: 'duplicate Host' });
  });

  it.each([
    ['HTTP/1.0 closes by default', 'GET / HTTP/1.0', false],
    ['HTTP/1.0 keep-alive', 'GET / HTTP/1.0\r\nConnection: keep-alive', true],
    ['HTTP/1.1 close', 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close', false],
    ['HTTP/1.1 default', 'GET / HTTP/1.1\r\nHost: x', true],
    ['HTTP/1.1 keep-alive', 'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive', true],
    ['HTTP/1.0 Keep-Alive in another case', 'GET / HTTP/1.0\r\nConnection: Keep-Alive', true],
    ['HTTP/1.0 keep-alive then close fields', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close', true],
    ['HTTP/1.1 keep-alive then close fields', 'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close', false],
    ['HTTP/1.1 keep-alive, close in one field', 'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close', false],
    ['HTTP/1.0 other token', 'GET / HTTP/1.0\r\nConnection: upgrade', false],
  ])('%s', (_n, head, keepAlive) => {
    const r = parseRequestHead(head);
    expect('keepAlive' in r && r.keepAlive).toBe(keepAlive);
  });

  it.each([
    ['Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12', { kind: 'length', length: 12 }],
    ['identical Content-Length list', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5', { kind: 'length', length: 5 }],
    ['zero length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0', { kind: 'none' }],
    ['chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked', { kind: 'chunked' }],
  ])('body framing: %s', (_n, head, body) => {
    const r = parseRequestHead(head);
    expect('body' in r && r.body).toEqual(body);
  });

  it.each([
    ['garbage', 'GARBAGE', 400],
    ['no version', 'GET /', 400],
    ['HTTP/2.0 on HTTP/1 framing', 'GET / HTTP/2.0\r\nHost: x', 505],
    ['control char in target', 'GET /a\x01b HTTP/1.1\r\nHost: x', 400],
    ['space before colon', 'GET / HTTP/1.1\r\nHost : x', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2', 400],
    ['no colon', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header', 400],
    ['duplicate Host', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b', 400],
    ['CL and TE together', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked', 400],
    ['conflicting CL', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4', 400],
    ['negative CL', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1', 400],
    ['chunked not last', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip', 400],
    ['unknown coding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked', 501],
    ['NUL in value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b', 400],
    ['an empty line inside the head (LF CRLF)', 'GET / HTTP/1.1\r\nHost: x\n\r\nContent-Length: 5', 400],
    ['an empty line inside the head (CRLF LF)', 'GET / HTTP/1.1\r\nHost: x\r\n\nX-A: 1', 400],
    ['target too long', `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: x`, 414],
    // Found by parse-head.fuzz.test.ts: String#trim stripped these control characters off the value's edges.
    ['VT at the start of a value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: \x0bv', 400],
    ['FF at the end of a value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: v\x0c', 400],
    ['bare CR before the CRLF', 'GET / HTTP/1.1\r\nX-A: v\r\r\nHost: x', 400],
    // Found by the long fuzz run (bench/results/2026-12-01-fuzz.md): String#trim made 0xA0 around a list member vanish.
    ['NBSP around a Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xa05', 400],
    ['NBSP after chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\xa0', 400],
    // Issue 10: an empty line ends the head; one inside it was skipped, reading what follows as fields.
    ['empty line inside the head', 'GET / HTTP/1.1\r\nHost: x\r\n\nX-A: 1', 400],
  ])('rejects %s', (_n, head, status) => {
    const r = parseRequestHead(head);
    expect('status' in r && r.status).toBe(status);
  });

  it('keeps obs-text 0xA0 at the edge of a value and accepts the CR of a "\\r\\n\\n" head end', () => {
    const r = parseRequestHead('GET / HTTP/1.1\r\nHost: x\r\nX-A: \xa0v\xa0\r');
    expect('headers' in r && r.headers['x-a']).toBe('\xa0v\xa0');
  });
});
