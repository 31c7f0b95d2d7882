import { getHeader, type HeaderMap } from '../http/headers.js';
import { sliceable } from './slicer.js';

/**
 * The `slicer` handle the upstream hooks receive, after Varnish Enterprise's slicer vmod: the policy turns slicing on
 * for one fetch, with the origin's answer in hand or before the request goes out.
 *
 *   upstreamRequestFilter:  slicer.enable(size) -> the fetch is a HEAD first; a qualifying answer becomes the meta
 *                           object and only the segments a client needs are fetched; otherwise the fetch is tried
 *                           again, once, with `slicer.failed()` true, so the policy can fetch without slicing.
 *   upstreamResponseFilter: slicer.enable(size) -> with the headers in hand: a qualifying object's body is never read
 *                           (its connection is closed) and segments are fetched instead; false when it cannot slice.
 *
 * Without a policy, `--slice SIZE --slice-min BYTES` slices every response of at least BYTES (decided here too).
 */
export interface Slicer {
  /** Slices this fetch's object into segments of `size` bytes; false when it cannot (see the two places above). */
  enable(size: number): boolean;
  /** True on the retry after an enabled fetch's HEAD did not qualify. */
  failed(): boolean;
  /** The client's own fetch (not a segment). */
  isTop(): boolean;
  /** A segment subrequest's fetch. */
  isSub(): boolean;
}

/** Why a response cannot be sliced (undefined: it can), in the order the rules are checked. */
export type NotSliceableReason = 'pass' | 'request-body' | 'status' | 'no-length' | 'content-encoding' | 'no-validator' | 'too-many-segments' | 'empty';

/** What qualification looks at. */
export interface SliceCandidate {
  status: number;
  headers: HeaderMap;
  isPass: boolean;
  hasRequestBody: boolean;
}

/**
 * The slicer's rules: a 200 with a Content-Length, no Content-Encoding (segments of an encoding are not ranges of the
 * representation a client asks for), a validator (ETag or Last-Modified: segments fetched later are checked against
 * it, so bodies of two versions are never spliced), no request body, not a pass; and not more than MAX_SEGMENTS.
 */
export function notSliceableReason(c: SliceCandidate, size: number): NotSliceableReason | undefined {
  if (c.isPass) return 'pass';
  if (c.hasRequestBody) return 'request-body';
  if (c.status !== 200) return 'status';
  const total = contentLengthOf(c.headers);
  if (total === undefined) return 'no-length';
  const ce = getHeader(c.headers, 'content-encoding');
  if (ce !== undefined && ce.trim().toLowerCase() !== 'identity') return 'content-encoding';
  if (getHeader(c.headers, 'etag') === undefined && getHeader(c.headers, 'last-modified') === undefined) return 'no-validator';
  if (total === 0) return 'empty';
  if (!sliceable(total, size)) return 'too-many-segments';
  return undefined;
}

/** The qualification input: the decided headers plus the origin's Content-Length (hop-by-hop, so stripped from them). */
export function candidateOf(status: number, headers: HeaderMap, raw: HeaderMap, isPass: boolean, hasRequestBody: boolean): SliceCandidate {
  const cl = raw['content-length'];
  return { status, headers: cl === undefined ? headers : { ...headers, 'content-length': cl }, isPass, hasRequestBody };
}

/** A Content-Length of at most 15 digits (a safe integer), else undefined. */
export function contentLengthOf(headers: HeaderMap): number | undefined {
  const v = getHeader(headers, 'content-length');
  return v !== undefined && /^\d{1,15}$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/** Smallest segment the handle accepts (as `--slice`). */
export const MIN_SEGMENT_BYTES = 1024;

/**
 * One fetch's handle. `phase` is where the policy may call enable: 'request' (before the request is sent),
 * 'response' (with `candidate` set), 'closed' (anywhere else: enable returns false).
 */
export class FetchSlicer implements Slicer {
  /** Segment size asked for in the request hook (a HEAD goes first). */
  requested: number | undefined;
  /** Segment size decided with the response in hand. */
  decided: number | undefined;
  phase: 'request' | 'response' | 'closed' = 'request';
  candidate: SliceCandidate | undefined;

  constructor(
    private readonly sub: boolean,
    private readonly isPass: boolean,
    private readonly hasRequestBody: boolean,
    private readonly wasFailed = false,
  ) {}

  enable(size: number): boolean {
    if (this.sub || this.isPass || this.hasRequestBody || !Number.isSafeInteger(size) || size < MIN_SEGMENT_BYTES) return false;
    if (this.phase === 'request') {
      if (this.wasFailed) return false;
      this.requested = size;
      return true;
    }
    if (this.phase === 'response' && this.candidate !== undefined && notSliceableReason(this.candidate, size) === undefined) {
      this.decided = size;
      return true;
    }
    return false;
  }

  failed(): boolean {
    return this.wasFailed;
  }

  isTop(): boolean {
    return !this.sub;
  }

  isSub(): boolean {
    return this.sub;
  }
}
