import { describe, expect, it } from 'vitest';
import { parseSurrogateControl, parseTargetedField, responseDirectives, RFC_RULES, VARNISH_RULES } from './targeted.js';

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
