import { isNotModified } from '../http/conditional.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import { ifRangeAllows, parseRange, planMultipart, resolveRanges, type ByteRange, type MultipartPlan } from '../http/range.js';

/**
 * What one client gets from an object, decided from its request and what is known of the object so far. Pure.
 *
 * Ranges on an object whose length is not known yet (still arriving, no Content-Length): a single range waits until
 * its first byte has arrived, then answers 206 with `Content-Range: bytes first-last/*` (RFC 9110 §14.4, complete
 * length unknown) and streams; an open-ended range uses the largest safe integer as last-pos, as
 * draft-ietf-httpbis-rand-access-live does for content of indeterminate length. The body ends cleanly where the
 * object ends. A suffix range or several ranges wait until the length is known.
 */
export type DeliveryPlan =
  | { kind: 'full' }
  | { kind: 'not-modified' }
  | { kind: 'range'; range: ByteRange; total: number | undefined }
  | { kind: 'multipart'; plan: MultipartPlan; total: number }
  | { kind: 'unsatisfiable'; total: number }
  /** Not decidable yet: wait for more of the object, then plan again. */
  | { kind: 'wait' };

export interface PlannedObject {
  status: number;
  headers: HeaderMap;
  /** Bytes received so far. */
  length: number;
  /** Whether the body is complete. */
  complete: boolean;
  /** Content-Length announced by the origin. */
  expectedLength: number | undefined;
}

/** Open-ended range on content of unknown length: last-pos used in Content-Range. */
export const OPEN_END = Number.MAX_SAFE_INTEGER - 1;

export function planDelivery(
  method: string,
  reqHeaders: HeaderMap,
  obj: PlannedObject,
  opts: { maxRanges: number; boundary: () => string },
): DeliveryPlan {
  if (obj.status !== 200) return { kind: 'full' };
  if (isNotModified(method, reqHeaders, obj.headers)) return { kind: 'not-modified' };
  if (method !== 'GET' && method !== 'HEAD') return { kind: 'full' };
  const parsed = parseRange(getHeader(reqHeaders, 'range'));
  if (parsed.kind !== 'ranges') return { kind: 'full' };
  // Too many ranges: ignore the Range and send the whole representation (as nginx's max_ranges does).
  if (parsed.specs.length > opts.maxRanges) return { kind: 'full' };
  if (!ifRangeAllows(getHeader(reqHeaders, 'if-range'), obj.headers)) return { kind: 'full' };
  const total = obj.complete ? obj.length : obj.expectedLength;
  if (total === undefined) {
    const spec = parsed.specs[0];
    if (parsed.specs.length > 1 || spec === undefined || 'suffix' in spec) return { kind: 'wait' };
    if (obj.length <= spec.first) return { kind: 'wait' };
    return { kind: 'range', range: { start: spec.first, end: spec.last ?? OPEN_END }, total: undefined };
  }
  const ranges = resolveRanges(parsed.specs, total);
  if (ranges.length === 0) return { kind: 'unsatisfiable', total };
  if (ranges.length === 1) return { kind: 'range', range: ranges[0] as ByteRange, total };
  return { kind: 'multipart', plan: planMultipart(ranges, total, getHeader(obj.headers, 'content-type'), opts.boundary()), total };
}

/**
 * Reads byte ranges, in ascending order, from a body that arrives as chunks: each `range` call yields the slices of
 * [start, end] (inclusive) and leaves the cursor after them, so several ranges share one pass over the body.
 */
export class BodyCursor {
  private readonly it: AsyncIterator<Buffer>;
  private offset = 0;
  private pending: Buffer | undefined;

  constructor(chunks: AsyncIterable<Buffer>) {
    this.it = chunks[Symbol.asyncIterator]();
  }

  async *range(start: number, end: number): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      let chunk = this.pending;
      this.pending = undefined;
      if (chunk === undefined) {
        const n = await this.it.next();
        if (n.done === true) return;
        chunk = n.value;
      }
      const chunkStart = this.offset;
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd <= start) {
        this.offset = chunkEnd;
        continue;
      }
      if (chunkStart > end) {
        this.pending = chunk;
        return;
      }
      const from = Math.max(0, start - chunkStart);
      const to = Math.min(chunk.length, end + 1 - chunkStart);
      yield chunk.subarray(from, to);
      if (to < chunk.length) {
        this.pending = chunk.subarray(to);
        this.offset = chunkStart + to;
        return;
      }
      this.offset = chunkEnd;
      if (this.offset > end) return;
    }
  }

  /** Releases the underlying reader. */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}
