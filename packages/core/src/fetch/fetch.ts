import type { CacheObject } from '../cache/cache-object.js';
import type { AbortWatch } from '../cache/fetch-abort.js';
import { errorMessage, ProxyError } from '../errors.js';
import type { DownstreamRequest } from '../policy/hooks.js';
import type { FetchReason, ProxyEnv } from '../context.js';
import { logBereq, logBeresp, logBerespDecided, logVcl } from '../txlog/records.js';
import type { Transaction } from '../txlog/txlog.js';
import type { UpstreamRequest, UpstreamResponse } from '../upstream.js';
import type { BackendResponse } from '../policy/hooks.js';
import type { HeaderMap } from '../http/headers.js';
import { backendResponse, commitHeaders, decideBeresp, isRevalidation304, type BerespInput } from './beresp.js';
import { backendErrorAction, canRetry, fillSynthetic, logRetry } from './backend-error.js';
import { invalidateAfterUnsafe } from './invalidate.js';
import { esiFetch } from '../esi/fetch.js';
import { pump } from './pump.js';
import { keepFirstRun } from '../slicer/lead.js';
import { makeMeta, openResponsePhase, plainStart, requestWithSlicer, sliceDecision, type SliceFetch } from '../slicer/fetch-slice.js';
import { keepProbedSegment } from '../slicer/probe.js';
import type { FetchSlicer } from '../slicer/handle.js';

/**
 * The fetch task (origin -> CacheObject), a machine of its own as Varnish's cache_fetch.c, run beside delivery: a
 * client leaving never stops a fetch that fills the cache, and a slow client never slows it. Its phases:
 *
 *   begin -> send bereq -> decide beresp -> commit headers (store or not; waiters wake) -> pump body -> end
 *                      \-> fail (no response)                                         \-> fail (body)
 *
 * With `stale` (an expired object with validators) the request is conditional, and a 304 refreshes the stale
 * object's headers and freshness onto `obj` without refetching the body (RFC 9111 §4.3.4).
 */

/** What of the client request a fetch needs. */
export interface FetchTx<Ctx> {
  req: DownstreamRequest;
  ctx: Ctx;
  log: Transaction | undefined;
  bodyBytes: () => number;
}

/** One fetch: the object it fills, the request it sends, why, for whom, and the stale object it may revalidate. */
export interface FetchJob<Ctx> {
  obj: CacheObject;
  bereq: UpstreamRequest;
  tx: FetchTx<Ctx>;
  reason: FetchReason;
  stale?: CacheObject | undefined;
  /** Hears the origin's interim responses (103 Early Hints), forwarded to the client that caused the fetch. */
  onInfo?: ((status: number, headers: HeaderMap) => void) | undefined;
  /**
   * The abort watch of the client that caused a miss, read once the head is decided (not before the origin write:
   * issue 16): a response not stored is abandoned when that client has left or leaves before reading it.
   */
  client?: (() => AbortWatch) | undefined;
}

/** Bytes of each side, for the BereqAcct record (heads as Sluice hands them to the origin client). */
interface Acct {
  reqHead: number;
  respHead: number;
  respBody: number;
}

