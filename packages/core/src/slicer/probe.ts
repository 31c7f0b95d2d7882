import { Readable } from 'node:stream';
import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv } from '../context.js';
import { errorMessage } from '../errors.js';
import { MISS_STRIP } from '../fetch/bereq.js';
import { backendResponse, commitHeaders, type BerespInput } from '../fetch/beresp.js';
import { getHeader, stripHopByHop, type HeaderMap } from '../http/headers.js';
import { parseRange } from '../http/range.js';
import type { Transaction } from '../txlog/txlog.js';
import type { UpstreamRequest, UpstreamResponse } from '../upstream.js';
import type { SliceFetch } from './fetch-slice.js';
import { candidateOf, notSliceableReason } from './handle.js';
import { segmentRequestOf } from './segment-request.js';
import { metaHeaders, parseContentRange, segmentRangeHeader, takeMetaLifetime } from './slicer.js';

/**
 * The range probe (nginx's slice module, for the slicer decided from the response): a cold miss for a client Range
 * sends as its FIRST origin request a Range GET for the segment the range starts in, not a HEAD or a whole GET first.
 *
 *   206 bytes a-b/TOTAL as asked, qualifying (TOTAL >= --slice-min, no Content-Encoding, a validator): the fetch is
 *       decided on a 200 view of it (Content-Length TOTAL, no Content-Range: the headers a 200 would give the meta
 *       object, judged by the same storage rules), and its body is kept as that segment of the meta's generation.
 *   200 (Range ignored), or any status but 206 and 416: that is the answer to the fetch, decided as today.
 *   206 that does not qualify or does not match, 416, multipart: its body is closed, the fetch goes on with a whole
 *       GET (a second request); the log says why (`Debug`).
 *
 * Only without upstreamRequestFilter and upstreamResponseFilter hooks: either may enable or refuse slicing, and would
 * then see a 206 for a request they did not make Range, or the first request would not be the one they shaped.
 */

/** The probe's segment: the 206 whose body becomes segment `index`, until kept or closed. */
export class ProbedSegment {
  private closed = false;
  private kept = false;
  constructor(
    readonly index: number,
    readonly res: UpstreamResponse,
    readonly bereq: UpstreamRequest,
    private readonly controller: AbortController,
    private readonly unlink: () => void,
  ) {}

  /**
   * Done with it (idempotent): the body is closed unless it was kept and read to its end, and the probe no longer
   * listens to the fetch's signal.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unlink();
    if (!this.kept || !this.res.body.readableEnded) this.res.body.destroy();
  }

  /** The body now belongs to `seg`: aborting its fetch (no reader left, shutdown) closes the origin connection. */
  keep(seg: CacheObject): void {
    this.kept = true;
    seg.fetchController.signal.addEventListener('abort', () => this.controller.abort(seg.fetchController.signal.reason), { once: true });
  }
}

/** What the probe got: a 200 view with the segment to keep, or an answer to use as it is, or neither (fetch whole). */
export interface ProbeResult {
  view?: UpstreamResponse | undefined;
  segment?: ProbedSegment | undefined;
  answer?: UpstreamResponse | undefined;
  /** The request that was sent (logged as the fetch's Bereq when its answer is used). */
  sent: UpstreamRequest;
}

/** The segment a client Range's first byte is in: one `first-` or `first-last` range, no If-Range; else undefined. */
export function probeIndex<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>, size: number): number | undefined {
  const h = env.hooks;
  if (h.upstreamRequestFilter !== undefined || h.upstreamResponseFilter !== undefined) return undefined;
  const req = f.tx.req;
  // A HEAD needs no body; an If-Range may turn the answer into the whole object, which starts at segment 0. A fetch
  // that forwards the client's Range or conditionals (hit-for-miss) is not a plain miss: its answer is the client's.
  if (req.method !== 'GET' || req.headers['if-range'] !== undefined) return undefined;
  if (MISS_STRIP.some((h) => f.bereq.headers[h] !== undefined)) return undefined;
  const r = parseRange(getHeader(req.headers, 'range'));
  if (r.kind !== 'ranges' || r.specs.length !== 1) return undefined;
  const spec = r.specs[0];
  return spec !== undefined && 'first' in spec ? Math.floor(spec.first / size) : undefined;
}

