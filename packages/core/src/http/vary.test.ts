import { describe, expect, it } from 'vitest';
import type { HeaderMap } from './headers.js';
import { varyFields, varySignature } from './vary.js';

describe('varyFields (RFC 9110 §12.5.5)', () => {
  // §12.5.5: Vary = #( "*" / field-name ); field names are case-insensitive (§5.1).
  it.each<[string, HeaderMap, string[]]>([
    ['no Vary field', { 'content-type': 'text/plain' }, []],
    ['empty Vary field', { vary: '' }, []],
    ['one field name, lowercased', { vary: 'Accept-Encoding' }, ['accept-encoding']],
    ['a list, order kept', { vary: 'Accept-Language, accept-encoding' }, ['accept-language', 'accept-encoding']],
    ['whitespace and empty members dropped', { vary: ' ,\tAccept ,, Origin\t,' }, ['accept', 'origin']],
    ['several Vary field lines form one list (RFC 9110 §5.3)', { vary: ['Accept', 'Origin, Cookie'] }, ['accept', 'origin', 'cookie']],
    ['"*" is kept', { vary: '*' }, ['*']],
    ['"*" is kept among field names', { vary: 'Accept, *' }, ['accept', '*']],
  ])('%s', (_name, headers, want) => expect(varyFields(headers)).toEqual(want));
});

describe('varySignature (RFC 9111 §4.1)', () => {
  const sig = (fields: readonly string[], req: HeaderMap): string => varySignature(fields, req);

  it('is the same for every request when the response varies on nothing', () => {
    expect(sig([], { 'accept-encoding': 'gzip' })).toBe(sig([], {}));
  });

  // §4.1: the stored response is selected only if every field it varies on has the same value in both requests.
  it.each<[string, readonly string[], HeaderMap, HeaderMap]>([
    ['identical values', ['accept-encoding'], { 'accept-encoding': 'gzip' }, { 'accept-encoding': 'gzip' }],
    ['fields the response does not vary on are irrelevant', ['accept-encoding'], { 'accept-encoding': 'gzip', cookie: 'a=1' }, { 'accept-encoding': 'gzip', cookie: 'b=2' }],
    ['both requests lack the field', ['accept-language'], {}, { 'accept-encoding': 'gzip' }],
    ['both requests carry the field empty', ['accept-language'], { 'accept-language': '' }, { 'accept-language': '' }],
    // §4.1: values may be normalised: whitespace around list separators is not significant (RFC 9110 §5.6.1).
    ['whitespace after a comma', ['accept-encoding'], { 'accept-encoding': 'gzip, br' }, { 'accept-encoding': 'gzip,br' }],
    ['whitespace before and after commas', ['accept-encoding'], { 'accept-encoding': 'gzip ,\tbr' }, { 'accept-encoding': 'gzip, br' }],
    ['leading and trailing whitespace', ['accept-encoding'], { 'accept-encoding': '  gzip ' }, { 'accept-encoding': 'gzip' }],
    // §4.1: "combining multiple header fields with the same field name using the rules described in Section 5.3".
    ['several field lines equal one combined line', ['accept-encoding'], { 'accept-encoding': ['gzip', 'br'] }, { 'accept-encoding': 'gzip, br' }],
    ['several fields, all equal', ['accept-encoding', 'accept-language'], { 'accept-encoding': 'gzip', 'accept-language': 'en' }, { 'accept-language': 'en', 'accept-encoding': 'gzip' }],
    // Language ranges (RFC 4647 §2), content-codings (RFC 9110 §8.4.1) and their weights are case-insensitive.
    ['language case (issue 12, the suite\'s vary-normalise-lang-case)', ['accept-language'], { 'accept-language': 'en, de' }, { 'accept-language': 'eN, De' }],
    ['coding case and space around a weight', ['accept-encoding'], { 'accept-encoding': 'gzip;q=0.5, br' }, { 'accept-encoding': 'GZIP ; Q = 0.5,BR' }],
  ])('matches: %s', (_name, fields, a, b) => expect(sig(fields, a)).toBe(sig(fields, b)));

  it.each<[string, readonly string[], HeaderMap, HeaderMap]>([
    ['different values', ['accept-encoding'], { 'accept-encoding': 'gzip' }, { 'accept-encoding': 'br' }],
    // §4.1: a field absent in one request and present in the other does not match, even when present but empty.
    ['absent versus empty', ['accept-language'], {}, { 'accept-language': '' }],
    ['absent versus present', ['accept-language'], {}, { 'accept-language': 'en' }],
    ['list order is significant', ['accept-encoding'], { 'accept-encoding': 'gzip, br' }, { 'accept-encoding': 'br, gzip' }],
    ['language order is significant (an origin may pick the first of equal weights)', ['accept-language'], { 'accept-language': 'en, de' }, { 'accept-language': 'de, en' }],
    ['case is significant in other fields', ['x-variant'], { 'x-variant': 'A' }, { 'x-variant': 'a' }],
    ['field lines in another order', ['accept-encoding'], { 'accept-encoding': ['gzip', 'br'] }, { 'accept-encoding': ['br', 'gzip'] }],
    // Mutation run of 2026-12-01 (issue 17): normalising must keep the commas, or 'en,us' would select the 'enus' variant.
    ['commas are significant', ['accept-language'], { 'accept-language': 'en,us' }, { 'accept-language': 'enus' }],
    ['inner whitespace of a member is significant', ['accept-language'], { 'accept-language': 'en us' }, { 'accept-language': 'enus' }],
    ['one field of two differs', ['accept-encoding', 'accept-language'], { 'accept-encoding': 'gzip', 'accept-language': 'en' }, { 'accept-encoding': 'gzip', 'accept-language': 'fr' }],
  ])('differs: %s', (_name, fields, a, b) => expect(sig(fields, a)).not.toBe(sig(fields, b)));

  it('a response that varies on a field gives a different signature than one that varies on nothing', () => {
    expect(sig(['accept-encoding'], {})).not.toBe(sig([], {}));
  });

  it('works with the lowercase names varyFields produces, whatever the case in Vary', () => {
    const fields = varyFields({ vary: 'Accept-Encoding' });
    expect(sig(fields, { 'accept-encoding': 'gzip' })).not.toBe(sig(fields, { 'accept-encoding': 'br' }));
    expect(sig(fields, { 'accept-encoding': 'gzip' })).toBe(sig(fields, { 'accept-encoding': 'gzip' }));
  });
});
