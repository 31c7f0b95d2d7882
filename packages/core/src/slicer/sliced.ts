import { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { BodyCursor } from '../deliver/cursor.js';
import { sendBody, newBoundary } from '../deliver/deliver.js';
import { deliveryHeaders, fetchFailedSynth, writeHead } from '../deliver/head.js';
import { planDelivery, plannedHead, type BodyRange, type PlannedHead } from '../deliver/plan.js';
import { errorMessage, ProxyError } from '../errors.js';
import { notModifiedHeaders } from '../http/conditional.js';
import { getHeader } from '../http/headers.js';
import { MAX_SEGMENTS, metaHeaders, metaKeyOf, parseContentRange, sliceable, SegmentMismatchError, segmentMismatch, segmentsFor, sliceKeyPrefix } from './slicer.js';

/**
 * A sliced request: the meta object gives the representation's headers and length (made from segment 0 when it is
 * not cached), then the segments the request needs are fetched as subrequests, one after another, and stitched.
 * A segment that does not fit (the object changed at the origin) drops the meta object: before the response head
 * the request starts over once (the step returns 'slice' again), after it the client is cut off. An origin that
 * ignores Range answers segment 0 with the whole object, which is then delivered as it is.
 *
 * The request machine hands in `subrequest`: a segment's own walk through recv, lookup and miss; this room never
 * imports the machine.
 */
export type Subrequest<Ctx> = (parent: Tx<Ctx>, index: number, size: number) => Promise<Tx<Ctx>>;

/** Segment size for this request when its object is to be sliced, else undefined. */
export function sliceSizeOf<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): number | undefined {
  const req = tx.req;
  if (req.segment !== undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return undefined;
  const fromHook = env.hooks.sliceSize?.(req, tx.ctx);
  if (fromHook !== undefined) return fromHook > 0 ? fromHook : undefined;
  const s = env.slicing;
  if (s === undefined || (s.match !== undefined && !s.match.test(req.url))) return undefined;
  return s.sizeBytes;
}

/** The subrequests of one sliced request: each segment's started at most once, read one segment ahead. */
class Segments<Ctx> {
  private readonly started = new Map<number, Promise<Tx<Ctx>>>();
  constructor(
    private readonly tx: Tx<Ctx>,
    readonly size: number,
    private readonly subrequest: Subrequest<Ctx>,
  ) {}

  start(i: number): Promise<Tx<Ctx>> {
    let p = this.started.get(i);
    if (p === undefined) {
      p = this.subrequest(this.tx, i, this.size);
      p.catch(() => undefined);
      this.started.set(i, p);
    }
    return p;
  }

  /** Segment `i` with its headers decided. */
  async get(i: number): Promise<Tx<Ctx>> {
    const sub = await this.start(i);
    const obj = sub.obj as CacheObject;
    if (obj.state === 'busy') await obj.waitState('stream', this.tx.signal);
    return sub;
  }

  /** A segment subrequest's log ends with its parent (or when a read-ahead one resolves after it). */
  endLogs(): void {
    for (const p of this.started.values()) {
      void p.then(
        (sub) => {
          sub.log?.timestamp('Resp');
          sub.log?.end();
        },
        () => undefined,
      );
    }
  }
}

/** How many later segments a response's Cache-Status looks at (a hit needs them all cached). */
const RESTCACHED_MAX = 64;

/** Whether a segment key is fresh in the store; a key an async cacheKey hook has not given yet counts as not. */
function isFresh<Ctx>(env: ProxyEnv<Ctx>, key: string | Promise<string>, headers: Tx<Ctx>['req']['headers']): boolean {
  return typeof key === 'string' && env.store.hasFresh(key, headers, env.now());
}

/** The slice step. */
export async function slice<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, subrequest: Subrequest<Ctx>): Promise<Step> {
  const size = sliceSizeOf(env, tx) as number;
  env.sliced = true;
  env.stats.slice_req++;
  tx.key = await env.keyOf(tx.req, tx.ctx);
  const segs = new Segments(tx, size, subrequest);
  try {
    const metaKey = metaKeyOf(tx.key, size);
    let meta = cachedMeta(env, metaKey, tx);
    const metaCached = meta !== undefined;
    if (meta === undefined) {
      const first = await segs.get(0);
      const obj = first.obj as CacheObject;
      const total = obj.status === 206 ? parseContentRange(getHeader(obj.headers, 'content-range'))?.total : undefined;
      if (total !== undefined && !sliceable(total, size)) {
        env.log({ level: 'error', event: 'slice-refused', message: `${total} bytes in ${size}-byte segments is over ${MAX_SEGMENTS} segments`, url: tx.req.url });
        tx.synth = { status: 502, body: 'Object too large for its slice size\n' };
        return 'synth';
      }
      if (total === undefined || obj.state === 'failed') {
        // Not sliceable (failed, an error status, Range ignored, or unknown length): that response is the answer.
        tx.obj = obj;
        tx.status = { ...first.status };
        tx.outcome = first.outcome;
        return obj.failedWithoutResponse ? fetchFailedSynth(tx, obj) : 'deliver';
      }
      meta = storeMeta(env, metaKey, obj, total, tx);
    }
    return await deliverSliced(env, tx, segs, meta, metaCached);
  } finally {
    segs.endLogs();
  }
}

