import { describe, expect, it } from 'vitest';
import { contentRange, ifRangeAllows, parseRange, planMultipart, resolveRanges } from './range.js';
import { isNotModified, mergeNotModified, notModifiedHeaders } from './conditional.js';

describe('parseRange (RFC 9110 §14.1)', () => {
  it.each([
    ['bytes=0-99', { kind: 'ranges', specs: [{ first: 0, last: 99 }] }],
    ['bytes=100-', { kind: 'ranges', specs: [{ first: 100, last: undefined }] }],
    ['bytes=-50', { kind: 'ranges', specs: [{ suffix: 50 }] }],
    ['bytes=0-0, 10-20', { kind: 'ranges', specs: [{ first: 0, last: 0 }, { first: 10, last: 20 }] }],
    ['Bytes = 1-2', { kind: 'ranges', specs: [{ first: 1, last: 2 }] }],
    ['items=0-5', { kind: 'none' }],
    ['bytes=5-1', { kind: 'invalid' }],
    ['bytes=a-b', { kind: 'invalid' }],
    ['bytes=-', { kind: 'invalid' }],
    ['bytes=', { kind: 'invalid' }],
    ['0-5', { kind: 'invalid' }],
    // Mutation run of 2026-12-01 (issue 17): empty list elements are allowed (RFC 9110 §5.6.1), each spec must be
    // the whole element (the anchors of the spec pattern), and no Range field at all is 'none'.
    ['bytes=0-1, ,4-5', { kind: 'ranges', specs: [{ first: 0, last: 1 }, { first: 4, last: 5 }] }],
    ['bytes=0-1,', { kind: 'ranges', specs: [{ first: 0, last: 1 }] }],
    ['bytes=x0-1', { kind: 'invalid' }],
    ['bytes=0-1x', { kind: 'invalid' }],
    ['bytes=0-1, 2-3;x', { kind: 'invalid' }],
  ])('%s', (raw, want) => expect(parseRange(raw)).toEqual(want));

  it('no Range field is none', () => expect(parseRange(undefined)).toEqual({ kind: 'none' }));
});

describe('resolveRanges (§14.1.2)', () => {
  it.each([
    ['clips last-pos to the length', [{ first: 90, last: 200 }], 100, [{ start: 90, end: 99 }]],
    ['suffix longer than the body is the whole body', [{ suffix: 500 }], 100, [{ start: 0, end: 99 }]],
    ['first-pos at the length is unsatisfiable', [{ first: 100, last: undefined }], 100, []],
    ['zero suffix is unsatisfiable', [{ suffix: 0 }], 100, []],
    ['overlapping and adjacent ranges coalesce, sorted', [{ first: 50, last: 60 }, { first: 0, last: 10 }, { first: 11, last: 20 }, { first: 55, last: 70 }], 100, [{ start: 0, end: 20 }, { start: 50, end: 70 }]],
    ['unsatisfiable members are dropped', [{ first: 0, last: 1 }, { first: 500, last: 600 }], 100, [{ start: 0, end: 1 }]],
  ] as const)('%s', (_n, specs, len, want) => expect(resolveRanges(specs, len)).toEqual(want));
});