/** Runs a fetch to its end; never throws (every failure ends in `obj.fail`). */
export async function runFetch<Ctx>(env: ProxyEnv<Ctx>, job: FetchJob<Ctx>): Promise<void> {
  const { obj, bereq, tx } = job;
  env.inflight.add(obj);
  env.stats.s_fetch++;
  let be = beginLog(env, job);
  const acct: Acct = { reqHead: 0, respHead: 0, respBody: 0 };
  // The stale object a 304 would adopt keeps its slabs until this fetch ends: a background fetch's client may be done
  // with it, and the store's insert of `obj` lets it go before the 304 (cache/slab-pool.ts).
  const stale = job.stale !== undefined && job.stale.needsHold ? job.stale : undefined;
  stale?.hold();
  try {
    // A hook may ask for a retry (backend-error.ts): the request goes again, in a backend transaction of its own.
    for (let retries = 0; (await attempt(env, job, be, acct, retries)) === 'retry'; retries++) {
      if (!canRetry(env, bereq, retries, be)) {
        env.stats.fetch_failed++;
        env.store.releaseBusy(obj);
        obj.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', 'backend fetch failed (retry refused)', { source: 'upstream', status: 503 }));
        return;
      }
      env.stats.s_retry++;
      be = logRetry(env, be);
      acct.reqHead = acct.respHead = acct.respBody = 0;
    }
  } catch (e: unknown) {
    // A hook threw (request or response filter): nothing of this fetch is kept.
    env.stats.fetch_failed++;
    env.log({ level: 'error', event: 'fetch-error', message: errorMessage(e), url: bereq.path });
    env.store.releaseBusy(obj);
    env.store.remove(obj);
    obj.fail(new ProxyError('CORE_ERR_HOOK_FAILED', 'fetch failed', { source: 'internal', cause: e }));
  } finally {
    stale?.release();
    env.inflight.delete(obj);
    if (be !== undefined) {
      const reqBody = bereq.body === null ? 0 : tx.bodyBytes();
      be.add('BereqAcct', `${acct.reqHead} ${reqBody} ${acct.reqHead + reqBody} ${acct.respHead} ${acct.respBody} ${acct.respHead + acct.respBody}`);
      be.end();
    }
  }
}

/** One try of the fetch: request hook, send, decide, commit, body. 'retry' when a hook asked for another try. */
async function attempt<Ctx>(env: ProxyEnv<Ctx>, job: FetchJob<Ctx>, be: Transaction | undefined, acct: Acct, retries: number): Promise<'done' | 'retry'> {
  const { obj, bereq, tx } = job;
  // The request hook gets the slicer handle; when it enables slicing a HEAD goes first, for a cold range with
  // --slice-min a Range GET of the segment it starts in (slicer/).
  const sf = { bereq, tx, obj, isPass: job.reason === 'pass', stale: job.stale };
  // Without a request hook or a probe the request goes out now, in this turn, not after a promise hop (issue 16).
  const start = plainStart(env, sf) ?? (await requestWithSlicer(env, sf, be));
  try {
    if (be !== undefined) acct.reqHead = logBereq(be, start.sent ?? bereq);
    let d = await decide(env, job, sf, start.slicer, start.head ?? start.answer, start.head !== undefined, acct, be, retries);
    if (typeof d === 'object' && start.head !== undefined && d.sliceSize === undefined) {
      // The HEAD (or range probe) qualified but the hooks or the builtin rules did not keep the object: fetched whole.
      start.probe?.close();
      be?.add('Debug', 'slicer: the object is not kept sliced; fetched whole');
      d = await decide(env, job, sf, await start.whole(), undefined, false, acct, be, retries);
    }
    if (d === 'retry') return 'retry';
    if (d === undefined) return 'done';
    // A sliced object is never an ESI template (its body is not read here).
    if (d.beresp.doEsi && d.sliceSize === undefined) d.input.res = esiFetch(env, d.input, d.beresp.headers, be);
    commit(env, d.input, d.beresp, job, be, d.sliceSize);
    if (obj.slice === undefined) {
      await body(env, d.input, d.beresp.transitBytes, acct, be);
      return 'done';
    }
    obj.finish();
    // The 200's body: kept as the first run of segments (slicer/lead.ts), or closed unread.
    keepFirstRun(env, obj, d.input, start.head === undefined, be);
    // The range probe's 206 body is the segment it asked for: kept as that segment of the meta just made.
    const seg = start.probe === undefined ? undefined : keepProbedSegment(env, obj, start.probe, tx.req);
    if (seg !== undefined) await pumpBody(env, seg, env.transitBytes, acct, be);
    return 'done';
  } finally {
    start.probe?.close();
  }
}

/** The response and what was decided of it (store, slice), before anything is committed. */
interface Decided {
  input: BerespInput;
  beresp: BackendResponse;
  sliceSize: number | undefined;
}

/**
 * Sends the request (unless `given` answers it already: a slicer HEAD or the range probe's view, `isHead`, or the
 * range probe's own answer) and decides the response: freshness, hooks, slicing.
 * 'retry' when a hook asked for another try; undefined when the fetch failed (the object is failed already).
 */
