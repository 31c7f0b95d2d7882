import { finished, type Readable } from 'node:stream';
import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv, Tx } from '../context.js';
import { errorMessage, ProxyError } from '../errors.js';
import { missRequest } from '../fetch/bereq.js';
import { backendResponse, commitHeaders, decideBeresp, type BerespInput } from '../fetch/beresp.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import type { DownstreamRequest } from '../policy/hooks.js';
import { logBereq, logBeresp } from '../txlog/records.js';
import type { UpstreamResponse } from '../upstream.js';
import type { BackendResponse } from '../policy/hooks.js';
import { FetchSlicer } from './handle.js';
import { segmentRequestOf } from './segment-request.js';
import { parseContentRange, takeMetaLifetime } from './slicer.js';

/**
 * Run fetches (`slicing.runs`, `--slice-runs`; on unless `runs: false`): the read-ahead of a sliced response fetches a run of consecutive
 * segments that all miss with ONE origin Range request (`bytes=a-b` over the run), and its body is cut into the
 * segment objects as it arrives. Each segment is still its own cache object under its own key, with the meta
 * object's lifetime and bound to it, and still its own subrequest (recv, lookup: it finds the run's object, busy
 * until the run's head is in, then streaming), so logs and stats still show one subrequest per segment. What goes:
 * an origin request, its head and a fetch task per segment.
 *
 * Only for a sliced object's meta object (the response decided it: `--slice --slice-min`), without a request hook or
 * upstream hooks (they shape each segment's request and response: its backend, its context and so its key, pass or
 * lookup; a run is no segment's request and runs none of them) and with a synchronous cache key.
 * A run is at most the read-ahead long (stitch.ts), so a client leaving leaves at most that much to fetch, as one
 * segment fetch per read-ahead segment does.
 *
 * Anything unexpected in the run's answer (not a 206, another Content-Range or length, another validator than the
 * meta's: the object changed) and the run is dropped before any segment is stored: each of its segments' waiting
 * subrequests looks up again, misses, and fetches its segment alone, with the checks that path makes. A body that
 * breaks off fails the segment being cut and every later one (removed: never a truncated segment in cache); the
 * segments already complete stay.
 */

/**
 * Meta objects whose runs are not tried again, each segment fetched alone: their segments' 206s the builtin rules
 * refuse to store (no-store, private, Set-Cookie...: a segment fetched alone is not kept either), or a run's answer did
 * not fit its segments (a 200 for the whole object, another Content-Range: an origin that caps or ignores a Range over
 * several segments, now that runs are the default, wastes one origin request per object, not one per run).
 */
const unstorable = new WeakSet<CacheObject>();

/**
 * A run's answer that cannot be cut into its segments (runMismatch): thrown before anything is committed; no more runs
 * for that meta object then, its segments are fetched alone (and check what they get).
 */
class RunMismatch extends ProxyError {
  constructor(message: string) {
    super('CORE_ERR_SEGMENT_MISMATCH', message, { source: 'upstream' });
  }
}

/** No more runs for this meta object: its segments are fetched alone from now on. */
export function noMoreRuns(meta: CacheObject): void {
  unstorable.add(meta);
}

/** Whether a sliced response in `env` may use runs. */
export function runsAllowed<Ctx>(env: ProxyEnv<Ctx>, meta?: CacheObject): boolean {
  if (meta !== undefined && unstorable.has(meta)) return false;
  const h = env.hooks;
  // vcl_recv too: each segment subrequest runs it (it may pick the backend, fill the context the cache key reads, or
  // pass the segment), the run would not (s6 attack: a run sent to the director's backend served its bytes).
  return env.slicing !== undefined && env.slicing.runs !== false && h.requestFilter === undefined && h.upstreamRequestFilter === undefined && h.upstreamResponseFilter === undefined;
}

/** One segment of a run: its (busy, then streaming) object, its request, its length, and how far it is filled. */
export interface Slot {
  index: number;
  obj: CacheObject;
  req: DownstreamRequest;
  length: number;
  got: number;
  /** Headers committed and the object inserted (then a failure removes it; before, it is released). */
  committed: boolean;
  /** Not kept (the store refused it): its bytes are skipped. */
  dropped: boolean;
  done: boolean;
}

