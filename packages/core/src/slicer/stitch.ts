import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { sendBody, newBoundary } from '../deliver/deliver.js';
import { deliveryHeaders, fetchFailedSynth, writeHead } from '../deliver/head.js';
import { planDelivery, plannedHead, type BodyRange, type PlannedHead } from '../deliver/plan.js';
import { errorMessage, ProxyError } from '../errors.js';
import { notModifiedHeaders } from '../http/conditional.js';
import { BATCH_BYTES, ChunkBatch } from './batch.js';
import { startRun } from './run.js';
import type { Lead } from './lead.js';
import { SegmentMismatchError, segmentMismatch, segmentsFor, sliceKeyPrefix } from './slicer.js';

/**
 * Delivery of a sliced representation: the head from the meta object, then the bytes each range needs from the
 * segments that hold them, each segment a subrequest, with a bounded read-ahead of the segments the response needs
 * next (never one it does not need).
 */

/**
 * A segment subrequest: its own walk through recv, lookup and miss, handed in by the machine. Synchronous when every
 * step was (a cached segment), else a promise.
 */
export type Subrequest<Ctx> = (parent: Tx<Ctx>, index: number, size: number, gen: number | undefined) => Tx<Ctx> | Promise<Tx<Ctx>>;

/** Most segments read ahead of the one being sent. */
export const MAX_READ_AHEAD = 16;

/**
 * Segments read ahead by default: enough overlapping origin requests that a cold whole-object read keeps pace with an
 * unsliced miss (bench/slice.mjs; one ahead was ~1.1x slower, four ~1.0x), at most 4 MiB more held for 1 MiB segments.
 */
export const DEFAULT_READ_AHEAD = 4;

/** The read-ahead in `env`: the slicer's setting, bounded. */
export function readAheadOf<Ctx>(env: ProxyEnv<Ctx>): number {
  return Math.max(0, Math.min(MAX_READ_AHEAD, env.slicing?.readAhead ?? DEFAULT_READ_AHEAD));
}

/** The subrequests of one sliced request: each segment's started at most once. */
export class Segments<Ctx> {
  private readonly started = new Map<number, Promise<Tx<Ctx>>>();
  /** Segments whose subrequest has resolved (headers decided), for synchronous looks. */
  private readonly done = new Map<number, Tx<Ctx>>();
  /** Called once per segment with its headers decided (the meta-object path binds segments to the meta here). */
  onSegment: ((sub: Tx<Ctx>) => void) | undefined;
  /** Set when the read-ahead may fetch missing segments of this meta object as runs (run.ts). */
  runs: { env: ProxyEnv<Ctx>; meta: CacheObject } | undefined;
  /** The meta's own 200 body, cut into segments as this response reads on (lead.ts), when it adopted it. */
  lead: Lead | undefined;
  constructor(
    private readonly tx: Tx<Ctx>,
    readonly size: number,
    private readonly subrequest: Subrequest<Ctx>,
    readonly readAhead: number,
    readonly gen: number | undefined,
  ) {}

  start(i: number): Promise<Tx<Ctx>> {
    let p = this.started.get(i);
    if (p === undefined) {
      p = this.begin(i);
      p.catch(() => undefined);
      this.started.set(i, p);
    }
    return p;
  }

  /** Segment `i`'s subrequest; one that ends synchronously with its headers decided (a hit) is settled at once. */
  private begin(i: number): Promise<Tx<Ctx>> {
    let sub: Tx<Ctx> | Promise<Tx<Ctx>>;
    try {
      sub = this.subrequest(this.tx, i, this.size, this.gen);
    } catch (e: unknown) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    if (!(sub instanceof Promise) && (sub.obj as CacheObject).state !== 'busy') return Promise.resolve(this.settle(i, sub));
    return Promise.resolve(sub).then(async (t) => {
      const obj = t.obj as CacheObject;
      if (obj.state === 'busy') await obj.waitState('stream', this.tx.signal);
      return this.settle(i, t);
    });
  }

  private settle(i: number, sub: Tx<Ctx>): Tx<Ctx> {
    this.onSegment?.(sub);
    this.done.set(i, sub);
    return sub;
  }

  /**
   * The read-ahead from position `at` of `needed` (the segments the response needs, ascending): the next readAhead of
   * them are started. With runs, the ones not started yet are started together once there are at least
   * max(2, readAhead - 1) of them (fewer at the end of the response), the missing ones among them first claimed by
   * one run (one origin request): runs of readAhead - 1 segments, the next one sent while the last of the previous
   * is still ahead of the reader. Never past readAhead segments ahead.
   */
  readAheadFrom(needed: readonly number[], at: number): void {
    const last = Math.min(needed.length - 1, at + this.readAhead);
    const here = needed[at];
    if (here !== undefined) this.lead?.reading(here);
    if (this.runs === undefined) {
      for (let k = at + 1; k <= last; k++) void this.start(needed[k] as number);
      return;
    }
    const todo: number[] = [];
    for (let k = at + 1; k <= last; k++) if (!this.started.has(needed[k] as number)) todo.push(needed[k] as number);
    // The first run still coming in takes the next segments first (no origin request); a run (below) takes the
    // rest, its lookups skipping the ones the first run holds.
    this.lead?.claim(todo);
    if (todo.length === 0 || todo.length < Math.min(Math.max(2, this.readAhead - 1), last - at)) return;
    startRun(this.runs.env, this.tx, this.runs.meta, todo);
    for (const i of todo) void this.start(i);
  }

