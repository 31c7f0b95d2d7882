import type { CacheObject } from './cache/cache-object.js';
import type { AbortWatch } from './cache/fetch-abort.js';
import type { LookupKind, Store } from './cache/store.js';
import type { CacheStatus } from './http/cache-status.js';
import type { FreshnessOptions } from './http/freshness.js';
import type { CacheRules } from './http/targeted.js';
import type { HeaderMap } from './http/headers.js';
import type { Http1Request } from './http1/server.js';
import type { Http1Response } from './http1/response.js';
import type { Stats } from './stats.js';
import type { Outcome } from './histogram.js';
import type { Transaction, TxLog } from './txlog/txlog.js';
import type { PinSlot, Upstream } from './upstream.js';
import type { DownstreamRequest, ProxyHooks } from './policy/hooks.js';

/**
 * What every room shares: the proxy's settings and services (store, upstream, hooks, log, counters), and the state
 * of one request (Tx). Steps, the fetch and delivery read the environment and change only the Tx they are given.
 */

/** The request machine's steps (Varnish's cache_req_fsm.c states); 'done' ends the walk. */
export type Step = 'recv' | 'lookup' | 'miss' | 'pass' | 'deliver' | 'synth' | 'slice' | 'restart' | 'done';

/** Why a fetch runs: a miss, a background refresh of an object in grace, or a pass (logged as Varnish's Link reason). */
export type FetchReason = 'fetch' | 'bgfetch' | 'pass';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  event: string;
  message: string;
  url?: string;
}

/** A synthetic response decided by a step or by policy (Varnish's vcl_synth). */
export interface Synth {
  status: number;
  body?: string;
  headers?: HeaderMap;
}

/**
 * The slicer setting: objects of GET/HEAD requests whose URL matches `match` (default: all) are sliced into
 * `sizeBytes`. With `minBytes` the decision is the response's (objects of at least that many bytes, which qualify);
 * without it every matching request is sliced as it arrives (nginx's model).
 */
export interface SliceOptions {
  sizeBytes: number;
  match?: RegExp | undefined;
  minBytes?: number | undefined;
  /** Segments fetched ahead of the one being sent (default 4, at most 16). */
  readAhead?: number | undefined;
  /**
   * Read-ahead of a sliced object's missing segments as runs: consecutive ones fetched with one origin Range request
   * and cut into their segment objects (slicer/run.ts). Default on (false turns them off); only for a meta object
   * decided from a response (`minBytes`), and not with a requestFilter or an upstream hook (each segment subrequest
   * runs them, a run would not).
   */
  runs?: boolean | undefined;
  /**
   * With runs: a meta object made from a 200 keeps that 200's body as its first run, cut into segments 0, 1, ... as a
   * whole read goes on (slicer/lead.ts), instead of closing the connection and fetching them again. Default off.
   */
  keepBody?: boolean | undefined;
}

export interface ProxyEnv<Ctx> {
  readonly stats: Stats;
  readonly store: Store;
  readonly upstream: Upstream;
  readonly hooks: ProxyHooks<Ctx>;
  /** Clock in epoch ms. */
  readonly now: () => number;
  /** Name used in Via and Cache-Status. */
  readonly name: string;
  /** Our Via entry (`1.1 <name>`). */
  readonly via: string;
  readonly freshness: FreshnessOptions;
  /** The storage rules (rfc or varnish profile) and the targeted cache-control fields obeyed (RFC 9213). */
  readonly rules: CacheRules;
  readonly graceSec: number;
  readonly keepSec: number;
  /** Serve a kept stale object when the origin cannot be reached (unless the response forbids stale). */
  readonly staleIfDisconnected: boolean;
  readonly hitForMissSec: number;
  /** Most restarts of one request (Varnish's max_restarts, default 4); one more gets a 503. */
  readonly maxRestarts: number;
  /** Most retries of one fetch (Varnish's max_retries, default 4); one more fails the fetch. */
  readonly maxRetries: number;
  readonly transitBytes: number;
  readonly maxRanges: number;
  readonly streamMinBytes: number;
  /** A fetch whose body has had no reader this long is abandoned (never kept truncated), ms. */
  readonly orphanFetchMs: number;
  readonly slicing: SliceOptions | undefined;
  /** How deep ESI includes nest (Varnish's max_esi_depth, default 5). */
  readonly esiMaxDepth: number;
  /** Varnish's feature esi_include_onerror: an include answered other than 200/204 is left out, and without onerror="continue" cuts the page. */
  readonly esiIncludeOnError: boolean;
  readonly purgeAllow: ReadonlySet<string>;
  /** A CONNECT tunnel where neither side sent a byte for this long is closed, ms. */
  readonly tunnelIdleTimeoutMs: number;
  readonly txlog: TxLog | undefined;
  readonly log: (line: LogLine) => void;
  /** See ProxyOptions.onTransitBytes. */
  readonly onTransitBytes: ((bytes: number) => void) | undefined;
  /** Fetches running now (aborted on close). */
  readonly inflight: Set<CacheObject>;
  /** Set once anything was sliced: purges then also look for segment keys. */
  sliced: boolean;
  /** A fresh per-request policy context. */
  newCtx(): Ctx;
  /**
   * The cache key of a request: the cacheKey hook's, else builtin (Host + URL); segment keys for subrequests. A
   * promise only when the hook returned one.
   */
  keyOf(req: DownstreamRequest, ctx: Ctx): string | Promise<string>;
}