async function decide<Ctx>(env: ProxyEnv<Ctx>, job: FetchJob<Ctx>, sf: SliceFetch<Ctx>, slicer: FetchSlicer, given: UpstreamResponse | undefined, isHead: boolean, acct: Acct, be: Transaction | undefined, retries: number): Promise<Decided | 'retry' | undefined> {
  const { obj, bereq, tx } = job;
  const res = given ?? (await send(env, job, be, retries));
  if (res === 'retry' || res === undefined) return res;
  const input: BerespInput = { res, bereq, obj, stale: job.stale, isPass: job.reason === 'pass', req: tx.req, retries };
  if (be !== undefined) acct.respHead = logBeresp(be, res.status, res.headers);
  invalidateAfterUnsafe(env, tx.req, res);
  const beresp = backendResponse(env, input);
  if (beresp.was304) env.stats.fetch_304++;
  openResponsePhase(slicer, beresp, res, sf, env.hooks.upstreamResponseFilter !== undefined);
  const verdict = decideBeresp(env, input, beresp, tx.ctx, slicer);
  if ((verdict instanceof Promise ? await verdict : verdict) === 'retry') {
    logVcl(be, 'BACKEND_RESPONSE', 'retry');
    res.body.destroy();
    return 'retry';
  }
  const sliceSize = sliceDecision(env, slicer, beresp, res, sf);
  // A HEAD answer (the slicer's) has no body to keep when the object is not sliced after all.
  if (isHead && sliceSize === undefined) res.body.resume();
  return { input, beresp, sliceSize };
}

/** The backend transaction in the log, linked from the client's. */
function beginLog<Ctx>(env: ProxyEnv<Ctx>, job: FetchJob<Ctx>): Transaction | undefined {
  const parent = job.tx.log;
  if (parent === undefined || env.txlog === undefined) return undefined;
  const be = env.txlog.beginBereq(parent, job.reason);
  parent.add('Link', `bereq ${be.vxid} ${job.reason}`);
  job.obj.fetchVxid = be.vxid;
  be.timestamp('Start');
  return be;
}

/**
 * Sends the backend request; on failure the object fails and undefined returns: with the upstream's 5xx (else 503)
 * for a backend failure, with the downstream cause when the request was not the backend's to answer.
 */
async function send<Ctx>(env: ProxyEnv<Ctx>, job: FetchJob<Ctx>, be: Transaction | undefined, retries: number): Promise<UpstreamResponse | 'retry' | undefined> {
  const { obj, bereq } = job;
  obj.requestTimeMs = env.now();
  try {
    const res = await env.upstream.request(bereq, { signal: obj.fetchController.signal, onInfo: job.onInfo });
    obj.responseTimeMs = env.now();
    return res;
  } catch (e: unknown) {
    env.stats.fetch_failed++;
    const downstream = downstreamCause(job);
    if (downstream !== undefined) {
      // Nobody wants the answer any more, or the client's body broke off: not a backend failure, nothing to warn of.
      be?.add('FetchError', `fetch aborted: ${downstream.message}`);
      obj.fail(downstream);
      env.store.releaseBusy(obj);
      return undefined;
    }
    env.stats.backend_fail++;
    be?.add('FetchError', `backend fetch failed: ${errorMessage(e)}`);
    env.log({ level: 'error', event: 'backend-fail', message: `backend fetch failed: ${errorMessage(e)}`, url: bereq.path });
    // The upstream's own status when it gives one (502 lost pinned connection, 504 timeout), else 503.
    const upstreamStatus = (e as { status?: unknown }).status;
    const status = typeof upstreamStatus === 'number' && upstreamStatus >= 500 && upstreamStatus <= 599 ? upstreamStatus : 503;
    const retry = (e as { retry?: unknown }).retry === 'yes' ? 'yes' : 'no';
    // vcl_backend_error: policy may fetch again or make the response.
    const action = await backendErrorAction(env, bereq, retries, { status, message: errorMessage(e) }, job.tx.ctx, be);
    if (action === 'retry') return 'retry';
    if (action !== undefined) {
      fillSynthetic(env, obj, action.synth);
      return undefined;
    }
    obj.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', 'backend fetch failed', { source: 'upstream', status, retry, cause: e }));
    env.store.releaseBusy(obj);
    return undefined;
  }
}

