import { util as undiciUtil } from 'undici';
import { describe, expect, it } from 'vitest';
import { headersOf } from './body.js';

/**
 * Session 11 (issue 16): the origin's header fields are parsed by headersOf instead of undici's parseHeaders. Same
 * object for the raw Buffers undici's parser hands over (names lowercased, repeats as arrays in order, latin1 values,
 * names Object.prototype has kept as own fields), except that `__proto__` is dropped (as before, by a delete).
 */
const raw = (...pairs: string[]): Buffer[] => pairs.map((p) => Buffer.from(p, 'latin1'));

describe('headersOf', () => {
  it.each<[string, Buffer[]]>([
    ['common fields', raw('Content-Length', '1024', 'Cache-Control', 'max-age=3600', 'Content-Type', 'application/octet-stream', 'ETag', '"s1"', 'Date', 'Wed, 02 Dec 2026 10:23:01 GMT', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5')],
    ['repeated fields', raw('Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'SET-COOKIE', 'c=3', 'Vary', 'accept', 'vary', 'cookie')],
    ['unknown and odd names', raw('X-Custom-Thing', 'v', 'constructor', 'c1', 'toString', 't', 'constructor', 'c2', 'hasOwnProperty', 'h')],
    ['latin1 and empty values', raw('x-bytes', '\u00e9t\u00e9 \u00ff', 'x-empty', '', 'x-sp', ' a b ')],
    ['nothing', []],
  ])('%s: as undici parseHeaders', (_name, fields) => {
    const want = undiciUtil.parseHeaders(fields) as Record<string, unknown>;
    const got = headersOf(fields);
    expect(got).toEqual(want);
    expect(Object.keys(got)).toEqual(Object.keys(want));
    for (const k of Object.keys(want)) expect(Object.hasOwn(got, k)).toBe(true);
  });

  it('drops a field named __proto__ and leaves the prototype alone', () => {
    const got = headersOf(raw('__proto__', 'x', 'a', '1', '__Proto__', 'y'));
    expect(Object.keys(got)).toEqual(['a']);
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
  });
});
