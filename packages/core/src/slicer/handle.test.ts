import { describe, expect, it } from 'vitest';
import { FetchSlicer, notSliceableReason, type SliceCandidate } from './handle.js';

/** The qualification rules of the slicer (issue 13), one at a time, on header literals. */
const ok: SliceCandidate = { status: 200, headers: { 'content-length': '10000', etag: '"a"' }, isPass: false, hasRequestBody: false };

describe('notSliceableReason', () => {
  it('a 200 with Content-Length, a validator, no encoding, no body, not a pass qualifies', () => {
    expect(notSliceableReason(ok, 1024)).toBeUndefined();
    expect(notSliceableReason({ ...ok, headers: { 'content-length': '10000', 'last-modified': 'Tue, 01 Dec 2026 10:00:00 GMT' } }, 1024)).toBeUndefined();
    expect(notSliceableReason({ ...ok, headers: { ...ok.headers, 'content-encoding': 'identity' } }, 1024)).toBeUndefined();
  });

  it.each<[string, SliceCandidate, string]>([
    ['a pass', { ...ok, isPass: true }, 'pass'],
    ['a request with a body', { ...ok, hasRequestBody: true }, 'request-body'],
    ['a 206', { ...ok, status: 206 }, 'status'],
    ['a 404', { ...ok, status: 404 }, 'status'],
    ['no Content-Length', { ...ok, headers: { etag: '"a"' } }, 'no-length'],
    ['a Content-Length of 16 digits', { ...ok, headers: { etag: '"a"', 'content-length': '1000000000000000' } }, 'no-length'],
    ['Content-Encoding gzip', { ...ok, headers: { ...ok.headers, 'content-encoding': 'gzip' } }, 'content-encoding'],
    ['no ETag nor Last-Modified', { ...ok, headers: { 'content-length': '10000' } }, 'no-validator'],
    ['an empty body', { ...ok, headers: { etag: '"a"', 'content-length': '0' } }, 'empty'],
    ['over a million segments', { ...ok, headers: { etag: '"a"', 'content-length': String(1024 * 1_000_001) } }, 'too-many-segments'],
  ])('%s does not qualify', (_name, c, why) => {
    expect(notSliceableReason(c, 1024)).toBe(why);
  });
});

describe('FetchSlicer', () => {
  it('the request phase records the size; a retry (failed) and a segment refuse', () => {
    const top = new FetchSlicer(false, false, false);
    expect(top.isTop()).toBe(true);
    expect(top.enable(1024)).toBe(true);
    expect(top.requested).toBe(1024);
    expect(new FetchSlicer(false, false, false, true).enable(1024)).toBe(false);
    const sub = new FetchSlicer(true, false, false);
    expect(sub.isSub()).toBe(true);
    expect(sub.enable(1024)).toBe(false);
    expect(new FetchSlicer(false, true, false).enable(1024)).toBe(false);
    expect(new FetchSlicer(false, false, true).enable(1024)).toBe(false);
  });

  it('the response phase checks the candidate; closed refuses', () => {
    const s = new FetchSlicer(false, false, false);
    s.phase = 'response';
    s.candidate = ok;
    expect(s.enable(4096)).toBe(true);
    expect(s.decided).toBe(4096);
    s.candidate = { ...ok, status: 206 };
    expect(s.enable(4096)).toBe(false);
    s.phase = 'closed';
    s.candidate = ok;
    expect(s.enable(4096)).toBe(false);
    expect(s.enable(512)).toBe(false);
  });
});