/** One request's state as it walks the machine (Varnish's `struct req`). */
export interface Tx<Ctx> {
  req: DownstreamRequest;
  /** The request body (null when none), forwarded on pass. */
  body: Http1Request['body'];
  /** Request body bytes read so far. */
  bodyBytes: () => number;
  /** The client connection's pin slot (connection-oriented auth). */
  pin: PinSlot;
  res: Http1Response;
  ctx: Ctx;
  /** Aborts when the client goes away (created lazily by the response). */
  readonly signal: AbortSignal;
  /** The same as an AbortWatch (no AbortSignal built): for waits that take one (issue 16). */
  readonly abortWatch: AbortWatch;
  key: string;
  obj: CacheObject | undefined;
  /** What the lookup found (undefined before it, or when the request never looked up). */
  lookup: LookupKind | undefined;
  /** The Cache-Status to send: written by steps from their outcome, never read to decide. */
  status: CacheStatus;
  synth: Synth | undefined;
  closeAfter: boolean;
  /** The request waited on another request's fetch (the waiting list) before its hit. */
  coalesced: boolean;
  /** An expired object for this request, kept for revalidation or stale-if-error. */
  stale: CacheObject | undefined;
  /** This request's transaction in the log (undefined when logging is off). */
  log: Transaction | undefined;
  /** The slicer started this request over once already (its object changed at the origin). */
  sliceRetried: boolean;
  /** How the request was answered, for the latency histograms (set by the step that decides it). */
  outcome: Outcome;
}

/** What aborts a request's waits when its client goes away: the client's response, or a subrequest's parent. */
export interface AbortSource {
  readonly signal: AbortSignal;
  readonly abortWatch: AbortWatch;
}

/**
 * A transaction's starting state: nothing looked up, no body, not logged. A class, not an object literal: a literal
 * with a getter costs a closure and an accessor definition per request (newTx was 3.6 % of a 1 KiB hit's profile).
 */
export function newTx<Ctx>(res: Http1Response, signalFrom: AbortSource, req: DownstreamRequest, ctx: Ctx, pin: PinSlot): Tx<Ctx> {
  return new TxState<Ctx>(res, signalFrom, req, ctx, pin);
}

class TxState<Ctx> implements Tx<Ctx> {
  body: Http1Request['body'] = null;
  bodyBytes: () => number = noBodyBytes;
  key = '';
  private held: CacheObject | undefined = undefined;
  private heldStale: CacheObject | undefined = undefined;
  lookup: LookupKind | undefined = undefined;
  status: CacheStatus = {};
  synth: Synth | undefined = undefined;
  closeAfter = false;
  coalesced = false;
  log: Transaction | undefined = undefined;
  sliceRetried = false;
  outcome: Outcome = 'synth';

  constructor(
    public res: Http1Response,
    private readonly signalFrom: AbortSource,
    public req: DownstreamRequest,
    public ctx: Ctx,
    public pin: PinSlot,
  ) {}

  // The client's response (or, for a subrequest, its parent) owns the signal; read lazily, as most hits never wait.
  get signal(): AbortSignal {
    return this.signalFrom.signal;
  }

  get abortWatch(): AbortWatch {
    return this.signalFrom.abortWatch;
  }

  // An object this request may write the bytes of is held by its response (the client's, shared by subrequests)
  // until those writes have left the socket: its slabs are not reused under them (cache/slab-pool.ts).
  get obj(): CacheObject | undefined {
    return this.held;
  }

  set obj(o: CacheObject | undefined) {
    this.held = o;
    if (o !== undefined && o.needsHold) this.res.holdObject(o);
  }

  get stale(): CacheObject | undefined {
    return this.heldStale;
  }

  set stale(o: CacheObject | undefined) {
    this.heldStale = o;
    if (o !== undefined && o.needsHold) this.res.holdObject(o);
  }
}

const noBodyBytes = (): number => 0;