/** The head a sliced request gets, from the meta object: the one head builder, with the whole length known. */
function slicedHead<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, meta: CacheObject, total: number): PlannedHead {
  const plan = planDelivery(
    tx.req.method,
    tx.req.headers,
    { status: 200, headers: meta.headers, length: total, complete: true, expectedLength: total },
    { maxRanges: env.maxRanges, boundary: newBoundary },
  );
  if (plan.kind === 'wait') throw new ProxyError('CORE_ERR_INTERNAL', 'a complete length cannot wait', { source: 'internal' });
  const head = plannedHead(plan, () => deliveryHeaders(meta, env.via), () => ({ ...notModifiedHeaders(meta.headers), via: env.via }));
  if (head.override === undefined) {
    head.override = { status: 200, headers: deliveryHeaders(meta, env.via), length: String(total) };
    head.ranges = total > 0 ? [{ start: 0, end: total - 1 }] : [];
  }
  if (tx.req.method === 'HEAD') head.ranges = [];
  return head;
}

async function deliverSliced<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, segs: Segments<Ctx>, meta: CacheObject, metaCached: boolean): Promise<Step> {
  const size = segs.size;
  const total = Number(getHeader(meta.headers, 'content-length'));
  const head = slicedHead(env, tx, meta, total);
  // The first segment needed is in hand (and checked) before the head goes out, so a changed object can still
  // be started over and a failed fetch still gets a 503.
  const needed = segmentsFor(head.ranges, size);
  if (needed.length > 0) {
    const sub = await segs.get(needed[0] as number);
    const obj = sub.obj as CacheObject;
    if (obj.failedWithoutResponse) return fetchFailedSynth(tx, obj);
    const why = segmentMismatch(obj.status, obj.headers, needed[0] as number, size, total, meta.headers);
    if (why !== undefined) return sliceMismatch(env, tx, obj, why);
    // A hit only when everything the response needs came from the cache: the meta object, the first segment, and
    // (checked without looking them up) every later segment.
    const subHit = sub.lookup === 'hit' || sub.lookup === 'grace';
    // Looked at without lookups, and only so far: past RESTCACHED_MAX the response counts as a miss.
    const restCached = needed.length <= RESTCACHED_MAX + 1 && needed.slice(1).every((i) => isFresh(env, env.keyOf({ ...tx.req, segment: { index: i, size } }, tx.ctx), tx.req.headers));
    const hit = metaCached && subHit && restCached;
    tx.status = hit ? { hit: true, detail: 'slice' } : { fwd: sub.status.fwd ?? 'miss', detail: 'slice' };
    tx.outcome = hit ? 'hit' : 'miss';
  } else {
    tx.status = metaCached ? { hit: true, detail: 'slice' } : { fwd: 'miss', detail: 'slice' };
    tx.outcome = metaCached ? 'hit' : 'miss';
  }
  const written = writeHead(env, tx, meta, head.override);
  const instead = written instanceof Promise ? await written : written;
  if (instead !== undefined) return instead;
  const res = tx.res;
  if (head.ranges.length === 0) {
    res.end();
    return 'done';
  }
  res.flushHeaders();
  try {
    // The segment after each needed one, for the read-ahead (one pass, not a search per segment).
    const next = new Map<number, number>();
    for (let k = 0; k + 1 < needed.length; k++) next.set(needed[k] as number, needed[k + 1] as number);
    await sendBody(env, tx, head.ranges, head.tail, (from, to) => stitched(tx, segs, next, total, meta, from, to));
  } catch (e: unknown) {
    // Mid-body: the client must be able to tell the body is incomplete; a changed object loses its meta.
    if (!tx.signal.aborted) env.log({ level: 'warn', event: 'slice-cut', message: errorMessage(e), url: tx.req.url });
    if (e instanceof SegmentMismatchError) env.store.purgePrefix(sliceKeyPrefix(tx.key));
    res.destroy();
  }
  return 'done';
}