describe('If-Range (§13.1.5)', () => {
  const stored = { etag: '"v1"', 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT', date: 'Sat, 21 Nov 2026 12:00:00 GMT' };
  it.each([
    ['absent', undefined, true],
    ['matching strong etag', '"v1"', true],
    ['other etag', '"v2"', false],
    ['weak etag never matches', 'W/"v1"', false],
    ['exact Last-Modified date', 'Sat, 21 Nov 2026 10:00:00 GMT', true],
    ['other date', 'Sat, 21 Nov 2026 10:00:01 GMT', false],
  ])('%s', (_n, v, want) => expect(ifRangeAllows(v, stored)).toBe(want));

  // Mutation run of 2026-12-01 (issue 17): the etag and date branches each had survivors.
  it.each<[string, string, Record<string, string>, boolean]>([
    ['an entity-tag against a stored response without ETag', '"v1"', { 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT' }, false],
    ['a strong entity-tag against another strong ETag', '"v1"', { etag: '"v2"' }, false],
    ['surrounding whitespace', '  "v1" ', { etag: '"v1"' }, true],
    ['a date exactly one second before Date is strong', 'Sat, 21 Nov 2026 10:00:00 GMT', { 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT', date: 'Sat, 21 Nov 2026 10:00:01 GMT' }, true],
    // RFC 9110 §8.8.2.2: a cache deduces a strong Last-Modified only from its entry's Date; none, the date is weak.
    ['a date with no stored Date is weak', 'Sat, 21 Nov 2026 10:00:00 GMT', { 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT' }, false],
    ['a date with no stored Last-Modified', 'Sat, 21 Nov 2026 10:00:00 GMT', { date: 'Sat, 21 Nov 2026 12:00:00 GMT' }, false],
  ])('%s', (_n, v, stored, want) => expect(ifRangeAllows(v, stored)).toBe(want));

  it('a Last-Modified within a second of Date is weak and never matches', () => {
    expect(ifRangeAllows('Sat, 21 Nov 2026 10:00:00 GMT', { 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT', date: 'Sat, 21 Nov 2026 10:00:00 GMT' })).toBe(false);
  });
});

describe('multipart/byteranges (§14.6)', () => {
  it('announces exactly the length of the body it lays out', () => {
    const plan = planMultipart([{ start: 0, end: 9 }, { start: 20, end: 29 }], 100, 'text/plain', 'B');
    const body = Buffer.concat([...plan.parts.flatMap((p) => [p.head, Buffer.alloc(p.range.end - p.range.start + 1, 120)]), plan.tail]);
    expect(body.length).toBe(plan.length);
    expect(body.toString()).toBe(
      '--B\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-9/100\r\n\r\nxxxxxxxxxx' +
        '\r\n--B\r\ncontent-type: text/plain\r\ncontent-range: bytes 20-29/100\r\n\r\nxxxxxxxxxx\r\n--B--\r\n',
    );
    expect(contentRange({ start: 5, end: 9 }, undefined)).toBe('bytes 5-9/*');
  });

  // Mutation run of 2026-12-01 (issue 17): a part head names a Content-Type only when the object has one, and is
  // written byte for byte as the field value arrived (latin1: one byte per character, as the value was parsed).
  it('a part head without Content-Type when the object has none', () => {
    const plan = planMultipart([{ start: 0, end: 0 }, { start: 2, end: 2 }], 3, undefined, 'B');
    expect(plan.parts[0]?.head.toString('latin1')).toBe('--B\r\ncontent-range: bytes 0-0/3\r\n\r\n');
  });

  it('a Content-Type with a byte above 0x7f is copied as that one byte, and the length counts it once', () => {
    const plan = planMultipart([{ start: 0, end: 0 }, { start: 2, end: 2 }], 3, 'text/plain; x=\u00e9', 'B');
    const head = plan.parts[0]?.head ?? Buffer.alloc(0);
    expect(head.includes(Buffer.from([0x3d, 0xe9, 0x0d, 0x0a]))).toBe(true);
    expect(head.length).toBe('--B\r\ncontent-type: text/plain; x=\u00e9\r\ncontent-range: bytes 0-0/3\r\n\r\n'.length);
  });
});

describe('conditional requests (§13.2.2)', () => {
  const stored = { etag: 'W/"abc"', 'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT', 'content-type': 'text/plain', 'cache-control': 'max-age=60' };
  it.each([
    ['If-None-Match weak match', { 'if-none-match': '"abc"' }, true],
    ['If-None-Match list', { 'if-none-match': '"x", W/"abc"' }, true],
    ['If-None-Match *', { 'if-none-match': '*' }, true],
    ['If-None-Match other', { 'if-none-match': '"zzz"' }, false],
    ['If-Modified-Since later', { 'if-modified-since': 'Sat, 21 Nov 2026 11:00:00 GMT' }, true],
    ['If-Modified-Since earlier', { 'if-modified-since': 'Sat, 21 Nov 2026 09:00:00 GMT' }, false],
    ['If-None-Match wins over If-Modified-Since', { 'if-none-match': '"zzz"', 'if-modified-since': 'Sat, 21 Nov 2026 11:00:00 GMT' }, false],
  ])('%s', (_n, req, want) => expect(isNotModified('GET', req, stored)).toBe(want));

  it('applies to GET and HEAD only', () => {
    expect(isNotModified('POST', { 'if-none-match': '*' }, stored)).toBe(false);
  });

  it('a 304 carries validators and caching fields, not representation metadata', () => {
    expect(notModifiedHeaders(stored)).toEqual({ etag: 'W/"abc"', 'last-modified': stored['last-modified'], 'cache-control': 'max-age=60' });
  });

  it('merging a 304 updates fields but never framing (RFC 9111 §4.3.4)', () => {
    expect(mergeNotModified({ etag: '"1"', 'cache-control': 'max-age=1', 'content-length': '5' }, { 'cache-control': 'max-age=100', 'content-length': '0', 'x-new': 'y' })).toEqual({
      etag: '"1"',
      'cache-control': 'max-age=100',
      'content-length': '5',
      'x-new': 'y',
    });
  });
});
