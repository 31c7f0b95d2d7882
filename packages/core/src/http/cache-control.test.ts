import { describe, expect, it } from 'vitest';
import { cacheControlOf, deltaSeconds, parseCacheControl } from './cache-control.js';
import type { HeaderMap } from './headers.js';

type Entries = Array<[string, string | true]>;
const entries = (raw: string | undefined): Entries => [...parseCacheControl(raw).entries()];

describe('parseCacheControl: directive names (RFC 9111 §5.2)', () => {
  // §5.2: "Cache directives are identified by a token, to be compared case-insensitively".
  it.each<[string, string, Entries]>([
    ['lowercases a bare directive', 'NO-STORE', [['no-store', true]]],
    ['lowercases a mixed-case name with an argument', 'Max-Age=60', [['max-age', '60']]],
    ['keeps the case of a token argument', 'x-ext=AbC', [['x-ext', 'AbC']]],
    ['keeps the case of a quoted argument', 'private="Set-Cookie"', [['private', 'Set-Cookie']]],
    ['keeps unknown extension directives', 'community="UCI", foo', [['community', 'UCI'], ['foo', true]]],
  ])('%s', (_name, raw, want) => expect(entries(raw)).toEqual(want));
});

describe('parseCacheControl: arguments (RFC 9111 §5.2, quoted-string RFC 9110 §5.6.4)', () => {
  it.each<[string, string, Entries]>([
    ['a directive without "=" is true', 'no-cache', [['no-cache', true]]],
    ['a token argument is kept as text', 'max-age=3600', [['max-age', '3600']]],
    ['a comma inside a quoted string does not split the directive', 'no-cache="set-cookie, x-a", max-age=5', [['no-cache', 'set-cookie, x-a'], ['max-age', '5']]],
    ['several commas inside one quoted string', 'private="a,b,c"', [['private', 'a,b,c']]],
    ['a quoted-pair is unescaped (§5.6.4)', 'x="a\\"b\\\\c"', [['x', 'a"b\\c']]],
    ['an escaped quote does not end the string', 'x="a\\", max-age=1", y', [['x', 'a", max-age=1'], ['y', true]]],
    ['an empty quoted string is an empty argument', 'no-cache=""', [['no-cache', '']]],
    ['an empty token argument is an empty string, not true', 'max-age=', [['max-age', '']]],
    ['an unterminated quoted string runs to the end of the field', 'no-cache="a, b', [['no-cache', 'a, b']]],
    ['an "=" inside a quoted string is part of the argument', 'x="a=b", y=1', [['x', 'a=b'], ['y', '1']]],
  ])('%s', (_name, raw, want) => expect(entries(raw)).toEqual(want));

  // §5.2: "recipients ought to accept both forms, even if a specific form is required for generation".
  it('accepts the quoted form of a delta-seconds argument and strips the quotes', () => {
    const cc = parseCacheControl('max-age="3600"');
    expect(cc.get('max-age')).toBe('3600');
    expect(deltaSeconds(cc.get('max-age'))).toBe(3600);
  });
});

describe('parseCacheControl: list syntax (RFC 9110 §5.6.1)', () => {
  it.each<[string, string | undefined, Entries]>([
    ['absent field', undefined, []],
    ['empty field', '', []],
    ['only separators and whitespace', ' , ,\t,', []],
    ['empty list members are skipped', ',,max-age=1,,public,', [['max-age', '1'], ['public', true]]],
    ['spaces and tabs around members are ignored', ' \tmax-age=1 ,\tpublic\t, no-transform ', [['max-age', '1'], ['public', true], ['no-transform', true]]],
    ['optional whitespace around a token argument is trimmed', 'max-age=60 , public', [['max-age', '60'], ['public', true]]],
    ['members keep their order of appearance', 'public, max-age=1, must-revalidate', [['public', true], ['max-age', '1'], ['must-revalidate', true]]],
  ])('%s', (_name, raw, want) => expect(entries(raw)).toEqual(want));
});

describe('parseCacheControl: duplicate directives (RFC 9111 §4.2.1)', () => {
  // §4.2.1: with more than one value for a directive, "either the first occurrence should be used or the response
  // should be considered stale". The parser uses the first.
  it.each<[string, string, string, string | true]>([
    ['first max-age wins', 'max-age=1, max-age=2', 'max-age', '1'],
    ['duplicates differing in case are the same directive', 'Max-Age=10, max-age=20', 'max-age', '10'],
    ['first wins even when it is invalid', 'max-age=abc, max-age=5', 'max-age', 'abc'],
    ['a bare occurrence before an argument wins', 'no-cache, no-cache="x"', 'no-cache', true],
  ])('%s', (_name, raw, directive, want) => {
    const cc = parseCacheControl(raw);
    expect(cc.get(directive)).toBe(want);
    expect(cc.size).toBe(1);
  });
});

describe('cacheControlOf', () => {
  it.each<[string, HeaderMap, Entries]>([
    ['reads the cache-control field', { 'cache-control': 'max-age=5' }, [['max-age', '5']]],
    ['no field is an empty map', { 'content-type': 'text/plain' }, []],
    // RFC 9110 §5.3: several field lines combine into one comma-separated list, in order.
    ['several field lines are one list', { 'cache-control': ['max-age=5', 'no-transform'] }, [['max-age', '5'], ['no-transform', true]]],
    ['across field lines the first duplicate wins (RFC 9111 §4.2.1)', { 'cache-control': ['max-age=5', 'max-age=9'] }, [['max-age', '5']]],
  ])('%s', (_name, headers, want) => expect([...cacheControlOf(headers).entries()]).toEqual(want));
});

describe('deltaSeconds (RFC 9111 §1.2.2)', () => {
  // §1.2.2: delta-seconds = 1*DIGIT, a non-negative integer.
  it.each<[string, string | true | undefined, number | undefined]>([
    ['zero', '0', 0],
    ['an ordinary value', '3600', 3600],
    ['leading zeros are still digits', '007', 7],
    ['absent', undefined, undefined],
    ['a directive without argument', true, undefined],
    ['empty', '', undefined],
    ['negative', '-1', undefined],
    ['explicit plus sign', '+5', undefined],
    ['decimal fraction', '1.5', undefined],
    ['exponent notation', '1e3', undefined],
    ['hexadecimal', '0x10', undefined],
    ['trailing garbage', '60s', undefined],
    ['inner whitespace', '6 0', undefined],
    ['surrounding whitespace (the parser trims; a raw value must be bare digits)', ' 60', undefined],
    ['non-ASCII digits', '٣٦٠٠', undefined],
  ])('%s', (_name, arg, want) => expect(deltaSeconds(arg)).toBe(want));

  // §1.2.2: a value greater than the greatest integer the cache can represent, or an overflowing calculation, MUST
  // be taken as 2147483648 (2^31) or the greatest positive integer it can conveniently represent.
  it.each<[string, string, number]>([
    ['2^31 - 1 is kept', '2147483647', 2147483647],
    ['2^31 is kept', '2147483648', 2147483648],
    ['2^31 + 1 saturates at 2^31', '2147483649', 2147483648],
    ['2^53 + 1 saturates at 2^31', '9007199254740993', 2147483648],
    ['a value beyond a double saturates at 2^31', '9'.repeat(400), 2147483648],
  ])('%s', (_name, arg, want) => expect(deltaSeconds(arg)).toBe(want));

  it('a max-age parsed from a header saturates too', () => {
    expect(deltaSeconds(parseCacheControl('max-age=99999999999999999999').get('max-age'))).toBe(2147483648);
  });
});
