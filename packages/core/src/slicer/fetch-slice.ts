import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv } from '../context.js';
import { errorMessage } from '../errors.js';
import { stripHopByHop, type HeaderMap } from '../http/headers.js';
import type { BackendResponse, DownstreamRequest } from '../policy/hooks.js';
import type { Transaction } from '../txlog/txlog.js';
import type { UpstreamRequest, UpstreamResponse } from '../upstream.js';
import { candidateOf, contentLengthOf, FetchSlicer, notSliceableReason } from './handle.js';
import { probeIndex, rangeProbe, type ProbedSegment } from './probe.js';

export { candidateOf } from './handle.js';

/**
 * The slicer's part of a fetch (fetch/fetch.ts calls these; the logic lives here): the handle the upstream hooks
 * receive, the HEAD that goes first when the request hook enabled slicing (and the retry when it does not qualify),
 * and the decision, with the response's headers in hand, that turns the object into a meta object whose body is
 * never read.
 */

/** What of a fetch the slicer looks at. */
export interface SliceFetch<Ctx> {
  bereq: UpstreamRequest;
  tx: { req: DownstreamRequest; ctx: Ctx; log: Transaction | undefined };
  obj: CacheObject;
  isPass: boolean;
  stale: CacheObject | undefined;
}

/** The handle, the HEAD's answer when one went first and qualified, and how to fetch whole if it is not kept. */
export interface SlicerStart {
  slicer: FetchSlicer;
  /** A HEAD's answer, or the range probe's 200 view of a 206 (probe.ts): decided on, never a body to keep. */
  head: UpstreamResponse | undefined;
  /** The range probe's 206 whose body is to be kept as a segment when its view makes the meta object. */
  probe?: ProbedSegment | undefined;
  /** The range probe's answer to use as the fetch's own response (a 200: the origin ignored the Range). */
  answer?: UpstreamResponse | undefined;
  /** The request sent when it is not the bereq (the range probe's, its answer or view used): for the log. */
  sent?: UpstreamRequest | undefined;
  /** The HEAD's object is not sliced after all (the hooks or the rules did not keep it): the handle to fetch it whole. */
  whole: () => Promise<FetchSlicer>;
}

/**
 * The start of a fetch with nothing to wait for (no upstreamRequestFilter hook, no range probe): the closed handle,
 * synchronously, so the request is sent in the turn the miss was decided in (issue 16). Undefined otherwise: then
 * requestWithSlicer. What it returns is what requestWithSlicer would.
 */
export function plainStart<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>): SlicerStart | undefined {
  if (env.hooks.upstreamRequestFilter !== undefined || rangeProbeSize(env, f) !== undefined) return undefined;
  const slicer = new FetchSlicer(f.tx.req.segment !== undefined, f.isPass, f.bereq.body !== null);
  slicer.phase = 'closed';
  return { slicer, head: undefined, whole: () => Promise.resolve(slicer) };
}

/**
 * The request hook with the handle; a HEAD first when it enabled slicing. When `--slice-min` is on and the client
 * asked for a Range (a cold range then costs the origin its segments only, not the start of a body left unread): the
 * range probe (probe.ts), one Range GET for the segment the range starts in, when no upstream hook could enable or
 * refuse slicing; else a HEAD first.
 */
export async function requestWithSlicer<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>, be: Transaction | undefined): Promise<SlicerStart> {
  const sub = f.tx.req.segment !== undefined;
  const hook = env.hooks.upstreamRequestFilter;
  const original = hook === undefined || sub ? undefined : copyBereq(f.bereq);
  const slicer = new FetchSlicer(sub, f.isPass, f.bereq.body !== null);
  await hook?.(f.bereq, f.tx.ctx, slicer);
  slicer.phase = 'closed';
  // A revalidation (conditional) goes as it is: a 304 keeps the object sliced, a 200 is decided from its headers.
  if (slicer.requested === undefined || original === undefined || f.stale !== undefined) {
    const whole = (): Promise<FetchSlicer> => Promise.resolve(slicer);
    const size = rangeProbeSize(env, f);
    const index = size === undefined ? undefined : probeIndex(env, f, size);
    if (size !== undefined && index !== undefined) {
      const p = await rangeProbe(env, f, index, size, env.slicing?.minBytes ?? 0, be);
      const used = p?.view !== undefined || p?.answer !== undefined;
      return { slicer, head: p?.view, probe: p?.segment, answer: p?.answer, sent: used ? p?.sent : undefined, whole };
    }
    const head = size === undefined ? undefined : await headProbe(env, f, size, be, env.slicing?.minBytes ?? 0);
    return { slicer, head, whole };
  }
  const retry = (): Promise<FetchSlicer> => retryWithoutSlicing(env, f, original);
  const head = await headProbe(env, f, slicer.requested, be, 0);
  if (head !== undefined) return { slicer, head, whole: retry };
  return { slicer: await retry(), head: undefined, whole: retry };
}

/** `--slice-min`, a client Range, a plain miss whose URL matches: the segment size to probe for with a HEAD. */
function rangeProbeSize<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>): number | undefined {
  const s = env.slicing;
  if (s?.minBytes === undefined || f.tx.req.headers['range'] === undefined || f.tx.req.segment !== undefined) return undefined;
  if (f.isPass || f.bereq.body !== null || f.bereq.method !== 'GET' || f.stale !== undefined) return undefined;
  return s.match === undefined || s.match.test(f.tx.req.url) ? s.sizeBytes : undefined;
}

