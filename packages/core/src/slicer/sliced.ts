import { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { fetchFailedSynth } from '../deliver/head.js';
import { getHeader } from '../http/headers.js';
import { parseRange } from '../http/range.js';
import { MAX_SEGMENTS, metaHeaders, metaKeyOf, parseContentRange, sliceable, sliceKeyPrefix, takeMetaLifetime } from './slicer.js';
import { runsAllowed } from './run.js';
import { deliverSliced, readAheadOf, Segments, type Subrequest } from './stitch.js';
import { adoptLead } from './lead.js';

export type { Subrequest } from './stitch.js';

/**
 * The slice step, in its two forms.
 *
 * Decided from the response (`--slice SIZE --slice-min BYTES`, or `slicer.enable` in an upstream hook): the fetch
 * made the object a meta object (headers and length, no body: fetch-slice.ts) stored under the object's own key, and
 * delivery turns here. Its segments are fetched as subrequests under keys of the meta's generation, take its
 * lifetime, and are removed with it.
 *
 * Decided when the request arrives (`sliceSize` hook, or the proxy's `slice` without `minBytes`: nginx's model): the
 * segment holding the first byte asked for is fetched at once, and the meta object made from its Content-Range.
 *
 * A segment that does not fit (the object changed at the origin) drops the meta object: before the response head
 * the request starts over once, after it the client is cut off. The request machine hands in `subrequest`: this room
 * never imports the machine.
 */

/** Segment size for this request when its object is to be sliced as it arrives, else undefined. */
export function sliceSizeOf<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): number | undefined {
  const req = tx.req;
  if (req.segment !== undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return undefined;
  const fromHook = env.hooks.sliceSize?.(req, tx.ctx);
  if (fromHook !== undefined) return fromHook > 0 ? fromHook : undefined;
  const s = env.slicing;
  if (s === undefined || s.minBytes !== undefined || (s.match !== undefined && !s.match.test(req.url))) return undefined;
  return s.sizeBytes;
}

/** The delivery step, or the slice step when the object is a sliced one's meta object (known once its headers are). */
export function deliverOrSlice<Ctx>(tx: Tx<Ctx>, deliver: () => Step | Promise<Step>): Step | Promise<Step> {
  const obj = tx.obj;
  if (obj === undefined || tx.req.segment !== undefined) return deliver();
  if (obj.state !== 'busy') return obj.slice !== undefined ? 'slice' : deliver();
  return obj.waitState('stream', tx.abortWatch).then(() => (obj.slice !== undefined ? 'slice' : deliver()));
}

/** The slice step. */
export async function slice<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, subrequest: Subrequest<Ctx>): Promise<Step> {
  env.sliced = true;
  env.stats.slice_req++;
  const meta = tx.obj;
  if (meta?.slice !== undefined) return sliceFromMeta(env, tx, meta, subrequest);
  return sliceOnArrival(env, tx, subrequest);
}

/** The meta object is in hand (a hit, or this request's own fetch): segments of its generation. */
async function sliceFromMeta<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, meta: CacheObject, subrequest: Subrequest<Ctx>): Promise<Step> {
  const s = meta.slice as NonNullable<CacheObject['slice']>;
  const segs = new Segments(tx, s.size, subrequest, readAheadOf(env), s.gen);
  segs.onSegment = (sub) => bindSegment(env, meta, sub);
  if (runsAllowed(env, meta)) segs.runs = { env, meta };
  segs.lead = adoptLead(meta);
  const metaCached = tx.lookup === 'hit' || tx.lookup === 'grace';
  try {
    return await deliverSliced(env, tx, segs, meta, s.total, metaCached, (t, seg, why) => {
      env.log({ level: 'warn', event: 'slice-mismatch', message: why, url: t.req.url });
      env.store.remove(seg);
      env.store.remove(meta);
      if (t.sliceRetried) {
        t.synth = { status: 503, body: 'Segments of this object do not match\n' };
        return 'synth';
      }
      t.sliceRetried = true;
      t.obj = undefined;
      return 'lookup';
    });
  } finally {
    segs.lead?.release();
    segs.endLogs();
  }
}

/**
 * One lifetime: a segment fetched for a meta object takes the meta's times, TTL, grace and keep, and is removed with
 * it (purge, ban, tag invalidation, eviction, expiry).
 */
function bindSegment<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, sub: Tx<Ctx>): void {
  const seg = sub.obj as CacheObject;
  if (seg.stored !== true || meta.slice === undefined) return;
  if (sub.lookup !== 'hit' && sub.lookup !== 'grace') {
    takeMetaLifetime(seg, meta);
  }
  meta.slice.segments.add(seg.key);
  // The meta object went away meanwhile (purged while this segment was fetched): the segment goes too.
  if (meta.stored !== true) env.store.remove(seg);
}

/** nginx's model: the segment holding the first byte asked for comes first, and the meta object from it. */
async function sliceOnArrival<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, subrequest: Subrequest<Ctx>): Promise<Step> {
  const size = sliceSizeOf(env, tx) as number;
  tx.key = await env.keyOf(tx.req, tx.ctx);
  const segs = new Segments(tx, size, subrequest, readAheadOf(env), undefined);
  try {
    const metaKey = metaKeyOf(tx.key, size);
    let meta = cachedMeta(env, metaKey, tx);
    const metaCached = meta !== undefined;
    if (meta === undefined) {
      const made = await metaFromFirstSegment(env, tx, segs, metaKey);
      if (typeof made === 'string') return made;
      meta = made;
    }
    const total = Number(getHeader(meta.headers, 'content-length'));
    return await deliverSliced(env, tx, segs, meta, total, metaCached, (t, seg, why) => sliceMismatch(env, t, seg, why));
  } finally {
    segs.endLogs();
  }
}

/** The segment a request's first byte is in, when the Range says so without the length (bytes=N- or N-M), else 0. */
export function firstSegmentOf(range: string | undefined, size: number): number {
  const r = parseRange(range);
  if (r.kind !== 'ranges' || r.specs.length !== 1) return 0;
  const spec = r.specs[0];
  return spec !== undefined && 'first' in spec ? Math.floor(spec.first / size) : 0;
}

/** Fetches the first segment needed (segment 0 when that is past the end) and makes the meta object from it. */
async function metaFromFirstSegment<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, segs: Segments<Ctx>, metaKey: string): Promise<CacheObject | Step> {
  const size = segs.size;
  const firstIndex = tx.req.method === 'GET' ? firstSegmentOf(getHeader(tx.req.headers, 'range'), size) : 0;
  let first = await segs.get(firstIndex);
  if (firstIndex > 0 && (first.obj as CacheObject).status === 416) first = await segs.get(0);
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
  return storeMeta(env, metaKey, obj, total, tx);
}

/** A complete, fresh meta object for `metaKey`, or undefined. */
function cachedMeta<Ctx>(env: ProxyEnv<Ctx>, metaKey: string, tx: Tx<Ctx>): CacheObject | undefined {
  const r = env.store.lookup(metaKey, tx.req.headers, env.now());
  if (r.kind === 'hit' && r.obj.state === 'finished') return r.obj;
  if (r.kind === 'miss' || r.kind === 'hit-for-miss') env.store.releaseBusy(r.obj);
  else if (r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
  return undefined;
}

/** The meta object made from a segment: the whole representation's headers, its length, the segment's lifetime. */
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
