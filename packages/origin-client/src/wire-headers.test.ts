import { describe, expect, it } from 'vitest';
import { wireHeaders } from './wire-headers.js';

describe('wireHeaders (request header values as undici writes them: latin1)', () => {
  it('leaves values up to U+00FF as they are, and the object itself when nothing changes', () => {
    const h = { host: 't', 'x-latin': 'caf\u00e9', list: ['a', '\u00ff'] };
    expect(wireHeaders(h)).toBe(h);
  });

  it('a value past U+00FF becomes its UTF-8 bytes, one character per byte; the caller object is not changed', () => {
    const h = { host: 't', 'x-snow': 'a\u2603b', list: ['x', '\u{1f600}'], n: 5 as unknown as string };
    const out = wireHeaders(h);
    expect(out).not.toBe(h);
    expect(Buffer.from(out['x-snow'], 'latin1')).toEqual(Buffer.from('a\u2603b', 'utf8'));
    expect((out.list as string[]).map((v) => Buffer.from(v, 'latin1').toString('hex'))).toEqual(['78', 'f09f9880']);
    expect(out.host).toBe('t');
    expect(out.n).toBe(5);
    expect(h['x-snow']).toBe('a\u2603b');
  });

  it('other shapes (arrays of pairs, null) pass through untouched', () => {
    const pairs = ['x-a', 'a\u2603b'];
    expect(wireHeaders(pairs)).toBe(pairs);
    expect(wireHeaders(null)).toBe(null);
  });
});
