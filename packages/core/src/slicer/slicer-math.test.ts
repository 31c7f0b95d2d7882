import { describe, expect, it } from 'vitest';
import type { HeaderMap } from '../http/headers.js';
import { baseKeyOf, metaHeaders, metaKeyOf, parseContentRange, segmentKeyOf, segmentMismatch, segmentRangeHeader, segmentsFor } from './slicer.js';
import { chunkSlices } from './stitch.js';

const KEY = 'GET\0example.com\0/big.bin';

describe('slicer keys', () => {
  it('the meta key and every segment key are distinct from each other and from the object key', () => {
    const keys = [KEY, metaKeyOf(KEY, 1024), segmentKeyOf(KEY, 1024, 0), segmentKeyOf(KEY, 1024, 1), segmentKeyOf(KEY, 2048, 0), metaKeyOf(KEY, 2048)];
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('segment keys differ by size even where index * size is the same byte offset', () => {
    expect(segmentKeyOf(KEY, 1024, 2)).not.toBe(segmentKeyOf(KEY, 2048, 1));
  });

  it('keys of different objects never coincide', () => {
    expect(segmentKeyOf('a', 1, 11)).not.toBe(segmentKeyOf('a', 11, 1));
    expect(metaKeyOf('/a', 1024)).not.toBe(metaKeyOf('/b', 1024));
  });

  it.each<[string, string]>([
    ['a plain key', KEY],
    ['a meta key', metaKeyOf(KEY, 1024)],
    ['a segment key', segmentKeyOf(KEY, 1024, 7)],
  ])('baseKeyOf gives the object key back from %s', (_name, key) => expect(baseKeyOf(key)).toBe(KEY));

  it('baseKeyOf keeps a key that only contains NUL separators', () => {
    expect(baseKeyOf('a\0b\0c')).toBe('a\0b\0c');
  });
});

describe('segmentRangeHeader (RFC 9110 §14.1.2)', () => {
  // §14.1.2: last-pos is inclusive, so a segment of `size` bytes ends at start + size - 1.
  it.each<[number, number, string]>([
    [0, 1024, 'bytes=0-1023'],
    [1, 1024, 'bytes=1024-2047'],
    [7, 1_048_576, 'bytes=7340032-8388607'],
    [3, 1, 'bytes=3-3'],
  ])('segment %i of %i bytes is %s', (index, size, want) => expect(segmentRangeHeader(index, size)).toBe(want));

  it('a segment beyond 2^32 bytes keeps exact integer offsets', () => {
    expect(segmentRangeHeader(5000, 1_048_576)).toBe('bytes=5242880000-5243928575');
  });
});

describe('parseContentRange (RFC 9110 §14.4)', () => {
  it.each<[string, string | undefined, { start: number; end: number; total: number | undefined } | undefined]>([
    ['a range with complete length', 'bytes 0-1023/4096', { start: 0, end: 1023, total: 4096 }],
    ['a one-byte range', 'bytes 5-5/10', { start: 5, end: 5, total: 10 }],
    ['the last byte', 'bytes 4095-4095/4096', { start: 4095, end: 4095, total: 4096 }],
    // §14.4: complete-length "*" means unknown.
    ['an unknown complete length', 'bytes 0-1023/*', { start: 0, end: 1023, total: undefined }],
    ['surrounding whitespace', '  bytes 0-9/10 ', { start: 0, end: 9, total: 10 }],
    ['large offsets', 'bytes 5242880000-5243928575/6000000000', { start: 5242880000, end: 5243928575, total: 6000000000 }],
    ['absent', undefined, undefined],
    ['empty', '', undefined],
    // §14.4: unsatisfied-range = "*/" complete-length (the form of a 416): no range to place.
    ['the unsatisfied form', 'bytes */4096', undefined],
    // §14.4: "invalid if it contains a range-resp that has a last-pos value less than its first-pos value".
    ['last-pos before first-pos', 'bytes 10-5/20', undefined],
    ['another range unit', 'items 0-9/10', undefined],
    ['missing complete length', 'bytes 0-9', undefined],
    ['missing last-pos', 'bytes 0-/10', undefined],
    ['a suffix form (only valid in Range)', 'bytes -10/10', undefined],
    ['negative numbers', 'bytes -1-9/10', undefined],
    ['a fraction', 'bytes 0-9.5/10', undefined],
    ['"=" as in a Range field', 'bytes=0-9/10', undefined],
    ['two ranges', 'bytes 0-1/10, 4-5/10', undefined],
    ['trailing garbage', 'bytes 0-9/10x', undefined],
  ])('%s: %j', (_name, raw, want) => expect(parseContentRange(raw)).toEqual(want));
});

describe('metaHeaders', () => {
  const segment: HeaderMap = {
    'content-type': 'video/mp4',
    'content-range': 'bytes 0-1023/5000',
    'content-length': '1024',
    etag: '"v1"',
    'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT',
    'cache-control': 'max-age=600',
    'set-cookie': ['a=1', 'b=2'],
  };

  it('is the whole representation: no Content-Range, Content-Length the complete length, everything else kept', () => {
    expect(metaHeaders(segment, 5000)).toEqual({
      'content-type': 'video/mp4',
      'content-length': '5000',
      etag: '"v1"',
      'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT',
      'cache-control': 'max-age=600',
      'set-cookie': ['a=1', 'b=2'],
    });
  });

  it('sets Content-Length even when the segment had none', () => {
    expect(metaHeaders({ 'content-range': 'bytes 0-9/10' }, 10)).toEqual({ 'content-length': '10' });
  });

  it('does not modify the segment headers', () => {
    const copy = { ...segment };
    metaHeaders(segment, 5000);
    expect(segment).toEqual(copy);
  });
});

describe('segmentsFor', () => {
  const SIZE = 100;
  it.each<[string, Array<{ start: number; end: number }>, number[]]>([
    ['no ranges', [], []],
    ['a range inside one segment', [{ start: 10, end: 20 }], [0]],
    ['one byte', [{ start: 250, end: 250 }], [2]],
    ['exactly one whole segment', [{ start: 100, end: 199 }], [1]],
    ['a range ending exactly at a segment boundary stays in that segment', [{ start: 0, end: 99 }], [0]],
    ['one byte past a boundary needs the next segment', [{ start: 0, end: 100 }], [0, 1]],
    ['a range starting exactly at a boundary skips the previous segment', [{ start: 200, end: 250 }], [2]],
    ['a range ending one byte before a boundary', [{ start: 150, end: 199 }], [1]],
    ['a range spanning several segments', [{ start: 50, end: 349 }], [0, 1, 2, 3]],
    ['two ranges in the same segment give it once', [{ start: 0, end: 10 }, { start: 50, end: 60 }], [0]],
    ['overlapping ranges give each segment once', [{ start: 0, end: 150 }, { start: 120, end: 320 }], [0, 1, 2, 3]],
    ['unsorted ranges give ascending segments', [{ start: 500, end: 510 }, { start: 0, end: 5 }, { start: 250, end: 260 }], [0, 2, 5]],
    ['unsorted overlapping ranges', [{ start: 300, end: 450 }, { start: 0, end: 320 }], [0, 1, 2, 3, 4]],
    ['disjoint ranges with a gap skip the segments between', [{ start: 0, end: 0 }, { start: 999, end: 999 }], [0, 9]],
  ])('%s', (_name, ranges, want) => expect(segmentsFor(ranges, SIZE)).toEqual(want));

  it('a whole object smaller than one segment is segment 0', () => {
    expect(segmentsFor([{ start: 0, end: 41 }], 1024)).toEqual([0]);
  });

  it('the last, partial segment of an object is included', () => {
    // 1050 bytes in 100-byte segments: segment 10 holds bytes 1000-1049.
    expect(segmentsFor([{ start: 990, end: 1049 }], SIZE)).toEqual([9, 10]);
  });

  it('a one-byte segment size gives one segment per byte', () => {
    expect(segmentsFor([{ start: 3, end: 6 }], 1)).toEqual([3, 4, 5, 6]);
  });
});

describe('segmentMismatch', () => {
  const SIZE = 100;
  const TOTAL = 250; // segments 0 and 1 are full, segment 2 holds bytes 200-249
  const LM = 'Sat, 21 Nov 2026 10:00:00 GMT';
  const LM2 = 'Sat, 21 Nov 2026 11:00:00 GMT';
  const seg = (range: string, extra: HeaderMap = {}): HeaderMap => ({ 'content-range': range, ...extra });

  // Every fitting case carries the same strong ETag on both sides: RFC 9110 §15.3.7.3 lets parts be combined "only if
  // they share the same strong validator".
  const V1 = { etag: '"v1"' };
  it.each<[string, number, HeaderMap, number, number, HeaderMap]>([
    ['the first segment in place', 206, seg('bytes 0-99/250', V1), 0, TOTAL, V1],
    ['a middle segment in place', 206, seg('bytes 100-199/250', V1), 1, TOTAL, V1],
    ['the last, partial segment ends at the last byte', 206, seg('bytes 200-249/250', V1), 2, TOTAL, V1],
    ['a last segment exactly one segment long', 206, seg('bytes 100-199/200', V1), 1, 200, V1],
    ['an object smaller than one segment', 206, seg('bytes 0-41/42', V1), 0, 42, V1],
    ['an object of one byte', 206, seg('bytes 0-0/1', V1), 0, 1, V1],
    // RFC 9110 §8.8.3: the entity tag is the more reliable validator; with equal strong ETags a Last-Modified change
    // is not a change of representation.
    ['equal strong ETags decide over Last-Modified', 206, seg('bytes 0-99/250', { ...V1, 'last-modified': LM2 }), 0, TOTAL, { ...V1, 'last-modified': LM }],
  ])('fits: %s', (_name, status, headers, index, total, meta) => {
    expect(segmentMismatch(status, headers, index, SIZE, total, meta)).toBeUndefined();
  });

  it.each<[string, number, HeaderMap, number, number, HeaderMap, RegExp]>([
    // The origin ignored the Range (RFC 9110 §14.2 allows it) or failed: not a piece of the representation.
    ['a 200 instead of 206', 200, seg('bytes 0-99/250'), 0, TOTAL, {}, /status 200, not 206/],
    ['a 416', 416, { 'content-range': 'bytes */250' }, 0, TOTAL, {}, /status 416/],
    ['a 206 without Content-Range', 206, {}, 0, TOTAL, {}, /Content-Range missing, expected bytes 0-99\/250/],
    ['the wrong place', 206, seg('bytes 100-199/250'), 0, TOTAL, {}, /expected bytes 0-99\/250/],
    ['a shorter piece than asked', 206, seg('bytes 0-49/250'), 0, TOTAL, {}, /expected bytes 0-99\/250/],
    ['a last segment claiming a full segment size', 206, seg('bytes 200-299/250'), 2, TOTAL, {}, /expected bytes 200-249\/250/],
    ['a different complete length (the object changed)', 206, seg('bytes 0-99/300'), 0, TOTAL, {}, /expected bytes 0-99\/250/],
    ['an unknown complete length', 206, seg('bytes 0-99/*'), 0, TOTAL, {}, /expected bytes 0-99\/250/],
    ['a malformed Content-Range', 206, seg('bytes 0-99'), 0, TOTAL, {}, /Content-Range bytes 0-99, expected/],
    ['a different ETag', 206, seg('bytes 0-99/250', { etag: '"v2"' }), 0, TOTAL, { etag: '"v1"' }, /ETag "v2", expected "v1"/],
    // RFC 9110 §8.8.3.2: strong comparison; a weak tag never equals a strong one.
    ['a weak ETag where the meta has the strong one', 206, seg('bytes 0-99/250', { etag: 'W/"v1"' }), 0, TOTAL, { etag: '"v1"' }, /ETag W\/"v1", expected "v1"/],
    ['a different ETag even with the same Last-Modified', 206, seg('bytes 0-99/250', { etag: '"v2"', 'last-modified': LM }), 0, TOTAL, { etag: '"v1"', 'last-modified': LM }, /ETag/],
    ['a different Last-Modified without ETags', 206, seg('bytes 100-199/250', { 'last-modified': LM2 }), 1, TOTAL, { 'last-modified': LM }, /segment 1: Last-Modified .*11:00:00.*, expected .*10:00:00/],
  ])('mismatch: %s', (_name, status, headers, index, total, meta, why) => {
    expect(segmentMismatch(status, headers, index, SIZE, total, meta)).toMatch(why);
  });

  it('names the segment index in the reason', () => {
    expect(segmentMismatch(200, {}, 4, SIZE, 1000, {})).toMatch(/^segment 4:/);
  });
});

describe('chunkSlices (the warm path of a stitched segment)', () => {
  const chunks = [Buffer.from('abcd'), Buffer.from('efg'), Buffer.from('hijkl')];
  it.each<[number, number, string[]]>([
    [0, 11, ['abcd', 'efg', 'hijkl']],
    [2, 5, ['cd', 'ef']],
    [4, 6, ['efg']],
    [6, 6, ['g']],
    [7, 11, ['hijkl']],
    [3, 8, ['d', 'efg', 'hi']],
  ])('bytes %i-%i', (lo, hi, want) => {
    expect([...chunkSlices(chunks, lo, hi)].map((b) => b.toString())).toEqual(want);
  });
});