/** The bytes [from, to] of the representation, from the segments that hold them. */
async function* stitched<Ctx>(
  tx: Tx<Ctx>,
  segs: Segments<Ctx>,
  next: ReadonlyMap<number, number>,
  total: number,
  meta: CacheObject,
  from: number,
  to: number,
): AsyncGenerator<Buffer, void, undefined> {
  const size = segs.size;
  const ranges: BodyRange[] = [{ start: from, end: to }];
  for (const i of segmentsFor(ranges, size)) {
    // Read-ahead: the next segment's lookup (and fetch, when it is a miss) runs while this one is sent.
    const after = next.get(i);
    if (after !== undefined) void segs.start(after);
    const sub = await segs.get(i);
    const obj = sub.obj as CacheObject;
    if (obj.failedWithoutResponse) throw new ProxyError('CORE_ERR_SEGMENT_FAILED', `segment ${i}: fetch failed`, { source: 'upstream' });
    const why = segmentMismatch(obj.status, obj.headers, i, size, total, meta.headers);
    if (why !== undefined) throw new SegmentMismatchError(why);
    const reader = obj.openReader();
    const cursor = new BodyCursor(obj.read(reader, tx.signal));
    try {
      yield* cursor.range(Math.max(from, i * size) - i * size, Math.min(to, (i + 1) * size - 1) - i * size);
    } finally {
      await cursor.close();
      obj.closeReader(reader);
    }
    if (obj.state === 'failed') throw new ProxyError('CORE_ERR_SEGMENT_FAILED', `segment ${i}: body failed`, { source: 'upstream' });
  }
}

/** A complete, fresh meta object for `metaKey`, or undefined. */
function cachedMeta<Ctx>(env: ProxyEnv<Ctx>, metaKey: string, tx: Tx<Ctx>): CacheObject | undefined {
  const r = env.store.lookup(metaKey, tx.req.headers, env.now());
  if (r.kind === 'hit' && r.obj.state === 'finished') return r.obj;
  if (r.kind === 'miss' || r.kind === 'hit-for-miss') env.store.releaseBusy(r.obj);
  else if (r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
  return undefined;
}

/** The meta object made from segment 0: the whole representation's headers, its length, segment 0's lifetime. */
function storeMeta<Ctx>(env: ProxyEnv<Ctx>, metaKey: string, seg: CacheObject, total: number, tx: Tx<Ctx>): CacheObject {
  const r = env.store.lookup(metaKey, tx.req.headers, env.now());
  const mine = r.kind === 'miss';
  const meta = mine ? r.obj : new CacheObject(metaKey);
  if (!mine && r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
  meta.status = 200;
  meta.headers = metaHeaders(seg.headers, total);
  meta.bodyless = true;
  meta.expectedLength = 0;
  meta.copyLifetime(seg);
  if (mine) {
    if (seg.stored === true) env.store.insert(meta);
    else env.store.releaseBusy(meta);
  }
  meta.setState('stream');
  meta.finish();
  return meta;
}

/** The object changed at the origin: its meta object and every segment are dropped, then it is sliced anew once. */
function sliceMismatch<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, seg: CacheObject, why: string): Step {
  env.log({ level: 'warn', event: 'slice-mismatch', message: why, url: tx.req.url });
  env.store.purgePrefix(sliceKeyPrefix(tx.key));
  env.store.remove(seg);
  if (!tx.sliceRetried) {
    tx.sliceRetried = true;
    return 'slice';
  }
  tx.synth = { status: 503, body: 'Segments of this object do not match\n' };
  return 'synth';
}