/**
 * Claims, in order, the consecutive segments of `indexes` (ascending) that miss in the store, from the first that
 * misses to the next that does not (cached, being fetched, a gap), and fetches them with one origin request when there are at least two.
 * Returns how many were claimed (0: none, a lone miss is left to its own subrequest). Synchronous up to the request:
 * the segments' subrequests started right after find the run's busy objects and wait on them.
 */
export function startRun<Ctx>(env: ProxyEnv<Ctx>, parent: Tx<Ctx>, meta: CacheObject, indexes: readonly number[]): number {
  const s = meta.slice;
  if (s === undefined || meta.stored !== true || unstorable.has(meta)) return 0;
  const slots: Slot[] = [];
  for (const i of indexes) {
    const prev = slots[slots.length - 1];
    if (prev !== undefined && i !== prev.index + 1) break;
    const sl = claimSlot(env, parent.req, s, i);
    if (sl === undefined) break;
    // Cached or being fetched: skipped before the run's first segment, the end of the run after it.
    if (sl === 'taken') {
      if (prev === undefined) continue;
      break;
    }
    slots.push(sl);
  }
  if (slots.length < 2) {
    for (const sl of slots) env.store.releaseBusy(sl.obj);
    return 0;
  }
  void runFetch(env, parent, meta, slots);
  return slots.length;
}

/**
 * Segment `i` claimed for a run: its busy object (a miss in the store), 'taken' when it is cached or being fetched,
 * undefined when it cannot be (past the end, an async cache key).
 */