/** Sends the probe; undefined when it got no answer (logged) so the fetch goes on as without it. */
export async function rangeProbe<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>, index: number, size: number, minBytes: number, be: Transaction | undefined): Promise<ProbeResult | undefined> {
  const sent: UpstreamRequest = { ...f.bereq, headers: { ...f.bereq.headers, range: segmentRangeHeader(index, size) } };
  // Its own signal, so the kept segment's fetch can close this connection; the fetch's own abort closes it too.
  const controller = new AbortController();
  const outer = f.obj.fetchController.signal;
  const onAbort = (): void => controller.abort(outer.reason);
  if (outer.aborted) onAbort();
  else outer.addEventListener('abort', onAbort, { once: true });
  const unlink = (): void => outer.removeEventListener('abort', onAbort);
  f.obj.requestTimeMs = env.now();
  let res: UpstreamResponse;
  try {
    res = await env.upstream.request(sent, { signal: controller.signal });
  } catch (e: unknown) {
    unlink();
    be?.add('FetchError', `slicer range probe failed: ${errorMessage(e)}`);
    return undefined;
  }
  f.obj.responseTimeMs = env.now();
  if (res.status !== 206 && res.status !== 416) {
    unlink();
    return { answer: res, sent };
  }
  const seg = new ProbedSegment(index, res, sent, controller, unlink);
  const why = res.status === 416 ? 'status 416' : unusable(res.headers, index, size, minBytes, f.isPass);
  if (why === undefined) return { view: viewOf(res), segment: seg, sent };
  seg.close();
  be?.add('Debug', `slicer range probe ${sent.headers['range'] as string}: ${why}; fetched whole`);
  return { sent };
}

/** Why a probe's 206 cannot make the meta object (undefined: it can). */
function unusable(headers: HeaderMap, index: number, size: number, minBytes: number, isPass: boolean): string | undefined {
  const raw = getHeader(headers, 'content-range');
  const cr = parseContentRange(raw);
  const start = index * size;
  if (cr?.total === undefined || cr.start !== start || cr.end !== Math.min(cr.total - 1, start + size - 1)) {
    return `Content-Range ${raw ?? 'missing'} does not answer the range asked for`;
  }
  const view = metaHeaders(headers, cr.total);
  const reason = notSliceableReason(candidateOf(200, stripHopByHop(view), view, isPass, false), size);
  if (reason !== undefined) return `not sliceable (${reason})`;
  return cr.total < minBytes ? `${cr.total} bytes, under --slice-min ${minBytes}` : undefined;
}

/** The 200 the fetch is decided on: the 206's headers, Content-Length the whole length, no Content-Range; no body. */
function viewOf(res: UpstreamResponse): UpstreamResponse {
  const total = parseContentRange(getHeader(res.headers, 'content-range'))?.total as number;
  const view: UpstreamResponse = { status: 200, headers: metaHeaders(res.headers, total), body: Readable.from([]) };
  if (res.reusedConnection !== undefined) view.reusedConnection = res.reusedConnection;
  return view;
}

/**
 * The probe's body becomes segment `index` of the meta object `meta` just made (stored, sliced): stored under the
 * key a segment subrequest of the meta's generation looks up, with the meta's lifetime, bound to it (removed with
 * it). Returns the input to pump its body with, or undefined when it cannot be kept (the body is closed then, and the
 * client's segment subrequest fetches it): an asynchronous cacheKey hook, or the key already taken.
 */
export function keepProbedSegment<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, probe: ProbedSegment, parent: BerespInput['req']): BerespInput | undefined {
  const s = meta.slice;
  if (s === undefined || meta.stored !== true) return void probe.close();
  const req = segmentRequestOf(parent, probe.index, s.size, s.gen);
  const key = env.keyOf(req, env.newCtx());
  if (typeof key !== 'string') return void probe.close();
  const r = env.store.lookup(key, req.headers, env.now());
  if (r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
  if (r.kind !== 'miss') return void probe.close();
  const seg = r.obj;
  seg.requestTimeMs = meta.requestTimeMs;
  seg.responseTimeMs = meta.responseTimeMs;
  const input: BerespInput = { res: probe.res, bereq: probe.bereq, obj: seg, stale: undefined, isPass: false, req };
  commitHeaders(input, backendResponse(env, input), env.rules);
  // One lifetime, as a fetched segment's (sliced.ts bindSegment): the meta's.
  takeMetaLifetime(seg, meta);
  if (!env.store.insert(seg)) {
    // Nobody can be waiting on it yet (no await since the lookup): the key is simply free again.
    env.store.releaseBusy(seg);
    return void probe.close();
  }
  s.segments.add(seg.key);
  probe.keep(seg);
  seg.setState('stream');
  return input;
}
