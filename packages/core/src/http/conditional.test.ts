import { describe, expect, it } from 'vitest';
import { hasValidator, isNotModified, mergeNotModified, notModifiedHeaders, revalidationHeaders } from './conditional.js';
import type { HeaderMap } from './headers.js';

const LM = 'Sat, 21 Nov 2026 10:00:00 GMT';
const BEFORE_LM = 'Sat, 21 Nov 2026 09:59:59 GMT';
const AFTER_LM = 'Sat, 21 Nov 2026 11:00:00 GMT';

describe('isNotModified: If-None-Match uses the weak comparison (RFC 9110 §13.1.2, §8.8.3.2)', () => {
  // §8.8.3.2: two entity tags are weakly equivalent when their opaque-tags match character by character,
  // regardless of either or both being tagged as weak.
  it.each<[string, string, string, boolean]>([
    ['strong request tag, same strong stored tag', '"v1"', '"v1"', true],
    ['weak request tag, same strong stored tag', 'W/"v1"', '"v1"', true],
    ['strong request tag, same weak stored tag', '"v1"', 'W/"v1"', true],
    ['weak request tag, same weak stored tag', 'W/"v1"', 'W/"v1"', true],
    ['different opaque-tag', '"v2"', '"v1"', false],
    ['different opaque-tag, both weak', 'W/"v2"', 'W/"v1"', false],
    ['opaque-tags compare case-sensitively', '"ABC"', '"abc"', false],
    ['the quotes are part of the opaque-tag', 'v1', '"v1"', false],
    ['a lowercase weak prefix is not a weak indicator', 'w/"v1"', '"v1"', false],
    ['a prefix of the stored tag is not a match', '"v"', '"v1"', false],
  ])('%s', (_name, inm, etag, want) => {
    expect(isNotModified('GET', { 'if-none-match': inm }, { etag })).toBe(want);
  });

  // §13.1.2: If-None-Match = "*" / #entity-tag; false (304 for GET/HEAD) when any listed tag matches.
  it.each<[string, HeaderMap, boolean]>([
    ['a match anywhere in a list', { 'if-none-match': '"a", "b", W/"v1"' }, true],
    ['a match first in a list', { 'if-none-match': '"v1","a"' }, true],
    ['no member of the list matches', { 'if-none-match': '"a", W/"b", "c"' }, false],
    ['list spread over several field lines', { 'if-none-match': ['"a"', 'W/"v1"'] }, true],
    ['whitespace around members is ignored', { 'if-none-match': '  "a" ,\t"v1"  ' }, true],
    ['empty list members are ignored', { 'if-none-match': ', "v1" ,' }, true],
  ])('%s', (_name, req, want) => expect(isNotModified('GET', req, { etag: '"v1"' })).toBe(want));

  it.each<[string, HeaderMap, boolean]>([
    // §13.1.2: "*" is false if the origin server has a current representation; a stored response is one.
    ['"*" matches a stored response with an ETag', { etag: '"v1"' }, true],
    ['"*" matches a stored response without any validator', { 'content-type': 'text/plain' }, true],
  ])('%s', (_name, stored, want) => expect(isNotModified('GET', { 'if-none-match': '*' }, stored)).toBe(want));

  it('"*" with surrounding whitespace is still "*"', () => {
    expect(isNotModified('GET', { 'if-none-match': ' * ' }, {})).toBe(true);
  });

  it('an entity tag never matches a stored response without ETag', () => {
    expect(isNotModified('GET', { 'if-none-match': '"v1"' }, { 'last-modified': LM })).toBe(false);
  });
});