export function claimSlot<Ctx>(env: ProxyEnv<Ctx>, parent: DownstreamRequest, s: NonNullable<CacheObject['slice']>, i: number): Slot | 'taken' | undefined {
  if (i * s.size >= s.total) return undefined;
  const req = segmentRequestOf(parent, i, s.size, s.gen);
  const key = env.keyOf(req, env.newCtx());
  if (typeof key !== 'string') return undefined;
  const r = env.store.lookup(key, req.headers, env.now());
  if (r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
  if (r.kind !== 'miss') return 'taken';
  return { index: i, obj: r.obj, req, length: Math.min(s.size, s.total - i * s.size), got: 0, committed: false, dropped: false, done: false };
}

/**
 * A run's segments not complete when it failed: never a truncated segment in cache, each removed (stored) or released
 * (still busy), then failed, which wakes its waiters (a busy one's look up again and fetch it alone).
 */
export function failSlots<Ctx>(env: ProxyEnv<Ctx>, slots: readonly Slot[], err: Error): void {
  for (const sl of slots) {
    if (sl.done) continue;
    if (sl.committed) env.store.remove(sl.obj);
    else env.store.releaseBusy(sl.obj);
    sl.obj.fail(err);
  }
}

/** The run: one request, its head checked, each segment committed, the body cut. Never throws. */
async function runFetch<Ctx>(env: ProxyEnv<Ctx>, parent: Tx<Ctx>, meta: CacheObject, slots: Slot[]): Promise<void> {
  const s = meta.slice as NonNullable<CacheObject['slice']>;
  const first = slots[0] as Slot;
  const last = slots[slots.length - 1] as Slot;
  const start = first.index * s.size;
  const end = last.index * s.size + last.length - 1;
  const bereq = missRequest({ req: first.req, key: first.obj.key, pin: parent.pin }, env.via, false, env.rules);
  bereq.headers['range'] = `bytes=${start}-${end}`;
  // Any segment's fetch aborted (shutdown, or the store gave it up) stops the run.
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(new ProxyError('CORE_ERR_NO_READER', 'slicer run aborted', { source: 'downstream' }));
  for (const sl of slots) {
    sl.obj.fetchController.signal.addEventListener('abort', onAbort, { once: true });
    env.inflight.add(sl.obj);
  }
  env.stats.s_fetch++;
  const be = parent.log !== undefined && env.txlog !== undefined ? env.txlog.beginBereq(parent.log, 'fetch') : undefined;
  if (be !== undefined) {
    parent.log?.add('Link', `bereq ${be.vxid} fetch`);
    be.timestamp('Start');
    be.add('Debug', `slicer run: segments ${first.index}-${last.index}`);
    logBereq(be, bereq);
  }
  let res: UpstreamResponse | undefined;
  try {
    const sentAt = env.now();
    res = await env.upstream.request(bereq, { signal: controller.signal });
    const receivedAt = env.now();
    if (be !== undefined) logBeresp(be, res.status, res.headers);
    const why = runMismatch(res, start, end, s.total, meta.headers);
    if (why !== undefined) throw new RunMismatch(`slicer run bytes=${start}-${end}: ${why}`);
    commitRun(env, meta, slots, res, bereq, sentAt, receivedAt);
    await cut(env, res.body, slots, controller.signal);
    be?.timestamp('BerespBody');
  } catch (e: unknown) {
    res?.body.destroy();
    const err = e instanceof ProxyError ? e : new ProxyError('CORE_ERR_UPSTREAM_BODY', `slicer run: ${errorMessage(e)}`, { source: 'upstream', cause: e });
    be?.add('FetchError', err.message);
    if (err instanceof RunMismatch) unstorable.add(meta);
    // A refused run is no failure: its bytes were fine, the builtin rules would not keep them.
    if (!(err instanceof RunRefused)) {
      if (!controller.signal.aborted) env.log({ level: 'warn', event: 'slice-run-failed', message: err.message, url: parent.req.url });
      env.stats.fetch_failed++;
    }
    failSlots(env, slots, err);
  } finally {
    for (const sl of slots) {
      sl.obj.fetchController.signal.removeEventListener('abort', onAbort);
      env.inflight.delete(sl.obj);
    }
    be?.end();
  }
}

/** Why the run's answer cannot be cut into the meta object's segments (undefined: it can). */
function runMismatch(res: UpstreamResponse, start: number, end: number, total: number, meta: HeaderMap): string | undefined {
  if (res.status !== 206) return `status ${res.status}, not 206`;
  const raw = getHeader(res.headers, 'content-range');
  const cr = parseContentRange(raw);
  if (cr === undefined || cr.start !== start || cr.end !== end || cr.total !== total) return `Content-Range ${raw ?? 'missing'}, expected bytes ${start}-${end}/${total}`;
  const cl = getHeader(res.headers, 'content-length');
  if (cl !== undefined && cl !== String(end - start + 1)) return `Content-Length ${cl}, expected ${end - start + 1}`;
  const want = getHeader(meta, 'etag');
  const got = getHeader(res.headers, 'etag');
  if (want !== undefined && want !== got) return `ETag ${got ?? 'missing'}, expected ${want} (the object changed)`;
  const lmWant = getHeader(meta, 'last-modified');
  if (want === undefined && lmWant !== undefined && lmWant !== getHeader(res.headers, 'last-modified')) return `Last-Modified differs from ${lmWant}`;
  if (getHeader(res.headers, 'content-encoding') !== undefined) return 'encoded';
  return undefined;
}

/**
 * Each segment of the run decided as its own fetch would be (builtin rules on its head), all before any is committed,
 * then committed. Throws RunRefused (nothing committed) when the rules would not store them.
 */
export function commitRun<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, slots: Slot[], res: UpstreamResponse, bereq: BerespInput['bereq'], sentAt: number, receivedAt: number): void {
  // Decided once per run: the slots' heads differ only in Content-Range and Content-Length, which no rule reads.
  const once = decideSlot(env, meta, slots[0] as Slot, res, bereq, sentAt, receivedAt);
  const decided = slots.map((sl, k) => (k === 0 ? once : sameDecision(meta, sl, once)));
  const refused = decided.find((d) => d.beresp.uncacheable);
  if (refused !== undefined) {
    unstorable.add(meta);
    throw new RunRefused(`slicer run ${bereq.headers['range'] ?? ''}: segments not storable (${refused.beresp.uncacheableReason ?? 'policy'}); fetched alone`);
  }
  slots.forEach((sl, k) => commitSlot(env, meta, sl, decided[k] as Decided));
}

/** The run's answer is good but its segments are not to be stored: dropped, each segment fetched alone. */
class RunRefused extends ProxyError {
  constructor(message: string) {
    super('CORE_ERR_SEGMENT_MISMATCH', message, { source: 'upstream' });
  }
}

