import { describe, expect, it, vi } from 'vitest';
import type { HeaderMap } from '../http/headers.js';
import { BodyCursor } from './cursor.js';
import { OPEN_END, planDelivery, plannedHead, type DeliveryPlan, type PlannedObject } from './plan.js';

const LM = 'Sat, 21 Nov 2026 10:00:00 GMT';
const DATE = 'Sat, 21 Nov 2026 12:00:00 GMT';
const HEADERS: HeaderMap = { etag: '"v1"', 'last-modified': LM, date: DATE, 'content-type': 'text/plain' };

/** A stored 200 whose body of `total` bytes has fully arrived. */
const complete = (total: number, headers: HeaderMap = HEADERS): PlannedObject => ({ status: 200, headers, length: total, complete: true, expectedLength: total });
/** A 200 still arriving: `length` bytes so far, of `expected` announced (undefined: no Content-Length). */
const arriving = (length: number, expected: number | undefined): PlannedObject => ({ status: 200, headers: HEADERS, length, complete: false, expectedLength: expected });

const plan = (method: string, req: HeaderMap, obj: PlannedObject, maxRanges = 10): DeliveryPlan =>
  planDelivery(method, req, obj, { maxRanges, boundary: () => 'BOUNDARY' });

describe('planDelivery: full', () => {
  it.each<[string, string, HeaderMap]>([
    ['no Range and no precondition', 'GET', {}],
    ['HEAD without Range', 'HEAD', {}],
    // RFC 9110 §14.2: a server MUST ignore a Range header for a method without range handling; GET is the only one.
    ['POST with a Range', 'POST', { range: 'bytes=0-9' }],
    ['PUT with a Range', 'PUT', { range: 'bytes=0-9' }],
    // §14.2: a recipient ignores a Range with a range unit it does not understand.
    ['an unknown range unit', 'GET', { range: 'items=0-9' }],
    // §14.2: a server MAY ignore a Range with invalid syntax.
    ['an invalid Range', 'GET', { range: 'bytes=9-0' }],
    ['a Range without "="', 'GET', { range: '0-9' }],
    // §13.1.5: If-Range without Range is ignored.
    ['If-Range alone', 'GET', { 'if-range': '"other"' }],
    ['If-None-Match that does not match', 'GET', { 'if-none-match': '"other"' }],
    ['If-Modified-Since before Last-Modified', 'GET', { 'if-modified-since': 'Sat, 21 Nov 2026 09:00:00 GMT' }],
  ])('%s', (_name, method, req) => expect(plan(method, req, complete(100))).toEqual({ kind: 'full' }));

  // RFC 9110 §13.2.1: preconditions are ignored when the response would otherwise be other than 2xx or 412, and
  // §14.2: Range applies to a 200 representation.
  it.each([301, 404, 410, 500, 503])('a stored %i is always sent as it is, conditions and Range ignored', (status) => {
    const obj: PlannedObject = { ...complete(100), status };
    expect(plan('GET', { range: 'bytes=0-9' }, obj)).toEqual({ kind: 'full' });
    expect(plan('GET', { 'if-none-match': '"v1"' }, obj)).toEqual({ kind: 'full' });
    expect(plan('GET', { 'if-none-match': '*', range: 'bytes=0-9' }, { ...arriving(0, undefined), status })).toEqual({ kind: 'full' });
  });
});

describe('planDelivery: not-modified (RFC 9110 §13.2.2)', () => {
  it.each<[string, string, HeaderMap, PlannedObject]>([
    ['If-None-Match matching on GET', 'GET', { 'if-none-match': '"v1"' }, complete(100)],
    ['If-None-Match matching on HEAD', 'HEAD', { 'if-none-match': '"v1"' }, complete(100)],
    ['If-Modified-Since at Last-Modified', 'GET', { 'if-modified-since': LM }, complete(100)],
    // §13.2.2: If-None-Match / If-Modified-Since are evaluated before Range (steps 3-4 before 5).
    ['a matching If-None-Match wins over a Range', 'GET', { 'if-none-match': '"v1"', range: 'bytes=0-9' }, complete(100)],
    ['a satisfied If-Modified-Since wins over a Range', 'GET', { 'if-modified-since': DATE, range: 'bytes=0-9' }, complete(100)],
    ['a matching If-None-Match wins over an unsatisfiable Range', 'GET', { 'if-none-match': '"v1"', range: 'bytes=500-' }, complete(100)],
    ['an object still arriving with unknown length needs no body for a 304', 'GET', { 'if-none-match': '"v1"' }, arriving(0, undefined)],
  ])('%s', (_name, method, req, obj) => expect(plan(method, req, obj)).toEqual({ kind: 'not-modified' }));

  it('a matching If-None-Match on POST is not a 304 (§13.1.2: GET and HEAD only)', () => {
    expect(plan('POST', { 'if-none-match': '*' }, complete(100))).toEqual({ kind: 'full' });
  });
});