/**
 * Why a failed send was not the backend's doing, if it was not: the fetch's signal aborted (its last reader left, or
 * shutdown), or the request body stream failed (the client left mid-body, or sent a malformed one).
 */
function downstreamCause<Ctx>(job: FetchJob<Ctx>): ProxyError | undefined {
  const signal = job.obj.fetchController.signal;
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    return reason instanceof ProxyError ? reason : new ProxyError('CORE_ERR_CLIENT_GONE', 'fetch aborted', { source: 'downstream', cause: reason });
  }
  const body = job.bereq.body;
  if (body === null || (body.errored === null && !(body.destroyed && !body.readableEnded))) return undefined;
  const cause: unknown = body.errored;
  return cause instanceof ProxyError ? cause : new ProxyError('CORE_ERR_CLIENT_GONE', 'the request body broke off', { source: 'downstream', cause });
}

/** Stores the object (or marks the key uncacheable), logs the decision, and lets waiters in (state stream). */
function commit<Ctx>(env: ProxyEnv<Ctx>, i: BerespInput, beresp: BackendResponse, job: FetchJob<Ctx>, be: Transaction | undefined, sliceSize: number | undefined): void {
  const obj = i.obj;
  commitHeaders(i, beresp, env.rules);
  // Sliced: the object is the meta object (no body; the origin connection is closed unread).
  if (sliceSize !== undefined) makeMeta(obj, i.res, sliceSize, i.stale);
  if (!beresp.uncacheable && !i.isPass) {
    obj.ttlSec = beresp.ttlSec + obj.initialAgeSec;
    // Too big to keep (a Content-Length over the budget): not stored, and the key is hit-for-miss so later requests
    // do not queue behind a fetch they can never share.
    if (!env.store.insert(obj)) env.store.markUncacheable(obj, env.hitForMissSec, env.now());
  } else {
    obj.stored = false;
    obj.notStoredReason = beresp.uncacheableReason;
    if (beresp.uncacheableReason === 'stale-if-error') env.store.releaseBusy(obj);
    else if (beresp.hitForPassSec !== undefined && beresp.hitForPassSec > 0) {
      env.store.markUncacheable(obj, beresp.hitForPassSec, env.now(), 'pass');
    } else if (!i.isPass) env.store.markUncacheable(obj, beresp.ttlSec, env.now());
  }
  if (be !== undefined) {
    logBerespDecided(be, obj, beresp);
    // The client side's `Fetch`: the fetch has handed over its response headers (not for a background fetch).
    if (job.reason !== 'bgfetch') job.tx.log?.timestamp('Fetch');
  }
  obj.setState('stream');
  // Not stored, and no client will read it: a background fetch has none; a miss's client left, or leaves unread.
  if (job.reason === 'bgfetch') abandonIfUnread(obj);
  else if (obj.stored === false && job.client !== undefined) {
    const watch = job.client();
    if (watch.aborted) abandonIfUnread(obj);
    else watch.addEventListener('abort', () => abandonIfUnread(obj), { once: true });
  }
}

/**
 * Aborts the fetch of an object nobody reads and nobody will: not stored (uncacheable, too large, a pass) and no
 * reader open. The pump then fails the fetch (`FetchError`, once). A stored object is fetched on into the cache.
 */
export function abandonIfUnread(obj: CacheObject): void {
  if (obj.stored !== false || obj.state === 'busy' || obj.isFinal || obj.readerCount > 0) return;
  obj.fetchController.abort(new ProxyError('CORE_ERR_NO_READER', 'nobody reads the unstored response', { source: 'downstream' }));
}