/** A segment of the run, decided. */
interface Decided {
  input: BerespInput;
  beresp: BackendResponse;
}

/**
 * A segment of the run decided as a segment fetched alone would be (probe.ts keepProbedSegment does the same for the
 * range probe's segment): its own 206 head (Content-Range and Content-Length its own, the run's other headers),
 * freshness from them, then the builtin rules (runs have no upstreamResponseFilter hook: runsAllowed), so a head the
 * rules would not store (no-store, private, Set-Cookie, a zero TTL without keep...) is not stored from a run either.
 */
export function decideSlot<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, sl: Slot, res: UpstreamResponse, bereq: BerespInput['bereq'], sentAt: number, receivedAt: number): Decided {
  const seg = sl.obj;
  const headers: HeaderMap = { ...res.headers, ...slotRangeHeaders(meta, sl) };
  seg.requestTimeMs = sentAt;
  seg.responseTimeMs = receivedAt;
  const input: BerespInput = { res: { ...res, status: 206, headers, body: res.body }, bereq, obj: seg, stale: undefined, isPass: false, req: sl.req };
  const beresp = backendResponse(env, input);
  const slicer = new FetchSlicer(true, false, false);
  slicer.phase = 'closed';
  // Synchronous: without the hook (runsAllowed) this is the builtin rules only; never 'retry'.
  void decideBeresp(env, input, beresp, env.newCtx(), slicer);
  return { input, beresp };
}

/** Another slot of the run with the first one's decision: its own head (Content-Range, Content-Length), object, request. */
function sameDecision(meta: CacheObject, sl: Slot, first: Decided): Decided {
  const own = slotRangeHeaders(meta, sl);
  const seg = sl.obj;
  const from = first.input.obj;
  seg.requestTimeMs = from.requestTimeMs;
  seg.responseTimeMs = from.responseTimeMs;
  seg.initialAgeSec = from.initialAgeSec;
  const res = first.input.res;
  const input: BerespInput = { ...first.input, res: { ...res, headers: { ...res.headers, ...own } }, obj: seg, req: sl.req };
  return { input, beresp: { ...first.beresp, headers: { ...first.beresp.headers, ...own }, segment: sl.req.segment } };
}

/** A slot's own Content-Range and Content-Length. */
function slotRangeHeaders(meta: CacheObject, sl: Slot): HeaderMap {
  const s = meta.slice as NonNullable<CacheObject['slice']>;
  const from = sl.index * s.size;
  return { 'content-range': `bytes ${from}-${from + sl.length - 1}/${s.total}`, 'content-length': String(sl.length) };
}

/**
 * A decided segment of the run becomes a cache object as a segment fetched alone would: its head committed, the
 * meta's lifetime (bindSegment), inserted under its key, bound to the meta, streaming.
 */
export function commitSlot<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, sl: Slot, d: Decided): void {
  const s = meta.slice as NonNullable<CacheObject['slice']>;
  const seg = sl.obj;
  commitHeaders(d.input, d.beresp, env.rules);
  takeMetaLifetime(seg, meta);
  if (!env.store.insert(seg)) {
    env.store.releaseBusy(seg);
    sl.dropped = true;
    seg.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', `segment ${sl.index} not kept`, { source: 'internal', status: 503 }));
    return;
  }
  sl.committed = true;
  s.segments.add(seg.key);
  // The meta object went away meanwhile (purged while the run was sent): the segment goes too, as bindSegment does.
  if (meta.stored !== true) env.store.remove(seg);
  seg.setState('stream');
}

/**
 * How a run that may grow (lead.ts) waits for slots: `more` is asked when the body has bytes past the last slot:
 * 'added' (a slot was added then and there: go on), true (wait, paused, for `wake`), false (stop: the rest is not
 * read). cut sets `wake` while it waits, to be called with false once slots were added, true to stop.
 */
export interface CutControl {
  more(): boolean | 'added';
  wake: ((stop: boolean) => void) | undefined;
}