describe('isNotModified: If-Modified-Since (RFC 9110 §13.1.3)', () => {
  // §13.1.3: false (304) when the representation's last modification date is earlier than or equal to the date.
  it.each<[string, string, boolean]>([
    ['date equal to Last-Modified', LM, true],
    ['date after Last-Modified', AFTER_LM, true],
    ['date one second before Last-Modified', BEFORE_LM, false],
    ['obsolete RFC 850 date form (§5.6.7) after Last-Modified', 'Saturday, 21-Nov-26 11:00:00 GMT', true],
  ])('%s', (_name, ims, want) => {
    expect(isNotModified('GET', { 'if-modified-since': ims }, { 'last-modified': LM })).toBe(want);
  });

  // §13.1.3: "A recipient MUST ignore the If-Modified-Since header field if the received field value is not a valid
  // HTTP-date".
  // The stored date is the earliest possible, so any date a parser made up would give 304.
  it.each(['not a date', '', 'Sat, 32 Nov 2026 10:00:00 GMT'])('an invalid date %j is ignored', (ims) => {
    expect(isNotModified('GET', { 'if-modified-since': ims }, { 'last-modified': 'Thu, 01 Jan 1970 00:00:00 GMT' })).toBe(false);
  });

  // RFC 9111 §4.3.2 (issue 12, the suite's conditional-lm-fresh-no-lm): without Last-Modified, the stored Date counts.
  it('a stored response without Last-Modified is dated by its Date', () => {
    expect(isNotModified('GET', { 'if-modified-since': AFTER_LM }, { date: LM })).toBe(true);
    expect(isNotModified('GET', { 'if-modified-since': BEFORE_LM }, { date: LM })).toBe(false);
    expect(isNotModified('GET', { 'if-modified-since': AFTER_LM }, {})).toBe(false);
  });

  it('an invalid stored Last-Modified never yields 304', () => {
    expect(isNotModified('GET', { 'if-modified-since': AFTER_LM }, { 'last-modified': 'garbage' })).toBe(false);
  });

  // §13.1.3: "A recipient MUST ignore If-Modified-Since if the request contains an If-None-Match header field".
  it.each<[string, HeaderMap, HeaderMap, boolean]>([
    ['a non-matching If-None-Match overrides a satisfied If-Modified-Since', { 'if-none-match': '"other"', 'if-modified-since': AFTER_LM }, { etag: '"v1"', 'last-modified': LM }, false],
    ['a matching If-None-Match overrides an unsatisfied If-Modified-Since', { 'if-none-match': '"v1"', 'if-modified-since': BEFORE_LM }, { etag: '"v1"', 'last-modified': LM }, true],
    ['If-Modified-Since is ignored even when the stored response has no ETag', { 'if-none-match': '"v1"', 'if-modified-since': AFTER_LM }, { 'last-modified': LM }, false],
  ])('%s', (_name, req, stored, want) => expect(isNotModified('GET', req, stored)).toBe(want));
});

describe('isNotModified: methods (RFC 9110 §13.1.2, §13.1.3)', () => {
  const stored = { etag: '"v1"', 'last-modified': LM };
  // §13.1.2 / §13.1.3: 304 answers only GET and HEAD; methods are case-sensitive (§9.1).
  it.each<[string, boolean]>([
    ['GET', true],
    ['HEAD', true],
    ['POST', false],
    ['PUT', false],
    ['DELETE', false],
    ['OPTIONS', false],
    ['get', false],
  ])('%s', (method, want) => {
    expect(isNotModified(method, { 'if-none-match': '"v1"' }, stored)).toBe(want);
    expect(isNotModified(method, { 'if-modified-since': AFTER_LM }, stored)).toBe(want);
  });

  it('without any precondition the answer is never 304', () => {
    expect(isNotModified('GET', {}, stored)).toBe(false);
  });
});

describe('notModifiedHeaders (RFC 9110 §15.4.5)', () => {
  const full: HeaderMap = {
    'cache-control': 'max-age=60',
    'content-location': '/a.en',
    date: AFTER_LM,
    etag: '"v1"',
    expires: AFTER_LM,
    vary: 'accept-encoding',
    'last-modified': LM,
    'content-type': 'text/plain',
    'content-length': '123',
    'content-encoding': 'gzip',
    'set-cookie': ['a=1', 'b=2'],
    'x-custom': 'y',
  };

  it('keeps Cache-Control, Content-Location, Date, ETag, Expires, Vary and Last-Modified, and nothing else', () => {
    expect(notModifiedHeaders(full)).toEqual({
      'cache-control': 'max-age=60',
      'content-location': '/a.en',
      date: AFTER_LM,
      etag: '"v1"',
      expires: AFTER_LM,
      vary: 'accept-encoding',
      'last-modified': LM,
    });
  });

  it('omits fields the stored response does not have', () => {
    expect(notModifiedHeaders({ etag: '"v1"', 'content-type': 'text/plain' })).toEqual({ etag: '"v1"' });
  });

  it('keeps several field lines as they are', () => {
    expect(notModifiedHeaders({ vary: ['accept', 'accept-encoding'] })).toEqual({ vary: ['accept', 'accept-encoding'] });
  });
});

