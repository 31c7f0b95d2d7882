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

/** Whether a sliced response in `env` may use runs. */
export function runsAllowed<Ctx>(env: ProxyEnv<Ctx>, meta?: CacheObject): boolean {
  if (meta !== undefined && unstorable.has(meta)) return false;
  const h = env.hooks;
  // vcl_recv too: each segment subrequest runs it (it may pick the backend, fill the context the cache key reads, or
  // pass the segment), the run would not (s6 attack: a run sent to the director's backend served its bytes).
  return env.slicing !== undefined && env.slicing.runs !== false && h.requestFilter === undefined && h.upstreamRequestFilter === undefined && h.upstreamResponseFilter === undefined;
}

/** One segment of a run: its (busy, then streaming) object, its request, its length, and how far it is filled. */
interface Slot {
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
    if (i * s.size >= s.total) break;
    const req = segmentRequestOf(parent.req, i, s.size, s.gen);
    const key = env.keyOf(req, env.newCtx());
    if (typeof key !== 'string') break;
    const r = env.store.lookup(key, req.headers, env.now());
    if (r.kind === 'grace' && r.fetch !== undefined) env.store.releaseBusy(r.fetch);
    // Cached or being fetched: skipped before the run's first segment, the end of the run after it.
    if (r.kind !== 'miss') {
      if (prev === undefined) continue;
      break;
    }
    slots.push({ index: i, obj: r.obj, req, length: Math.min(s.size, s.total - i * s.size), got: 0, committed: false, dropped: false, done: false });
  }
  if (slots.length < 2) {
    for (const sl of slots) env.store.releaseBusy(sl.obj);
    return 0;
  }
  void runFetch(env, parent, meta, slots);
  return slots.length;
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
    for (const sl of slots) {
      if (sl.done) continue;
      // Never a truncated segment in cache: removed (stored) or released (still busy), then failed, which wakes its
      // waiters (a busy one's look up again and fetch it alone).
      if (sl.committed) env.store.remove(sl.obj);
      else env.store.releaseBusy(sl.obj);
      sl.obj.fail(err);
    }
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
function commitRun<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, slots: Slot[], res: UpstreamResponse, bereq: BerespInput['bereq'], sentAt: number, receivedAt: number): void {
  const decided = slots.map((sl) => decideSlot(env, meta, sl, res, bereq, sentAt, receivedAt));
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
function decideSlot<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, sl: Slot, res: UpstreamResponse, bereq: BerespInput['bereq'], sentAt: number, receivedAt: number): Decided {
  const s = meta.slice as NonNullable<CacheObject['slice']>;
  const seg = sl.obj;
  const from = sl.index * s.size;
  const headers: HeaderMap = { ...res.headers, 'content-range': `bytes ${from}-${from + sl.length - 1}/${s.total}`, 'content-length': String(sl.length) };
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

/**
 * A decided segment of the run becomes a cache object as a segment fetched alone would: its head committed, the
 * meta's lifetime (bindSegment), inserted under its key, bound to the meta, streaming.
 */
function commitSlot<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, sl: Slot, d: Decided): void {
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
 * Cuts the run's body into its segments as it arrives: each segment gets exactly its bytes (a chunk across a boundary
 * is split without copying) and is finished at its last one. Chunks taken from 'data' events, synchronously, as the
 * fetch's pump does. Rejects when the body fails or ends short.
 */
function cut<Ctx>(env: ProxyEnv<Ctx>, body: Readable, slots: Slot[], signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let k = 0;
    let settled = false;
    const settle = (e: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      signal.removeEventListener('abort', onAbort);
      if (e === undefined) resolve();
      else reject(e instanceof Error ? e : new Error(String(e)));
    };
    const onData = (data: Buffer): void => {
      if (settled) return;
      let chunk = data;
      try {
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
        // Bytes past the run (an origin sending more than its Content-Range said): every segment is complete, the
        // rest is not read.
        if (chunk.length > 0) {
          settle(undefined);
          body.destroy();
        }
      } catch (e: unknown) {
        // A segment refused its bytes (it failed meanwhile): the run stops here.
        body.destroy(e as Error);
        settle(e);
      }
    };
    const onAbort = (): void => {
      body.destroy(signal.reason as Error);
      settle(signal.reason ?? new Error('slicer run aborted'));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData);
    body.resume();
    finished(body, { writable: false }, (err) => {
      if (err === undefined || err === null) settle(k < slots.length ? new Error(`body ended after ${slots.slice(0, k).length} of ${slots.length} segments`) : undefined);
      else settle(err);
    });
  });
}