describe('planDelivery: one range on a complete object (RFC 9110 §14.1.2)', () => {
  it.each<[string, string, { start: number; end: number }]>([
    ['first bytes', 'bytes=0-9', { start: 0, end: 9 }],
    ['the last byte', 'bytes=99-99', { start: 99, end: 99 }],
    ['open-ended', 'bytes=90-', { start: 90, end: 99 }],
    ['last-pos past the end is clipped', 'bytes=90-1000', { start: 90, end: 99 }],
    ['suffix', 'bytes=-10', { start: 90, end: 99 }],
    ['suffix longer than the body is the whole body', 'bytes=-1000', { start: 0, end: 99 }],
    ['overlapping ranges coalesce into one', 'bytes=0-20,10-30', { start: 0, end: 30 }],
    ['adjacent ranges coalesce into one', 'bytes=10-19,0-9', { start: 0, end: 19 }],
    ['an unsatisfiable member beside a satisfiable one is dropped', 'bytes=0-9,500-600', { start: 0, end: 9 }],
  ])('%s: %s', (_name, range, want) => {
    expect(plan('GET', { range }, complete(100))).toEqual({ kind: 'range', range: want, total: 100 });
  });

  // Mutation run of 2026-12-01 (issue 17): HEAD gets the 206 head a GET would (RFC 9110 §9.3.2), not the full one.
  it('HEAD with a Range plans the same 206 as GET', () => {
    expect(plan('HEAD', { range: 'bytes=0-9' }, complete(100))).toEqual({ kind: 'range', range: { start: 0, end: 9 }, total: 100 });
  });

  it('a non-matching If-None-Match leaves the Range in force', () => {
    expect(plan('GET', { 'if-none-match': '"other"', range: 'bytes=0-9' }, complete(100))).toEqual({ kind: 'range', range: { start: 0, end: 9 }, total: 100 });
  });
});

describe('planDelivery: If-Range (RFC 9110 §13.1.5)', () => {
  const range = 'bytes=0-9';
  const partial: DeliveryPlan = { kind: 'range', range: { start: 0, end: 9 }, total: 100 };
  it.each<[string, string, HeaderMap, DeliveryPlan]>([
    ['a matching strong ETag honours the Range', '"v1"', HEADERS, partial],
    ['another ETag sends the whole representation', '"v2"', HEADERS, { kind: 'full' }],
    // §13.1.5: the comparison is strong; a weak entity tag never matches.
    ['a weak ETag in If-Range never matches', 'W/"v1"', HEADERS, { kind: 'full' }],
    ['a strong If-Range against a weak stored ETag never matches', '"v1"', { ...HEADERS, etag: 'W/"v1"' }, { kind: 'full' }],
    // §13.1.5: a date must exactly match Last-Modified, which must be strong (§8.8.2.2: Date at least 1s later).
    ['a date equal to a strong Last-Modified honours the Range', LM, HEADERS, partial],
    ['a later date sends the whole representation', DATE, HEADERS, { kind: 'full' }],
    ['a date equal to a Last-Modified that equals Date (weak) sends the whole', LM, { ...HEADERS, date: LM }, { kind: 'full' }],
    ['an unparseable If-Range sends the whole representation', 'yesterday', HEADERS, { kind: 'full' }],
  ])('%s', (_name, ifRange, headers, want) => {
    expect(plan('GET', { range, 'if-range': ifRange }, complete(100, headers))).toEqual(want);
  });
});

describe('planDelivery: maxRanges', () => {
  // Counted on the ranges as requested, before coalescing (RFC 9110 §14.2: a server MAY ignore the Range).
  it.each<[string, string, number, DeliveryPlan['kind']]>([
    ['as many ranges as allowed', 'bytes=0-1,10-11', 2, 'multipart'],
    ['one range more than allowed', 'bytes=0-1,10-11,20-21', 2, 'full'],
    ['too many ranges even if they would coalesce into one', 'bytes=0-1,2-3,4-5', 2, 'full'],
    ['a single range with maxRanges 1', 'bytes=0-1', 1, 'range'],
    ['any Range with maxRanges 0', 'bytes=0-1', 0, 'full'],
  ])('%s', (_name, range, max, kind) => expect(plan('GET', { range }, complete(100), max).kind).toBe(kind));
});