describe('revalidationHeaders (RFC 9111 §4.3.1)', () => {
  it.each<[string, HeaderMap, HeaderMap]>([
    ['an ETag becomes If-None-Match', { etag: '"v1"' }, { 'if-none-match': '"v1"' }],
    ['a weak ETag is sent as it is (If-None-Match compares weakly)', { etag: 'W/"v1"' }, { 'if-none-match': 'W/"v1"' }],
    ['Last-Modified becomes If-Modified-Since', { 'last-modified': LM }, { 'if-modified-since': LM }],
    ['both validators are sent', { etag: '"v1"', 'last-modified': LM }, { 'if-none-match': '"v1"', 'if-modified-since': LM }],
    ['no validator, no conditional fields', { 'content-type': 'text/plain', date: LM }, {}],
  ])('%s', (_name, stored, want) => expect(revalidationHeaders(stored)).toEqual(want));
});

describe('hasValidator (RFC 9110 §8.8)', () => {
  it.each<[string, HeaderMap, boolean]>([
    ['ETag', { etag: '"v1"' }, true],
    ['weak ETag', { etag: 'W/"v1"' }, true],
    ['Last-Modified', { 'last-modified': LM }, true],
    ['both', { etag: '"v1"', 'last-modified': LM }, true],
    ['Date alone is not a validator', { date: LM }, false],
    ['no fields', {}, false],
  ])('%s', (_name, stored, want) => expect(hasValidator(stored)).toBe(want));
});

describe('mergeNotModified (RFC 9111 §4.3.4)', () => {
  const stored: HeaderMap = {
    etag: '"v1"',
    'cache-control': 'max-age=10',
    'content-type': 'text/plain',
    'content-length': '5',
    'content-encoding': 'gzip',
    date: LM,
  };

  // §4.3.4: the stored fields are replaced by those in the 304, and new ones added.
  it('replaces fields present in the 304 and adds new ones, keeping the others', () => {
    expect(mergeNotModified(stored, { 'cache-control': 'max-age=100', date: AFTER_LM, 'x-new': 'y' })).toEqual({
      ...stored,
      'cache-control': 'max-age=100',
      date: AFTER_LM,
      'x-new': 'y',
    });
  });

  // §4.3.4: Content-Length is excepted; the stored body's framing must describe the stored body.
  it.each(['content-length', 'transfer-encoding', 'content-encoding', 'content-range'])('never takes %s from the 304', (field) => {
    const merged = mergeNotModified(stored, { [field]: 'from-304', etag: '"v1"' });
    expect(merged[field]).toBe(stored[field]);
  });

  it('the ETag of a 304 selects, it does not rename: the stored ETag stays (RFC 9111 §4.3.4)', () => {
    expect(mergeNotModified(stored, { etag: '"v2"' })['etag']).toBe('"v1"');
  });

  it('a multi-line field in the 304 replaces the stored field as a whole', () => {
    expect(mergeNotModified({ vary: ['a', 'b'] }, { vary: ['c'] })['vary']).toEqual(['c']);
  });

  it('returns a new object and leaves the stored headers untouched', () => {
    const before = { ...stored };
    const merged = mergeNotModified(stored, { 'cache-control': 'no-cache' });
    expect(merged).not.toBe(stored);
    expect(stored).toEqual(before);
  });
});

/**
 * Mutation run of 2026-12-01 (issue 17): these maps become the header section of a 304 sent to a client and of a
 * conditional request sent to the origin, so a field the stored response lacks must be absent, not present with an
 * undefined value (toEqual treats the two alike; the key list does not).
 */
describe('header maps built from stored fields carry no absent field', () => {
  it('notModifiedHeaders: only the fields the stored response has', () => {
    expect(Object.keys(notModifiedHeaders({ etag: '"v1"', 'content-type': 'text/plain' }))).toEqual(['etag']);
  });

  it.each<[string, HeaderMap, string[]]>([
    ['ETag only', { etag: '"v1"' }, ['if-none-match']],
    ['Last-Modified only', { 'last-modified': LM }, ['if-modified-since']],
    ['neither', { date: LM }, []],
  ])('revalidationHeaders, %s', (_name, stored, keys) => {
    expect(Object.keys(revalidationHeaders(stored))).toEqual(keys);
  });

  it('If-Modified-Since against a stored response without Last-Modified is judged by its Date (RFC 9111 §4.3.2), never by an absent field', () => {
    expect(isNotModified('GET', { 'if-modified-since': AFTER_LM }, { etag: '"v1"', date: BEFORE_LM })).toBe(true);
    expect(isNotModified('GET', { 'if-modified-since': BEFORE_LM }, { etag: '"v1"', date: AFTER_LM })).toBe(false);
    expect(isNotModified('GET', { 'if-modified-since': AFTER_LM }, { etag: '"v1"' })).toBe(false);
  });
});