/**
 * Cuts the run's body into its segments as it arrives: each segment gets exactly its bytes (a chunk across a boundary
 * is split without copying) and is finished at its last one. Chunks taken from 'data' events, synchronously, as the
 * fetch's pump does. Rejects when the body fails or ends short. With `control` (a run that may grow: lead.ts) the body
 * waits, paused, for more slots when it has bytes past the last one.
 */
export function cut<Ctx>(env: ProxyEnv<Ctx>, body: Readable, slots: Slot[], signal: AbortSignal, control?: CutControl): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let k = 0;
    let settled = false;
    // Bytes past the last slot, held while the body waits for more slots.
    let pending: Buffer | undefined;
    const settle = (e: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      signal.removeEventListener('abort', onAbort);
      if (control !== undefined) control.wake = undefined;
      if (e === undefined) resolve();
      else reject(e instanceof Error ? e : new Error(String(e)));
    };
    // Slots added (or none will be: stop): the held bytes first, then the body again.
    const wake = (stop: boolean): void => {
      if (settled || control === undefined || control.wake !== wake) return;
      control.wake = undefined;
      if (stop) return void stopAt(undefined);
      const held = pending as Buffer;
      pending = undefined;
      onData(held);
      if (!settled && control.wake === undefined) void (ended ? endAt() : body.resume());
    };
    // The body ended (a Readable ends once its last chunk is out, paused or not): complete unless bytes are held.
    let ended = false;
    const endAt = (): void => settle(k < slots.length ? new Error(`body ended after ${k} of ${slots.length} segments`) : undefined);
    const stopAt = (e: unknown): void => void (body.destroy(e as Error | undefined), settle(e));
    const onData = (data: Buffer): void => {
      if (settled) return;
      let rest: Buffer;
      let wait: boolean;
      try {
        [k, rest, wait] = fillGrowing(env, slots, k, data, control);
      } catch (e: unknown) {
        // A segment refused its bytes (it failed meanwhile): the run stops here.
        return void stopAt(e);
      }
      if (rest.length === 0) return;
      // Bytes past the run: more slots may come (control: wait for them), else (an origin sending more than its
      // Content-Range said, or nobody wants more) every segment is complete and the rest is not read.
      if (!wait) return void stopAt(undefined);
      pending = rest;
      (control as CutControl).wake = wake;
      body.pause();
    };
    const onAbort = (): void => stopAt(signal.reason ?? new Error('slicer run aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData);
    body.resume();
    finished(body, { writable: false }, (err) => {
      if (err !== undefined && err !== null) return void settle(err);
      ended = true;
      if (pending === undefined) endAt();
    });
  });
}

/**
 * `chunk` into the slots from the k-th on, asking `control` for more slots while there are bytes past the last one
 * (a slot it adds at once is filled on): the next slot to fill, the bytes past the last slot, and whether to wait,
 * paused, for more slots (false with bytes left: stop).
 */
function fillGrowing<Ctx>(env: ProxyEnv<Ctx>, slots: readonly Slot[], k: number, chunk: Buffer, control: CutControl | undefined): [number, Buffer, boolean] {
  for (;;) {
    [k, chunk] = fill(env, slots, k, chunk);
    if (chunk.length === 0) return [k, chunk, false];
    const more = control?.more();
    if (more !== 'added') return [k, chunk, more === true];
  }
}

/** `chunk` into the slots from the k-th on: the next slot to fill, and the bytes past the last slot. */
function fill<Ctx>(env: ProxyEnv<Ctx>, slots: readonly Slot[], k: number, chunk: Buffer): [number, Buffer] {
  while (chunk.length > 0 && k < slots.length) {
    const sl = slots[k] as Slot;
    const need = sl.length - sl.got;
    const piece = chunk.length <= need ? chunk : chunk.subarray(0, need);
    chunk = chunk.length <= need ? chunk.subarray(chunk.length) : chunk.subarray(need);
    sl.got += piece.length;
    env.stats.s_beresp_bodybytes += piece.length;
    if (!sl.dropped) {
      sl.obj.extend(piece);
      if (sl.obj.stored === true) env.store.charge(sl.obj, piece.length);
    }
    if (sl.got === sl.length) {
      if (!sl.dropped) sl.obj.finish();
      sl.done = true;
      k++;
    }
  }
  return [k, chunk];
}
