import { isNotModified } from '../http/conditional.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import { contentRange, ifRangeAllows, parseRange, planMultipart, resolveRanges, type ByteRange, type MultipartPlan } from '../http/range.js';

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

/** A plan that can be acted on. */
export type DecidedPlan = Exclude<DeliveryPlan, { kind: 'wait' }>;

/** A stretch of the body to send (inclusive offsets), after its multipart part head when there is one. */
export interface BodyRange {
  head?: Buffer;
  start: number;
  end: number;
}

/** Status, headers and Content-Length replacing the stored ones (206, 304, 416). */
export interface HeadOverride {
  status: number;
  headers: HeaderMap;
  length: string | undefined;
}

/** What a plan means on the wire: the head (undefined: the stored one), the body stretches, the multipart tail. */
export interface PlannedHead {
  override: HeadOverride | undefined;
  ranges: BodyRange[];
  tail: Buffer | undefined;
}

/**
 * The one head builder for every plan, used by plain and sliced delivery alike. `headers()` gives the representation's
 * headers as delivered (a fresh copy each call), `notModified()` those a 304 keeps. A full response keeps the stored
 * head and covers the whole body.
 */
export function plannedHead(plan: DecidedPlan, headers: () => HeaderMap, notModified: () => HeaderMap): PlannedHead {
  switch (plan.kind) {
    case 'full':
      return { override: undefined, ranges: [{ start: 0, end: Number.MAX_SAFE_INTEGER }], tail: undefined };
    case 'not-modified':
      return { override: { status: 304, headers: notModified(), length: undefined }, ranges: [], tail: undefined };
    case 'unsatisfiable': {
      const h = headers();
      h['content-range'] = `bytes */${plan.total}`;
      return { override: { status: 416, headers: h, length: '0' }, ranges: [], tail: undefined };
    }
    case 'range': {
      const h = headers();
      h['content-range'] = contentRange(plan.range, plan.total);
      const length = plan.total === undefined ? undefined : String(plan.range.end - plan.range.start + 1);
      return { override: { status: 206, headers: h, length }, ranges: [{ start: plan.range.start, end: plan.range.end }], tail: undefined };
    }
    case 'multipart': {
      const h = headers();
      h['content-type'] = `multipart/byteranges; boundary=${plan.plan.boundary}`;
      const ranges = plan.plan.parts.map((p) => ({ head: p.head, start: p.range.start, end: p.range.end }));
      return { override: { status: 206, headers: h, length: String(plan.plan.length) }, ranges, tail: plan.plan.tail };
    }
  }
}
