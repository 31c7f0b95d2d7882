import { getHeader, type HeaderMap } from '../http/headers.js';
import { ProxyError } from '../errors.js';

/**
 * The slicer's arithmetic, after nginx's slice module and Varnish's segmented caching: a large object is cached as
 * segments of `size` bytes, each fetched with an origin Range request and stored under its own key, plus a meta
 * object holding the whole representation's headers and length. A client request is answered by stitching the
 * segments it needs; each segment is a subrequest through the policy hooks, counted as its own hit or miss.
 */

/**
 * Cache-key suffixes: the meta object and each segment live beside the object's own key, all under
 * `sliceKeyPrefix(key)`. These three functions are the only place slicer keys are built.
 */
export function sliceKeyPrefix(key: string): string {
  return `${key}\0slice`;
}

export function metaKeyOf(key: string, size: number): string {
  return `${sliceKeyPrefix(key)}-meta:${size}`;
}

export function segmentKeyOf(key: string, size: number, index: number, gen?: number): string {
  return gen === undefined ? `${sliceKeyPrefix(key)}:${size}:${index}` : `${sliceKeyPrefix(key)}@${gen}:${size}:${index}`;
}

/** The part of a key before any slicer suffix. */
export function baseKeyOf(key: string): string {
  const i = key.indexOf('\0slice');
  return i < 0 ? key : key.slice(0, i);
}

/** The Range header value that fetches segment `index`. */
export function segmentRangeHeader(index: number, size: number): string {
  const start = index * size;
  return `bytes=${start}-${start + size - 1}`;
}

/**
 * `Content-Range: bytes a-b/total` → its parts; undefined when absent, malformed, of the unsatisfied form (star for
 * the range), with a complete length not past the last byte (RFC 9110 §14.4), or with numbers over 15 digits (as a
 * Content-Length: past that they are not safe integers).
 */
export function parseContentRange(v: string | undefined): { start: number; end: number; total: number | undefined } | undefined {
  if (v === undefined) return undefined;
  const m = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/i.exec(v.trim());
  if (m === null) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) return undefined;
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (total !== undefined && total <= end) return undefined;
  return { start, end, total };
}

/** Most segments one object may have; a bigger one (or smaller segments) is refused rather than sliced. */
export const MAX_SEGMENTS = 1_000_000;

/** Whether an object of `total` bytes can be sliced into segments of `size` (not too many of them). */
export function sliceable(total: number, size: number): boolean {
  return Math.ceil(total / size) <= MAX_SEGMENTS;
}

/** The whole representation's headers, from a segment's: no Content-Range, the full Content-Length. */
export function metaHeaders(segment: HeaderMap, total: number): HeaderMap {
  const h: HeaderMap = {};
  for (const k in segment) {
    const v = segment[k];
    if (v !== undefined && k !== 'content-range' && k !== 'content-length') h[k] = v;
  }
  h['content-length'] = String(total);
  return h;
}

/** Segment indexes covering byte ranges (inclusive ends), ascending, each once. Linear in the segments covered. */
export function segmentsFor(ranges: ReadonlyArray<{ start: number; end: number }>, size: number): number[] {
  const all: number[] = [];
  for (const r of ranges) for (let i = Math.floor(r.start / size); i <= Math.floor(r.end / size); i++) all.push(i);
  all.sort((a, b) => a - b);
  const out: number[] = [];
  for (const i of all) if (out[out.length - 1] !== i) out.push(i);
  return out;
}

/**
 * Why a segment cannot be stitched into the representation the meta object describes (undefined: it can): not a
 * 206, a different place or total length, or a different validator (the object changed at the origin).
 */
export function segmentMismatch(status: number, headers: HeaderMap, index: number, size: number, total: number, meta: HeaderMap): string | undefined {
  if (status !== 206) return `segment ${index}: status ${status}, not 206`;
  const cr = parseContentRange(getHeader(headers, 'content-range'));
  const start = index * size;
  const end = Math.min(total - 1, start + size - 1);
  if (cr === undefined || cr.start !== start || cr.end !== end || cr.total !== total) {
    return `segment ${index}: Content-Range ${getHeader(headers, 'content-range') ?? 'missing'}, expected bytes ${start}-${end}/${total}`;
  }
  const want = getHeader(meta, 'etag');
  const got = getHeader(headers, 'etag');
  if (want !== undefined && got !== undefined && want !== got) return `segment ${index}: ETag ${got}, expected ${want} (the object changed)`;
  const lmWant = getHeader(meta, 'last-modified');
  const lmGot = getHeader(headers, 'last-modified');
  if (want === undefined && lmWant !== undefined && lmGot !== undefined && lmWant !== lmGot) return `segment ${index}: Last-Modified ${lmGot}, expected ${lmWant}`;
  return undefined;
}

/** Thrown mid-body when a segment does not fit the representation the meta object describes. */
export class SegmentMismatchError extends ProxyError {
  constructor(message: string) {
    super('CORE_ERR_SEGMENT_MISMATCH', message, { source: 'upstream', status: 503 });
  }
}

/** The clock and lifetime fields a segment takes from its meta object. */
type Lifetime = { requestTimeMs: number; responseTimeMs: number; initialAgeSec: number; ttlSec: number; graceSec: number; keepSec: number };

/** One lifetime: a segment's clock, TTL, grace and keep are its meta object's, whoever fetched it. */
export function takeMetaLifetime(seg: Lifetime, meta: Lifetime): void {
  seg.requestTimeMs = meta.requestTimeMs;
  seg.responseTimeMs = meta.responseTimeMs;
  seg.initialAgeSec = meta.initialAgeSec;
  seg.ttlSec = meta.ttlSec;
  seg.graceSec = meta.graceSec;
  seg.keepSec = meta.keepSec;
}