/** The body: adopted from the stale object on a 304, none for bodiless responses, else pumped. */
async function body(env: ProxyEnv<unknown>, i: BerespInput, transitBytes: number, acct: Acct, be: Transaction | undefined): Promise<void> {
  if (isRevalidation304(i)) {
    i.res.body.resume();
    i.obj.adoptBody(i.stale as CacheObject);
    // The shared body counts against the storage like a fetched one (it keeps the stale object's slabs alive).
    if (i.obj.stored === true) env.store.charge(i.obj, i.obj.length);
    return;
  }
  if (i.obj.bodyless) {
    i.res.body.resume();
    i.obj.finish();
    return;
  }
  await pumpBody(env, i, transitBytes, acct, be);
}

/**
 * Copies the origin body into the object as it arrives: stored objects are charged to the store, unstored ones wait
 * for their slowest reader (the transit buffer). A body that fails or ends short of its Content-Length fails the
 * object and is never kept.
 */
export async function pumpBody(env: ProxyEnv<unknown>, i: BerespInput, transitBytes: number, acct: Acct, be: Transaction | undefined): Promise<void> {
  const { obj, res } = i;
  const signal = obj.fetchController.signal;
  let watch: NodeJS.Timeout | undefined;
  const complete = (): void => {
    be?.timestamp('BerespBody');
    be?.add('Length', String(obj.length));
    obj.finish();
  };
  let early = false;
  try {
    const pumped = pump(obj, res.body, transitBytes, signal, (chunk) => {
      acct.respBody += chunk.length;
      env.stats.s_beresp_bodybytes += chunk.length;
      if (obj.stored === true) env.store.charge(obj, chunk.length);
    });
    // Every byte the Content-Length announced came with the head (the pump took them synchronously): the message is
    // complete at the origin client, so the object is finished now, in this turn, and the delivery the head woke sends
    // head and body in one write, as a hit, instead of streaming them and waiting for the stream's end (issue 16).
    // The stream's end still comes and frees the origin connection.
    if (obj.state === 'stream' && obj.expectedLength !== undefined && !obj.bodyless && obj.length === obj.expectedLength) {
      early = true;
      complete();
    }
    // The orphan watch only while something may still come: not for an object complete with its head whose origin
    // body is over too (a direct sink's body is destroyed once its message ended), so a small miss makes and clears
    // no interval (issue 16). A Content-Range span shorter than the message still gets the watch.
    if (!early || !res.body.destroyed) watch = watchOrphan(obj, env.orphanFetchMs);
    await pumped;
    if (early) return;
    if (obj.expectedLength !== undefined && !obj.bodyless && obj.length !== obj.expectedLength) {
      throw new ProxyError('CORE_ERR_UPSTREAM_LENGTH_MISMATCH', `body ended at ${obj.length} of ${obj.expectedLength} bytes`, { source: 'upstream' });
    }
    complete();
  } catch (e: unknown) {
    res.body.destroy();
    // The object was complete before the stream ended (a shutdown abort meanwhile): it is kept, nothing failed.
    if (early) return;
    env.stats.fetch_failed++;
    be?.add('FetchError', signal.aborted ? 'fetch aborted (no reader left)' : `body fetch failed: ${errorMessage(e)}`);
    if (!signal.aborted) env.log({ level: 'error', event: 'fetch-error', message: `body fetch failed: ${errorMessage(e)}`, url: i.bereq.path });
    // Never keep a truncated object.
    env.store.remove(obj);
    obj.fail(new ProxyError('CORE_ERR_UPSTREAM_BODY', 'origin body failed', { source: 'upstream', cause: e }));
  } finally {
    if (watch !== undefined) clearInterval(watch);
  }
}

/**
 * Abandons a fetch once its body has had no reader for `ms`: a cacheable fetch goes on without clients to fill the
 * cache, but not forever (an origin that never ends would hold its connection for good).
 */
function watchOrphan(obj: CacheObject, ms: number): NodeJS.Timeout {
  let since: number | undefined;
  const t = setInterval(
    () => {
      if (obj.readerCount > 0) {
        since = undefined;
        return;
      }
      const now = Date.now();
      since ??= now;
      if (now - since >= ms) obj.fetchController.abort(new ProxyError('CORE_ERR_NO_READER', `no reader for ${ms} ms`, { source: 'downstream' }));
    },
    Math.max(10, Math.min(1000, Math.floor(ms / 4))),
  );
  t.unref();
  return t;
}

