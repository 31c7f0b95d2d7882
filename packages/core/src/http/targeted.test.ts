import { describe, expect, it } from 'vitest';
import { directivesOf, parseSurrogateControl, parseTargetedField, responseDirectives, RFC_RULES, VARNISH_RULES, type CacheRules } from './targeted.js';
import type { HeaderMap } from './headers.js';

describe('parseTargetedField (RFC 9213 §2.2, a structured dictionary)', () => {
  it.each([
    ['max-age=60', [['max-age', '60']]],
    ['max-age=60, private, no-cache="a, b"', [['max-age', '60'], ['private', true], ['no-cache', 'a, b']]],
    ['max-age=60;p=1, must-revalidate=?1', [['max-age', '60'], ['must-revalidate', true]]],
    ['max-age=60, max-age=5', [['max-age', '5']]],
    ['no-store=?0, max-age=5', [['max-age', '5']]],
  ] as const)('%s', (raw, want) => {
    expect([...(parseTargetedField(raw)?.entries() ?? [])]).toEqual(want);
  });

  it.each([['MAX-AGE=60'], ['max-age = 60'], ['max-age=60,,private'], ['max-age="6"0"'], ['max-age=@']])('%s is invalid as a whole', (raw) => {
    expect(parseTargetedField(raw)).toBeUndefined();
  });
});

describe('parseSurrogateControl (W3C Edge Architecture)', () => {
  it('keeps untargeted directives and those targeted at us, case-insensitive, cache directives only', () => {
    const cc = parseSurrogateControl('content="ESI/1.0", Max-Age=30+60;Sluice, no-store;other, foobar', 'sluice');
    expect([...cc.entries()]).toEqual([['max-age', '30']]);
  });
});

describe('responseDirectives (RFC 9213 §2.1)', () => {
  const headers = { 'cache-control': 'max-age=1', 'cdn-cache-control': 'max-age=2', 'surrogate-control': 'max-age=3' };
  it('the first target present and valid wins over Cache-Control', () => {
    expect(responseDirectives(headers, RFC_RULES)).toEqual({ cc: new Map([['max-age', '2']]), targeted: 'cdn-cache-control' });
    const { 'cdn-cache-control': _cdn, ...rest } = headers;
    expect(responseDirectives(rest, RFC_RULES).cc.get('max-age')).toBe('3');
  });

  it('without targets (varnish profile) Cache-Control is read', () => {
    expect(responseDirectives(headers, VARNISH_RULES)).toEqual({ cc: new Map([['max-age', '1']]), targeted: undefined });
  });
});

describe('directivesOf (responseDirectives shared between one response\'s readers, issue 16)', () => {
  // The answer is kept by the field values it came from, so a change to one of them (a hook editing the same headers
  // object, another response, other rules) must give that change's directives, never the kept ones.
  const same = (h: HeaderMap, rules: CacheRules): void => {
    expect(directivesOf(h, rules)).toEqual(responseDirectives(h, rules));
  };

  it('follows every edit of Cache-Control and of the targeted fields on one headers object', () => {
    const h: HeaderMap = { 'cache-control': 'max-age=60' };
    same(h, RFC_RULES);
    same(h, RFC_RULES);
    h['cache-control'] = 'no-store';
    same(h, RFC_RULES);
    h['cdn-cache-control'] = 'max-age=5';
    same(h, RFC_RULES);
    h['cdn-cache-control'] = 'max-age=6';
    same(h, RFC_RULES);
    delete h['cdn-cache-control'];
    h['surrogate-control'] = 'max-age=7';
    same(h, RFC_RULES);
    h['surrogate-control'] = ['max-age=8', 'no-store'];
    same(h, RFC_RULES);
    delete h['surrogate-control'];
    same(h, RFC_RULES);
    delete h['cache-control'];
    same(h, RFC_RULES);
  });

  it('another profile, or other target lists, with the same fields get their own answer', () => {
    const h: HeaderMap = { 'cache-control': 'max-age=1', 'cdn-cache-control': 'max-age=2', 'surrogate-control': 'max-age=3' };
    same(h, RFC_RULES);
    same(h, VARNISH_RULES);
    same(h, { profile: 'rfc', targets: ['surrogate-control'], deviceToken: 'sluice' });
    same(h, RFC_RULES);
  });

  it('an array field joined anew each time is still the same field', () => {
    const h: HeaderMap = { 'cache-control': ['max-age=9', 'private'] };
    const a = directivesOf(h, RFC_RULES);
    expect(directivesOf(h, RFC_RULES)).toBe(a);
    expect([...a.cc.keys()]).toEqual(['max-age', 'private']);
  });
});