describe('planDelivery: multipart (RFC 9110 §14.6)', () => {
  it('lays out sorted, coalesced ranges with the stored Content-Type and the complete length', () => {
    const boundary = vi.fn(() => 'B42');
    const p = planDelivery('GET', { range: 'bytes=50-59,0-4,3-9' }, complete(100), { maxRanges: 10, boundary });
    if (p.kind !== 'multipart') throw new Error(`expected multipart, got ${p.kind}`);
    expect(p.total).toBe(100);
    expect(p.plan.boundary).toBe('B42');
    expect(p.plan.parts.map((x) => x.range)).toEqual([{ start: 0, end: 9 }, { start: 50, end: 59 }]);
    expect(p.plan.parts.map((x) => x.head.toString('latin1'))).toEqual([
      '--B42\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-9/100\r\n\r\n',
      '\r\n--B42\r\ncontent-type: text/plain\r\ncontent-range: bytes 50-59/100\r\n\r\n',
    ]);
    expect(boundary).toHaveBeenCalledTimes(1);
  });

  it('asks for no boundary when a single part is enough', () => {
    const boundary = vi.fn(() => 'B');
    planDelivery('GET', { range: 'bytes=0-4,5-9' }, complete(100), { maxRanges: 10, boundary });
    expect(boundary).not.toHaveBeenCalled();
  });

  it('uses the announced length of an object still arriving', () => {
    const p = plan('GET', { range: 'bytes=0-4,90-' }, arriving(10, 100));
    expect(p.kind === 'multipart' && p.plan.parts.map((x) => x.range)).toEqual([{ start: 0, end: 4 }, { start: 90, end: 99 }]);
  });
});

describe('planDelivery: unsatisfiable (RFC 9110 §15.5.17)', () => {
  it.each<[string, string, PlannedObject, number]>([
    ['first-pos at the length', 'bytes=100-', complete(100), 100],
    ['first-pos past the length', 'bytes=200-300', complete(100), 100],
    ['a zero-length suffix', 'bytes=-0', complete(100), 100],
    ['every member unsatisfiable', 'bytes=100-110,200-', complete(100), 100],
    ['any range of an empty body', 'bytes=0-', complete(0), 0],
    ['a suffix of an empty body', 'bytes=-5', complete(0), 0],
    ['past the announced length of an object still arriving', 'bytes=150-', arriving(10, 100), 100],
  ])('%s', (_name, range, obj, total) => expect(plan('GET', { range }, obj)).toEqual({ kind: 'unsatisfiable', total }));
});

describe('planDelivery: an object still arriving', () => {
  it.each<[string, string, PlannedObject, DeliveryPlan]>([
    // With a Content-Length the range is decided at once; the body cursor waits for the bytes.
    ['known length, range not yet arrived', 'bytes=50-59', arriving(10, 100), { kind: 'range', range: { start: 50, end: 59 }, total: 100 }],
    ['known length, suffix', 'bytes=-10', arriving(0, 100), { kind: 'range', range: { start: 90, end: 99 }, total: 100 }],
    ['known length, last-pos clipped to it', 'bytes=95-200', arriving(0, 100), { kind: 'range', range: { start: 95, end: 99 }, total: 100 }],
    // Unknown length (RFC 9110 §14.4: complete-length "*"): one range answers once its first byte is here.
    ['unknown length, first byte here', 'bytes=0-9', arriving(1, undefined), { kind: 'range', range: { start: 0, end: 9 }, total: undefined }],
    ['unknown length, last byte not yet here', 'bytes=5-50', arriving(10, undefined), { kind: 'range', range: { start: 5, end: 50 }, total: undefined }],
    ['unknown length, first byte is the last arrived', 'bytes=9-', arriving(10, undefined), { kind: 'range', range: { start: 9, end: OPEN_END }, total: undefined }],
    ['unknown length, open-ended range runs to OPEN_END', 'bytes=0-', arriving(3, undefined), { kind: 'range', range: { start: 0, end: OPEN_END }, total: undefined }],
    ['unknown length, first byte one past what arrived', 'bytes=10-19', arriving(10, undefined), { kind: 'wait' }],
    ['unknown length, nothing arrived', 'bytes=0-0', arriving(0, undefined), { kind: 'wait' }],
    ['unknown length, a suffix needs the end', 'bytes=-10', arriving(50, undefined), { kind: 'wait' }],
    ['unknown length, several ranges need the length', 'bytes=0-1,5-6', arriving(50, undefined), { kind: 'wait' }],
  ])('%s', (_name, range, obj, want) => expect(plan('GET', { range }, obj)).toEqual(want));

  it('a finished body without Content-Length is planned against the bytes received', () => {
    const obj: PlannedObject = { status: 200, headers: HEADERS, length: 40, complete: true, expectedLength: undefined };
    expect(plan('GET', { range: 'bytes=-10' }, obj)).toEqual({ kind: 'range', range: { start: 30, end: 39 }, total: 40 });
    expect(plan('GET', { range: 'bytes=40-' }, obj)).toEqual({ kind: 'unsatisfiable', total: 40 });
  });

  it('OPEN_END is a safe integer, so end - start + 1 stays exact', () => {
    expect(Number.isSafeInteger(OPEN_END + 1)).toBe(true);
  });
});