/**
 * The enabled fetch cannot be sliced (its HEAD did not qualify, or the hooks did not keep the object): it is tried
 * again, once, from the request as it was before the hook, with failed() true, so the policy can fetch it whole.
 */
export async function retryWithoutSlicing<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>, original: UpstreamRequest): Promise<FetchSlicer> {
  Object.assign(f.bereq, copyBereq(original));
  const retry = new FetchSlicer(f.tx.req.segment !== undefined, f.isPass, f.bereq.body !== null, true);
  await env.hooks.upstreamRequestFilter?.(f.bereq, f.tx.ctx, retry);
  retry.phase = 'closed';
  return retry;
}

function copyBereq(b: UpstreamRequest): UpstreamRequest {
  return { ...b, headers: { ...b.headers } };
}

/** The HEAD that goes first: its answer when it qualifies for slicing, else undefined (any failure included). */
async function headProbe<Ctx>(env: ProxyEnv<Ctx>, f: SliceFetch<Ctx>, size: number, be: Transaction | undefined, minBytes: number): Promise<UpstreamResponse | undefined> {
  const headers: HeaderMap = { ...f.bereq.headers };
  delete headers['range'];
  f.obj.requestTimeMs = env.now();
  try {
    const res = await env.upstream.request({ ...f.bereq, method: 'HEAD', headers }, { signal: f.obj.fetchController.signal });
    f.obj.responseTimeMs = env.now();
    res.body.resume();
    const c = candidateOf(res.status, stripHopByHop(res.headers), res.headers, f.isPass, f.bereq.body !== null);
    const why = notSliceableReason(c, size) ?? ((contentLengthOf(c.headers) ?? 0) < minBytes ? 'under-minimum' : undefined);
    if (why === undefined) return res;
  } catch (e: unknown) {
    be?.add('FetchError', `slicer HEAD failed: ${errorMessage(e)}`);
  }
  return undefined;
}

/**
 * Opens the response phase: enable() now checks the response. The candidate (a copy of the headers) is made only
 * when a response hook will hold the handle (`forHook`): nothing else calls enable() (issue 16, a miss's copies).
 */
export function openResponsePhase(slicer: FetchSlicer, beresp: BackendResponse, res: UpstreamResponse, f: SliceFetch<unknown>, forHook = true): void {
  slicer.phase = 'response';
  if (forHook) slicer.candidate = candidateOf(beresp.status, beresp.headers, res.headers, f.isPass, f.bereq.body !== null);
}

/**
 * After the response hook and the builtin rules: the segment size when this object is sliced, else undefined. The
 * policy's choice (either hook) first, then `--slice-min` (objects of at least that many bytes, URL filter applied).
 * An object that is not stored (uncacheable, a pass) is never sliced: the meta object is what governs its segments.
 */
export function sliceDecision<Ctx>(env: ProxyEnv<Ctx>, slicer: FetchSlicer, beresp: BackendResponse, res: UpstreamResponse, f: SliceFetch<Ctx>): number | undefined {
  slicer.phase = 'closed';
  if (slicer.isSub() || f.isPass || beresp.uncacheable) return undefined;
  // A 304 refreshing a sliced object keeps it sliced, with the same segments.
  if (beresp.was304) return f.stale?.slice?.size;
  // Nobody asked for a size and no --slice-min: not sliced, without the candidate's copy of the headers.
  if (slicer.decided === undefined && slicer.requested === undefined && env.slicing?.minBytes === undefined) return undefined;
  const c = candidateOf(beresp.status, beresp.headers, res.headers, f.isPass, f.bereq.body !== null);
  const size = slicer.decided ?? slicer.requested ?? adaptiveSize(env, f.tx.req, c.headers);
  if (size === undefined) return undefined;
  return notSliceableReason(c, size) === undefined ? size : undefined;
}

/** `--slice SIZE --slice-min BYTES`: the size for an object of at least BYTES whose URL matches, else undefined. */
function adaptiveSize<Ctx>(env: ProxyEnv<Ctx>, req: DownstreamRequest, headers: HeaderMap): number | undefined {
  const s = env.slicing;
  if (s?.minBytes === undefined || (s.match !== undefined && !s.match.test(req.url))) return undefined;
  const total = contentLengthOf(headers);
  return total !== undefined && total >= s.minBytes ? s.sizeBytes : undefined;
}

let generation = 0;

/**
 * The object becomes the meta object of a sliced representation: headers and length, no body; its segments live
 * under keys of this generation and die with it. The response's body is the caller's: kept as the first run of
 * segments or closed unread (lead.ts keepFirstRun).
 */
export function makeMeta(obj: CacheObject, res: UpstreamResponse, size: number, stale: CacheObject | undefined): void {
  obj.bodyless = true;
  obj.expectedLength = 0;
  if (res.status === 304 && stale?.slice !== undefined) {
    // Revalidated: the segments move to the refreshed object (the stale one is replaced, and must not take them along).
    obj.slice = stale.slice;
    stale.slice = undefined;
    res.body.resume();
    return;
  }
  const total = contentLengthOf(res.headers) ?? 0;
  obj.slice = { size, total, gen: ++generation, segments: new Set() };
}