  /** Segment `i`'s subrequest when it has resolved (headers decided), else undefined. */
  settled(i: number): Tx<Ctx> | undefined {
    return this.done.get(i);
  }

  /** Segment `i` with its headers decided. */
  get(i: number): Promise<Tx<Ctx>> {
    return this.start(i);
  }

  /** A segment subrequest's log ends with its parent (or when a read-ahead one resolves after it). */
  endLogs(): void {
    for (const [i, p] of this.started) {
      const settled = this.done.get(i);
      if (settled !== undefined) {
        settled.log?.timestamp('Resp');
        settled.log?.end();
        continue;
      }
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

/** What happens when the first segment does not fit the meta object (before the head: the caller's retry). */
export type OnMismatch<Ctx> = (tx: Tx<Ctx>, seg: CacheObject, why: string) => Step;

/** Whether a segment key is fresh in the store; a key an async cacheKey hook has not given yet counts as not. */
function isFresh<Ctx>(env: ProxyEnv<Ctx>, key: string | Promise<string>, headers: Tx<Ctx>['req']['headers']): boolean {
  return typeof key === 'string' && env.store.hasFresh(key, headers, env.now());
}

/** Sends a sliced response; `total` is the representation's length, `metaCached` whether the meta was a hit. */
export async function deliverSliced<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, segs: Segments<Ctx>, meta: CacheObject, total: number, metaCached: boolean, onMismatch: OnMismatch<Ctx>): Promise<Step> {
  const size = segs.size;
  const head = slicedHead(env, tx, meta, total);
  // The first segment needed is in hand (and checked) before the head goes out, so a changed object can still
  // be started over and a failed fetch still gets a 503.
  const needed = segmentsFor(head.ranges, size);
  if (needed.length > 0) {
    const sub = await segs.get(needed[0] as number);
    const obj = sub.obj as CacheObject;
    if (obj.failedWithoutResponse) return fetchFailedSynth(tx, obj);
    const why = segmentMismatch(obj.status, obj.headers, needed[0] as number, size, total, meta.headers);
    if (why !== undefined) return onMismatch(tx, obj, why);
    // A hit only when everything the response needs came from the cache: the meta object, the first segment, and
    // (checked without looking them up, and only so far: past RESTCACHED_MAX it counts as a miss) every later one.
    const subHit = sub.lookup === 'hit' || sub.lookup === 'grace';
    const restCached =
      needed.length <= RESTCACHED_MAX + 1 &&
      needed.slice(1).every((i) => isFresh(env, env.keyOf({ ...tx.req, segment: { index: i, size, gen: segs.gen } }, tx.ctx), tx.req.headers));
    const hit = metaCached && subHit && restCached;
    tx.status = hit ? { hit: true, detail: 'slice' } : { fwd: sub.status.fwd ?? 'miss', detail: 'slice' };
    tx.outcome = hit ? 'hit' : 'miss';
  } else {
    tx.status = metaCached ? { hit: true, detail: 'slice' } : { fwd: 'miss', detail: 'slice' };
    tx.outcome = metaCached ? 'hit' : 'miss';
  }
  const written = writeHead(env, tx, meta, head.override);
  // The deliver hook may restart or synth instead.
  const instead = written instanceof Promise ? await written : written;
  if (instead !== undefined) return instead;
  const res = tx.res;
  if (head.ranges.length === 0) {
    res.end();
    return 'done';
  }
  // The head goes at once when the first bytes the body needs are not here yet (the client sees the head while the
  // segment arrives); when they are (a cached segment, or the probe's 206 already read past them: a cold range), the
  // head leaves with them in one write (response.ts write corks them), one syscall and one wake-up of the client fewer.
  if (!firstBytesHere(segs, head.ranges[0] as BodyRange)) res.flushHeaders();
  try {
    // Each needed segment's place in the list, for the read-ahead (one pass, not a search per segment).
    const pos = new Map<number, number>();
    needed.forEach((i, k) => pos.set(i, k));
    await sendBody(env, tx, head.ranges, head.tail, (from, to) => stitched(tx, segs, needed, pos, total, meta, from, to));
  } catch (e: unknown) {
    // Mid-body: the client must be able to tell the body is incomplete; a changed object loses its meta.
    if (!tx.signal.aborted) env.log({ level: 'warn', event: 'slice-cut', message: errorMessage(e), url: tx.req.url });
    if (e instanceof SegmentMismatchError) {
      env.store.purgePrefix(sliceKeyPrefix(tx.key));
      if (meta.slice !== undefined) env.store.remove(meta);
    }
    res.destroy();
  }
  return 'done';
}

/**
 * Whether the segment holding the first byte of `first` (a range of the response; multipart part heads are written
 * before it, so only a single range counts) is started and already holds that byte. Synchronous: no lookup, no wait.
 */
function firstBytesHere<Ctx>(segs: Segments<Ctx>, first: BodyRange): boolean {
  if (first.head !== undefined) return false;
  const obj = segs.settled(Math.floor(first.start / segs.size))?.obj;
  if (obj === undefined || (obj.state !== 'stream' && obj.state !== 'finished')) return false;
  return obj.readable && obj.length > first.start % segs.size;
}

/** The bytes [from, to] of the representation, from the segments that hold them. */
async function* stitched<Ctx>(
  tx: Tx<Ctx>,
  segs: Segments<Ctx>,
  needed: readonly number[],
  pos: ReadonlyMap<number, number>,
  total: number,
  meta: CacheObject,
  from: number,
  to: number,
): AsyncGenerator<Buffer | readonly Buffer[], void, undefined> {
  const size = segs.size;
  const ranges: BodyRange[] = [{ start: from, end: to }];
  // Cached segments' chunks, written together (batch.ts) up to BATCH_BYTES or a segment still being fetched.
  const batch = new ChunkBatch(BATCH_BYTES);
  const first = Math.floor(from / size);
  for (const i of segmentsFor(ranges, size)) {
    // Read-ahead: the next segments this response needs (at most readAhead of them) are looked up, and fetched when
    // they miss, while this one is sent.
    segs.readAheadFrom(needed, pos.get(i) ?? needed.length);
    // Settled already (a cached segment, or one the read-ahead started earlier): no await, no microtask hop.
    const sub = segs.settled(i) ?? (await segs.get(i));
    const obj = sub.obj as CacheObject;
    if (obj.failedWithoutResponse) throw new ProxyError('CORE_ERR_SEGMENT_FAILED', `segment ${i}: fetch failed`, { source: 'upstream' });
    const why = segmentMismatch(obj.status, obj.headers, i, size, total, meta.headers);
    if (why !== undefined) throw new SegmentMismatchError(why);
    const lo = Math.max(from, i * size) - i * size;
    const hi = Math.min(to, (i + 1) * size - 1) - i * size;
    const complete = obj.completeChunks;
    if (complete !== undefined) {
      // A cached segment: its chunks as they are, no reader, into the batch (the warm path). The first one goes at
      // once: the client's first byte does not wait for a batch to fill.
      const full = batch.add(chunkSlices(complete, lo, hi));
      const out = full ?? (i === first ? batch.take() : undefined);
      if (out !== undefined) yield out;
      continue;
    }
    const before = batch.take();
    if (before !== undefined) yield before;
    yield* arriving(tx.signal, obj, i, lo, hi);
  }
  const rest = batch.take();
  if (rest !== undefined) yield rest;
}

/**
 * Bytes [lo, hi] of a segment still arriving: every chunk already there taken at once and yielded as one batch (one
 * writev, one drain check), then a wait for the next; one abort listener for the whole read. Where an async generator
 * per chunk (the object's reader under a BodyCursor) cost a write, two generator hops and a drain check per chunk: a
 * cold sliced read's segments arrive while they are sent (bench/slice-callgrind.mjs).
 */
async function* arriving(signal: AbortSignal, obj: CacheObject, i: number, lo: number, hi: number): AsyncGenerator<readonly Buffer[], void, undefined> {
  const reader = obj.openReader();
  let wake: (() => void) | undefined;
  const onAbort = (): void => wake?.();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    // Body offset of the reader (the start of the next chunk).
    let at = 0;
    for (;;) {
      signal.throwIfAborted();
      let out: Buffer[] | undefined;
      let c: Buffer | undefined;
      while (at <= hi && (c = obj.nextChunk(reader)) !== undefined) {
        const end = at + c.length;
        if (end > lo) (out ??= []).push(lo <= at && end <= hi + 1 ? c : c.subarray(Math.max(0, lo - at), Math.min(c.length, hi + 1 - at)));
        at = end;
      }
      if (out !== undefined) {
        yield out;
        // More may have arrived (and the segment finished) while the batch was written: looked at before any wait.
        continue;
      }
      if (at > hi) return;
      if (obj.state === 'failed') throw new ProxyError('CORE_ERR_SEGMENT_FAILED', `segment ${i}: body failed`, { source: 'upstream', cause: obj.error });
      // Finished short of hi: the response's length check cuts the client off.
      if (obj.state === 'finished') return;
      await new Promise<void>((resolve) => {
        wake = resolve;
        obj.onNextChange(resolve);
      });
      wake = undefined;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    obj.closeReader(reader);
  }
}

/** The parts of `chunks` (one body, in order) covering body offsets [lo, hi], inclusive. */
export function* chunkSlices(chunks: readonly Buffer[], lo: number, hi: number): Generator<Buffer, void, undefined> {
  let at = 0;
  for (const c of chunks) {
    const end = at + c.length;
    // A chunk wholly inside is yielded as it is (a subarray is a new object per chunk).
    if (end > lo && at <= hi) yield lo <= at && end <= hi + 1 ? c : c.subarray(Math.max(0, lo - at), Math.min(c.length, hi + 1 - at));
    if (end > hi) return;
    at = end;
  }
}