// --- BodyCursor ---

const BODY = 'abcdefghijklmnopqrstuvwxyzABCD'; // 30 bytes

/** The body in chunks of the given sizes, counting pulls and whether the generator's finally ran. */
function source(sizes: readonly number[]): { gen: AsyncGenerator<Buffer, void, undefined>; pulls: () => number; finished: () => boolean } {
  let pulled = 0;
  let finished = false;
  async function* gen(): AsyncGenerator<Buffer, void, undefined> {
    try {
      let at = 0;
      for (const n of sizes) {
        pulled++;
        yield Buffer.from(BODY.slice(at, at + n));
        at += n;
      }
    } finally {
      finished = true;
    }
  }
  return { gen: gen(), pulls: () => pulled, finished: () => finished };
}

async function read(cursor: BodyCursor, start: number, end: number): Promise<string> {
  const parts: Buffer[] = [];
  for await (const b of cursor.range(start, end)) parts.push(b);
  return Buffer.concat(parts).toString();
}

describe('BodyCursor', () => {
  const CHUNKINGS: Array<[string, number[]]> = [
    ['one chunk', [30]],
    ['chunks of 10', [10, 10, 10]],
    ['awkward chunks', [3, 1, 7, 10, 9]],
    ['one byte per chunk', Array.from({ length: 30 }, () => 1)],
    ['with empty chunks', [0, 5, 0, 0, 12, 0, 13, 0]],
  ];
  const RANGES: Array<[string, Array<[number, number]>]> = [
    ['a range inside one chunk', [[12, 14]]],
    ['a range spanning chunks', [[2, 27]]],
    ['the whole body', [[0, 29]]],
    ['one byte at each end', [[0, 0], [29, 29]]],
    ['adjacent ranges', [[0, 9], [10, 19], [20, 29]]],
    ['adjacent ranges off the chunk boundaries', [[0, 3], [4, 10], [11, 11], [12, 24]]],
    ['ranges with gaps', [[1, 2], [8, 15], [21, 22]]],
    ['a range ending exactly at the end', [[20, 29]]],
    ['a range running past the end', [[25, 40]]],
    ['an open-ended range', [[7, OPEN_END]]],
    ['a range past the end after one inside', [[5, 6], [30, 40]]],
    ['ranges entirely past the end', [[30, 31], [35, 100]]],
  ];
  const cases = CHUNKINGS.flatMap(([cn, sizes]) => RANGES.map(([rn, ranges]) => [`${rn}, ${cn}`, sizes, ranges] as const));

  it.each(cases)('%s', async (_name, sizes, ranges) => {
    const cursor = new BodyCursor(source(sizes).gen);
    for (const [start, end] of ranges) expect(await read(cursor, start, end)).toBe(BODY.slice(start, end + 1));
  });

  it('pulls no chunk beyond the one that holds the end of the range (a live object is not waited on)', async () => {
    const src = source([10, 10, 10]);
    const cursor = new BodyCursor(src.gen);
    expect(await read(cursor, 2, 4)).toBe('cde');
    expect(src.pulls()).toBe(1);
    expect(await read(cursor, 5, 9)).toBe('fghij');
    expect(src.pulls()).toBe(1);
    expect(await read(cursor, 10, 10)).toBe('k');
    expect(src.pulls()).toBe(2);
  });

  it('a range ending one byte before a chunk ends keeps the rest for the next range', async () => {
    const src = source([10, 20]);
    const cursor = new BodyCursor(src.gen);
    expect(await read(cursor, 0, 8)).toBe(BODY.slice(0, 9));
    expect(await read(cursor, 9, 9)).toBe('j');
    expect(await read(cursor, 10, 11)).toBe('kl');
  });

  it('close() after a partial read ends the source generator (its finally runs)', async () => {
    const src = source([10, 10, 10]);
    const cursor = new BodyCursor(src.gen);
    expect(await read(cursor, 0, 4)).toBe('abcde');
    expect(src.finished()).toBe(false);
    await cursor.close();
    expect(src.finished()).toBe(true);
    expect(src.pulls()).toBe(1);
  });

  it('close() before any read leaves the source finished', async () => {
    const src = source([10, 10, 10]);
    await new BodyCursor(src.gen).close();
    expect(await src.gen.next()).toEqual({ done: true, value: undefined });
    expect(src.pulls()).toBe(0);
  });

  it('close() after the body was read to its end is harmless', async () => {
    const src = source([10, 10, 10]);
    const cursor = new BodyCursor(src.gen);
    expect(await read(cursor, 0, 100)).toBe(BODY);
    expect(src.finished()).toBe(true);
    await expect(cursor.close()).resolves.toBeUndefined();
  });

  it('close() on a source without return() resolves', async () => {
    const bare: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }),
    };
    await expect(new BodyCursor(bare).close()).resolves.toBeUndefined();
  });
});

