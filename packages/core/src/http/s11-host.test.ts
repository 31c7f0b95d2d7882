import { describe, expect, it } from 'vitest';
import { hostOk, isValidHost } from './target.js';

/**
 * isValidHost (RFC 9110 §7.2, RFC 3986 §3.2.2) is a loop for speed; it must answer as the grammar written as a regex
 * (the reference here) on any string.
 */
const REFERENCE = /^(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|(?:[0-9A-Za-z._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

describe('isValidHost', () => {
  it.each([
    ['example.com', true],
    ['Example.COM:8080', true],
    ['127.0.0.1:80', true],
    ['[::1]:8080', true],
    ['[::1]', true],
    ['a_b%2Dc', true],
    ['', true],
    ['t:', true],
    ['t u', false],
    ['t/../x', false],
    ['user@t', false],
    ['t\\x', false],
    ['t"x', false],
    ['<t>', false],
    ['t:8a', false],
    ['[::1', false],
    ['[]', false],
    ['a%2', false],
    ['a%zz', false],
    ['caf\u00e9', false],
    ['t:80:80', false],
  ])('%j -> %s', (h, ok) => {
    expect(isValidHost(h)).toBe(ok);
    expect(REFERENCE.test(h)).toBe(ok);
  });

  it('answers as the reference grammar on 20 000 random strings of host-ish characters', () => {
    const alphabet = "aZ09-._~!$&'()*+,;=%:[]@/ \\\"\u00e9Ff";
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let k = 0; k < 20_000; k++) {
      let h = '';
      const len = rnd(12);
      for (let j = 0; j < len; j++) h += alphabet[rnd(alphabet.length)];
      expect(isValidHost(h), JSON.stringify(h)).toBe(REFERENCE.test(h));
    }
  });

  it('hostOk remembers only a valid Host: an invalid one after it, or after another valid one, is still refused', () => {
    const req = (host: string): { method: string; url: string; headers: Record<string, string>; httpVersion: string } => ({ method: 'GET', url: '/', headers: { host }, httpVersion: '1.1' });
    expect(hostOk(req('a.example'))).toBe(true);
    expect(hostOk(req('a.example'))).toBe(true);
    expect(hostOk(req('a.example/x'))).toBe(false);
    expect(hostOk(req('a.example/x'))).toBe(false);
    expect(hostOk(req('b.example'))).toBe(true);
    expect(hostOk(req('a b'))).toBe(false);
  });
});