describe('plannedHead: one head builder for every plan (plain and sliced delivery)', () => {
  const base = (): HeaderMap => ({ 'content-type': 'text/plain', etag: '"e"', via: '1.1 sluice' });
  const notMod = (): HeaderMap => ({ etag: '"e"', via: '1.1 sluice' });

  it('full keeps the stored head and covers the whole body', () => {
    const h = plannedHead({ kind: 'full' }, base, notMod);
    expect(h.override).toBeUndefined();
    expect(h.ranges).toEqual([{ start: 0, end: Number.MAX_SAFE_INTEGER }]);
    expect(h.tail).toBeUndefined();
  });

  it('not-modified: 304 with the headers a 304 keeps, no body, no length', () => {
    const h = plannedHead({ kind: 'not-modified' }, base, notMod);
    expect(h.override).toEqual({ status: 304, headers: notMod(), length: undefined });
    expect(h.ranges).toEqual([]);
  });

  it('unsatisfiable: 416 with Content-Range bytes */total and an empty body (RFC 9110 §15.5.17)', () => {
    const h = plannedHead({ kind: 'unsatisfiable', total: 1234 }, base, notMod);
    expect(h.override?.status).toBe(416);
    expect(h.override?.headers['content-range']).toBe('bytes */1234');
    expect(h.override?.headers['content-type']).toBe('text/plain');
    expect(h.override?.length).toBe('0');
    expect(h.ranges).toEqual([]);
  });

  it('range with a known total: 206, Content-Range and the range length', () => {
    const h = plannedHead({ kind: 'range', range: { start: 10, end: 19 }, total: 100 }, base, notMod);
    expect(h.override).toMatchObject({ status: 206, length: '10' });
    expect(h.override?.headers['content-range']).toBe('bytes 10-19/100');
    expect(h.ranges).toEqual([{ start: 10, end: 19 }]);
  });

  it('range on an object of unknown length: 206 with `/*` and no Content-Length (streamed chunked)', () => {
    const h = plannedHead({ kind: 'range', range: { start: 5, end: OPEN_END }, total: undefined }, base, notMod);
    expect(h.override?.length).toBeUndefined();
    expect(h.override?.headers['content-range']).toBe(`bytes 5-${OPEN_END}/*`);
  });

  it('multipart: 206 multipart/byteranges with the plan boundary, its parts and tail, the plan length', () => {
    const plan = planDelivery('GET', { range: 'bytes=0-1,5-6' }, { status: 200, headers: { 'content-type': 'text/plain' }, length: 10, complete: true, expectedLength: 10 }, { maxRanges: 16, boundary: () => 'B' });
    if (plan.kind !== 'multipart') throw new Error(`expected multipart, got ${plan.kind}`);
    const h = plannedHead(plan, base, notMod);
    expect(h.override?.status).toBe(206);
    expect(h.override?.headers['content-type']).toBe('multipart/byteranges; boundary=B');
    expect(h.override?.length).toBe(String(plan.plan.length));
    expect(h.ranges.map((r) => [r.start, r.end])).toEqual([
      [0, 1],
      [5, 6],
    ]);
    expect(h.ranges.every((r) => r.head !== undefined && r.head.toString().includes('--B'))).toBe(true);
    expect(h.tail?.toString()).toContain('--B--');
  });

  it('asks for fresh header copies: editing one head never leaks into the next', () => {
    const shared = base();
    const h1 = plannedHead({ kind: 'unsatisfiable', total: 1 }, () => ({ ...shared }), notMod);
    expect(shared['content-range']).toBeUndefined();
    expect(h1.override?.headers['content-range']).toBe('bytes */1');
  });
});
