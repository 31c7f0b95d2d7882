import type { AddressInfo } from 'node:net';
import { CacheObject } from '../cache/cache-object.js';
import { MemoryStore } from '../cache/memory-store.js';
import type { Store } from '../cache/store.js';
import { newTx, type LogLine, type ProxyEnv, type SliceOptions, type Step, type Tx } from '../context.js';
import { writeSynth } from '../deliver/head.js';
import { deliver } from '../deliver/deliver.js';
import { errorMessage, ProxyError } from '../errors.js';
import { Histogram } from '../histogram.js';
import type { FreshnessOptions } from '../http/freshness.js';
import { DEFAULT_TARGETS, type CacheProfile, type CacheRules } from '../http/targeted.js';
import { Http1Server, type ConnectionContext, type Http1Request } from '../http1/server.js';
import type { Http1Response } from '../http1/response.js';
import type { DownstreamRequest, ProxyHooks } from '../policy/hooks.js';
import { fullKey, lastBuiltinKey } from './builtin-key.js';
import { deliverOrSlice, slice } from '../slicer/sliced.js';
import { createStats, type Stats } from '../stats.js';
import { logClientRequest, logGarbage, logRequestEnd, logSessionOpened, sessionOf } from '../txlog/records.js';
import type { TxLog } from '../txlog/txlog.js';
import type { PinSlot, Upstream } from '../upstream.js';
import { esiDelivery } from '../esi/deliver.js';
import { connectTunnel } from './connect.js';
import { esiRequest } from './esi-request.js';
import { drive, segmentRequest, untilDone, type StepTable } from './driver.js';
import { InFlight } from './in-flight.js';
import { restart } from './restart.js';
import * as steps from './steps.js';

export type { LogLine, Step } from '../context.js';

/**
 * The proxy: its settings, the HTTP/1 server in front, and the request machine behind it. A request walks the steps
 * (proxy/steps.ts) driven by one loop (proxy/driver.ts); the fetch (fetch/), delivery (deliver/) and the slicer
 * (slicer/) each live in their own room. See docs/architecture.md.
 */

/** Settings of one proxy instance. Durations are seconds, sizes bytes. */
export interface ProxyOptions<Ctx> {
  upstream: Upstream;
  hooks?: ProxyHooks<Ctx> | undefined;
  /** Memory storage budget for cached objects (default 256 MiB). */
  storageBytes?: number | undefined;
  /** TTL for responses without explicit freshness (Varnish default_ttl). Unset: RFC 9111 heuristics only. */
  defaultTtlSec?: number | undefined;
  /**
   * Grace: how long past expiry an object is served stale while a background fetch refreshes it, on responses that
   * do not forbid stale (must-revalidate, proxy-revalidate, s-maxage, no-cache). Default 0, RFC 9111 §4.2.4: stale
   * only where the response allows it (stale-while-revalidate). Varnish's default is 10 s.
   */
  defaultGraceSec?: number | undefined;
  /**
   * Keep: how long past expiry (and grace) a stored object stays, bounded by the storage budget (LRU), so that the
   * next request revalidates it with If-None-Match / If-Modified-Since (RFC 9111 §4.3.1) and, with
   * `staleIfDisconnected`, so that it can be served when the origin cannot be reached. Default 1 day; Varnish's is 0.
   */
  defaultKeepSec?: number | undefined;
  /**
   * Serve a kept stale object when the origin cannot be reached at all (no response: refused, reset, timeout), as
   * RFC 9111 §4.2.4 allows a disconnected cache, never when the response forbids stale (must-revalidate,
   * proxy-revalidate, s-maxage, no-cache). Default true; a 5xx answer is served as is unless stale-if-error allows.
   */
  staleIfDisconnected?: boolean | undefined;
  /**
   * Storage rules (default 'rfc', RFC 9111): every final status with explicit freshness is stored (not an unknown one
   * with must-understand), Set-Cookie responses are stored, no-cache responses are stored and revalidated on every
   * use, an invalid Age makes a response stale. 'varnish': builtin.vcl's (Varnish's status set; Set-Cookie, no-cache
   * and Surrogate-Control no-store make the key hit-for-miss; an invalid Age is ignored).
   */
  profile?: CacheProfile | undefined;
  /**
   * Targeted cache-control fields obeyed over Cache-Control and Expires, first present and valid wins (RFC 9213
   * §2.1), lowercase. Default: ['cdn-cache-control', 'surrogate-control'] for the rfc profile, none for varnish.
   * `surrogate-control` reads the directives untargeted or targeted at `name`, and announces `name` to the origin in
   * Surrogate-Capability. Surrogate-Control is never forwarded to clients; CDN-Cache-Control is (RFC 9213 §3).
   */
  cacheTargets?: readonly string[] | undefined;
  /** How long an uncacheable key stays hit-for-miss (default 120 s, as Varnish). */
  hitForMissSec?: number | undefined;
  /** Most restarts of one request (a hook returning 'restart'; Varnish's max_restarts, default 4); then a 503. */
  maxRestarts?: number | undefined;
  /** Most retries of one backend fetch (a hook returning 'retry'; Varnish's max_retries, default 4). */
  maxRetries?: number | undefined;
  /** How far the fetch of an unstored body may run ahead of its slowest client (default 1 MiB). */
  transitBytes?: number | undefined;
  /** Adaptive streaming threshold, bytes: a body with Content-Length below it is delivered whole; an unknown-length
   * body starts once this many bytes arrived or it ended (default 0: always stream). */
  streamMinBytes?: number | undefined;
  /**
   * A fetch whose body has had no reader for this long is abandoned, nothing of it kept (default 30 s): an origin that
   * never ends cannot hold a connection once every client left. A fetch that finishes within it fills the cache.
   */
  orphanFetchTimeoutMs?: number | undefined;
  /** Transaction log (varnishlog-style); none when undefined. */
  txlog?: TxLog | undefined;
  /** Addresses allowed to send the PURGE method (default none: PURGE gets 405). */
  purgeAllow?: string[] | undefined;
  /** A CONNECT tunnel where neither side sent a byte for this long is closed, both sides (default 5 min). */
  tunnelIdleTimeoutMs?: number | undefined;
  /** Objects the ban sweeper tests per 100 ms tick (default 1000). */
  banLurkBatch?: number | undefined;
  /** Most ranges honoured in one request; more and the Range is ignored (default 16). */
  maxRanges?: number | undefined;
  /**
   * The slicer: objects of GET/HEAD requests whose URL matches `match` (default: all) are served from segments of
   * `sizeBytes` fetched with origin Range requests; with `minBytes`, only objects of at least that many bytes, decided
   * from the response. The sliceSize hook (on arrival) and the upstream hooks' `slicer` decide per request instead.
   */
  slice?: SliceOptions | undefined;
  /**
   * ESI (objects the upstreamResponseFilter hook marks `doEsi`): `maxDepth` of nested includes (default 5, Varnish's
   * max_esi_depth); `includeOnError` (default false, Varnish's feature esi_include_onerror): an include answered other
   * than 200/204 is left out, and one without `onerror="continue"` cuts the page off.
   */
  esi?: { maxDepth?: number | undefined; includeOnError?: boolean | undefined } | undefined;
  /**
   * Limits on request bodies: no byte for `idleTimeoutMs` (default 20 s) or slower than `minBytesPerSec` (default
   * 500) over each `rateWindowMs` (default 10 s) gets 408; over `maxBytes` (default 100 MiB) gets 413.
   */
  requestBody?: { idleTimeoutMs?: number | undefined; minBytesPerSec?: number | undefined; rateWindowMs?: number | undefined; maxBytes?: number | undefined } | undefined;
  /** Longest wait for a client to take any byte of its response (its socket buffer full) before the connection is
   * cut, ms (default 60 s, as Varnish's idle_send_timeout): a client that stops reading cannot hold a fetch forever. */
  sendTimeoutMs?: number | undefined;
  /**
   * Client reads into one shared buffer (http1/read-buffer.ts), prepared hits written straight to the socket's handle
   * (http1/direct-write.ts); default true. False: 'data' reads, Writable writes (same behaviour, no Node internals).
   */
  sharedReadBuffer?: boolean | undefined;
  directWrites?: boolean | undefined;
  /** Clock in epoch ms (tests may inject one). */
  now?: (() => number) | undefined;
  /** Name used in Via and Cache-Status (default "sluice"). */
  name?: string | undefined;
  /** Operational log lines (backend failures, bad requests). Default: silent. */
  onLog?: ((line: LogLine) => void) | undefined;
  /**
   * Called with the size of each body piece sent from an unstored object (pass, hit-for-miss, too large: what
   * `transit_bodybytes` counts), whose socket read buffer is garbage once sent. `sluice proxy` runs a young GC from it.
   */
  onTransitBytes?: ((bytes: number) => void) | undefined;
}


export class Proxy<Ctx = Record<string, unknown>> {
  readonly stats: Stats = createStats();
  /** Request duration and time to first byte, by outcome (for /metrics). */
  readonly durations = new Histogram();
  readonly ttfb = new Histogram();
  readonly store: MemoryStore;
  readonly server: Http1Server;
  private readonly upstream: Upstream;
  private env: ProxyEnv<Ctx>;
  private readonly txlog: TxLog | undefined;
  private readonly lurkTimer: NodeJS.Timeout;
  private readonly inFlight = new InFlight();
  /** The steps bound to the current environment; a request keeps the table it started with across a reload. */
  private steps: StepTable<Ctx>;
  private opts: ProxyOptions<Ctx>;

  constructor(opts: ProxyOptions<Ctx>) {
    this.upstream = opts.upstream;
    this.txlog = opts.txlog;
    this.store = new MemoryStore(opts.storageBytes ?? 256 * 1024 * 1024, this.stats);
    this.env = makeEnv(opts, this.stats, this.store);
    const lurkBatch = opts.banLurkBatch ?? 1000;
    this.lurkTimer = setInterval(() => this.store.lurk(lurkBatch), 100);
    this.lurkTimer.unref();
    const env = this.env;
    this.steps = stepTable(env);
    this.opts = opts;
    const tunnel = this.upstream.tunnel?.bind(this.upstream);
    this.server = new Http1Server((req, res) => this.serve(req, res), {
      onBadRequest: (status, reason, info) => {
        this.stats.client_req_400++;
        env.log({ level: 'warn', event: 'bad-request', message: `${status} ${reason}` });
        logGarbage(this.txlog, status, reason, info);
      },
      onConnect: tunnel === undefined ? undefined : (req, socket, head) => void connectTunnel(tunnel, env, req.target, socket, head),
      onConnection: (c) => logSessionOpened(this.txlog, c),
      bodyClock: { idleMs: opts.requestBody?.idleTimeoutMs, minBytesPerSec: opts.requestBody?.minBytesPerSec, windowMs: opts.requestBody?.rateWindowMs },
      maxBodyBytes: opts.requestBody?.maxBytes, sendTimeoutMs: opts.sendTimeoutMs,
      sharedReadBuffer: opts.sharedReadBuffer, directWrites: opts.directWrites,
    });
  }

  /**
   * Reload (as Varnish's vcl.load + vcl.use): new hooks and cache policy settings apply to requests that start from
   * now on; requests in flight finish with the policy they started with. The cache, counters, connections, listen
   * address, backends and storage budget stay as they are.
   */
  reconfigure(changes: ReloadableOptions<Ctx>): void {
    const opts = { ...this.opts, ...changes };
    const next = makeEnv(opts, this.stats, this.store, this.env.inflight);
    next.sliced = this.env.sliced;
    this.opts = opts;
    this.env = next;
    this.steps = stepTable(next);
  }

  /** Counters now: the proxy's own (varnishstat MAIN.* style), storage, and the upstream's per-backend ones. */
  snapshot(): { main: Stats; storage: { bytes: number; objects: number; maxBytes: number }; backends: Array<Record<string, string | number | boolean>> } {
    return {
      main: { ...this.stats },
      storage: { bytes: this.store.bytes, objects: this.store.objectCount, maxBytes: this.store.maxBytes },
      backends: this.upstream.counters?.() ?? [],
    };
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    return this.server.listen(port, host);
  }

  /** Stops accepting, aborts fetches in flight and closes every client connection. */
  async close(): Promise<void> {
    clearInterval(this.lurkTimer);
    const stop = new ProxyError('CORE_ERR_SHUTDOWN', 'shutdown', { source: 'internal' });
    const abort = (): void => this.env.inflight.forEach((obj) => obj.fetchController.abort(stop));
    abort();
    await this.server.close(true);
    await this.inFlight.idle(2000, abort, this.env.inflight);
  }

  /**
   * Graceful stop (SIGTERM): stops accepting, closes idle keep-alive connections now, lets responses in flight
   * finish (their connections close after them) for at most `timeoutMs`, then cuts what is left and aborts the
   * fetches still running. Resolves with how many connections had to be cut.
   */
  async shutdown(timeoutMs: number): Promise<{ cut: number }> {
    clearInterval(this.lurkTimer);
    const drained = this.server.close(false);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
    const r = await Promise.race([drained.then(() => 'drained' as const), late]);
    clearTimeout(timer);
    const cut = r === 'late' ? this.server.connections.size : 0;
    await this.close();
    return { cut };
  }

  /**
   * Removes every variant stored for `url` on `host` (the key the cacheKey hook gives that request). A promise only
   * when the cacheKey hook returned one.
   */
  purge(url: string, host: string): number | Promise<number> {
    return steps.purgeUrl(this.env, url, host);
  }

  /** Adds a ban (see cache/ban.ts for the syntax); throws BanSyntaxError for a bad expression. */
  ban(expr: string): { id: number; expr: string } {
    const b = this.store.addBan(expr, this.env.now());
    return { id: b.id, expr: b.expr };
  }

  /** The server's handler: nothing a request does may escape its connection (see lastResort). */
  private serve(raw: Http1Request, res: Http1Response): void {
    try {
      const p = this.handle(raw, res);
      if (p !== undefined) this.inFlight.track(p, (e: unknown) => this.lastResort(res, e));
    } catch (e: unknown) {
      this.lastResort(res, e);
    }
  }

  /**
   * One request through the machine. A request whose steps never wait (a hit) is handled and accounted synchronously,
   * without a promise; otherwise the promise of the rest. Failures become responses in failToProxy.
   */
  private handle(raw: Http1Request, res: Http1Response): Promise<void> | undefined {
    const t0 = performance.now();
    const table = this.steps;
    this.stats.client_req++;
    const req: DownstreamRequest = { method: raw.method, url: raw.url, headers: raw.headers, httpVersion: raw.httpVersion, remoteAddress: raw.remoteAddress, restarts: 0 };
    const tx = newTx<Ctx>(res, res, req, this.env.newCtx(), pinSlotOf(raw.connection));
    tx.body = raw.body;
    tx.bodyBytes = raw.bodyBytes;
    if (this.txlog !== undefined && this.txlog.enabled) {
      tx.log = this.txlog.beginRequest(sessionOf(raw.connection));
      logClientRequest(tx.log, raw.connection, raw.remoteAddress, req);
    }
    let walked: Step | Promise<Step>;
    try {
      walked = drive(table, tx, untilDone);
    } catch (e: unknown) {
      return this.failed(tx, raw, res, t0, e);
    }
    if (typeof walked === 'string') {
      this.ended(tx, raw, res, t0);
      return undefined;
    }
    return walked.then(
      () => this.ended(tx, raw, res, t0),
      (e: unknown) => this.failed(tx, raw, res, t0, e),
    );
  }

  private async failed(tx: Tx<Ctx>, raw: Http1Request, res: Http1Response, t0: number, e: unknown): Promise<void> {
    try {
      tx.outcome = 'error';
      await this.failToProxy(tx, e);
    } finally {
      this.ended(tx, raw, res, t0);
    }
  }

  /** The request's end: its log record and the latency histograms. */
  private ended(tx: Tx<Ctx>, raw: Http1Request, res: Http1Response, t0: number): void {
    if (tx.log !== undefined) logRequestEnd(tx.log, raw.headBytes, raw.bodyBytes(), res);
    this.durations.observe(tx.outcome, (performance.now() - t0) / 1000);
    if (res.headSentAtMs > 0) this.ttfb.observe(tx.outcome, (res.headSentAtMs - t0) / 1000);
  }

  /** The one place errors become client responses: a status if nothing was sent yet, otherwise a cut connection. */
  private async failToProxy(tx: Tx<Ctx>, e: unknown): Promise<void> {
    if (tx.signal.aborted) return;
    if (!tx.res.committed) {
      const status = e instanceof ProxyError && e.status !== undefined ? e.status : 503;
      this.env.log({ level: 'error', event: 'internal', message: errorMessage(e), url: tx.req.url });
      await writeSynth(this.env, tx, { status }, false);
    } else {
      tx.res.destroy();
    }
  }

  /**
   * A fault that escaped the request's own error handling (a bug, not an input): logged, that one connection cut,
   * the process and every other client go on.
   */
  private lastResort(res: Http1Response, e: unknown): void {
    this.env.log({ level: 'error', event: 'internal', message: `request handling failed: ${errorMessage(e)}` });
    res.destroy();
  }
}

/** Default keep (RFC profile): a day, bounded by the storage budget. */
export const DEFAULT_KEEP_SEC = 86_400;

/** What a reload may change: the policy and the cache settings, not addresses, backends or storage. */
export type ReloadableOptions<Ctx> = Pick<
  ProxyOptions<Ctx>,
  | 'hooks'
  | 'defaultTtlSec'
  | 'defaultGraceSec'
  | 'defaultKeepSec'
  | 'staleIfDisconnected'
  | 'profile'
  | 'cacheTargets'
  | 'hitForMissSec'
  | 'maxRestarts'
  | 'maxRetries'
  | 'transitBytes'
  | 'streamMinBytes'
  | 'maxRanges'
  | 'slice'
  | 'esi'
  | 'purgeAllow'
  | 'orphanFetchTimeoutMs'
>;

/** The step table of one environment (Varnish's cnt_* functions bound to a loaded VCL). */
function stepTable<Ctx>(env: ProxyEnv<Ctx>): StepTable<Ctx> {
  const esi = esiDelivery(env, (parent, inc, level) => esiRequest(env, table, parent, inc, level));
  const table: StepTable<Ctx> = {
    recv: (tx) => steps.recv(env, tx),
    lookup: (tx) => steps.lookup(env, tx),
    miss: (tx) => steps.miss(env, tx),
    pass: (tx) => steps.pass(env, tx),
    deliver: (tx) => deliverOrSlice(tx, () => deliver(env, tx, esi)),
    synth: (tx) => steps.synth(env, tx),
    restart: (tx) => restart(env, tx),
    slice: (tx) => slice(env, tx, (parent, index, size, gen) => segmentRequest(env, table, parent, index, size, gen)),
  };
  return table;
}

/** The environment every room shares, from the options. */
function makeEnv<Ctx>(opts: ProxyOptions<Ctx>, stats: Stats, store: Store, inflight = new Set<CacheObject>()): ProxyEnv<Ctx> {
  const hooks = opts.hooks ?? {};
  const name = opts.name ?? 'sluice';
  const freshness: FreshnessOptions = { defaultTtlSec: opts.defaultTtlSec, heuristicFraction: 0.1, heuristicMaxSec: 86_400 };
  const newCtx = (): Ctx => hooks.newCtx?.() ?? ({} as Ctx);
  const builtinKey = lastBuiltinKey();
  return {
    stats,
    store,
    upstream: opts.upstream,
    hooks,
    now: opts.now ?? Date.now,
    name,
    via: `1.1 ${name}`,
    freshness,
    rules: cacheRulesOf(opts, name),
    graceSec: opts.defaultGraceSec ?? 0,
    keepSec: opts.defaultKeepSec ?? DEFAULT_KEEP_SEC,
    staleIfDisconnected: opts.staleIfDisconnected ?? true,
    hitForMissSec: opts.hitForMissSec ?? 120,
    maxRestarts: opts.maxRestarts ?? 4,
    maxRetries: opts.maxRetries ?? 4,
    transitBytes: opts.transitBytes ?? 1024 * 1024,
    maxRanges: opts.maxRanges ?? 16,
    streamMinBytes: opts.streamMinBytes ?? 0,
    orphanFetchMs: opts.orphanFetchTimeoutMs ?? 30_000,
    slicing: opts.slice,
    esiMaxDepth: opts.esi?.maxDepth ?? 5,
    esiIncludeOnError: opts.esi?.includeOnError ?? false,
    purgeAllow: new Set(opts.purgeAllow ?? []),
    tunnelIdleTimeoutMs: opts.tunnelIdleTimeoutMs ?? 5 * 60_000,
    txlog: opts.txlog,
    log: opts.onLog ?? (() => undefined),
    onTransitBytes: opts.onTransitBytes,
    inflight,
    sliced: false,
    newCtx,
    keyOf: (req, ctx) => {
      const key = hooks.cacheKey?.(req, ctx);
      if (key instanceof Promise) return key.then((k) => fullKey(req, k));
      if (key === undefined && req.segment === undefined) return builtinKey(req);
      return fullKey(req, key);
    },
  };
}

/** The storage rules of the options: the profile, its target list (or the one given), our device token. */
function cacheRulesOf<Ctx>(opts: ProxyOptions<Ctx>, name: string): CacheRules {
  const profile = opts.profile ?? 'rfc';
  const targets = (opts.cacheTargets ?? (profile === 'rfc' ? DEFAULT_TARGETS : [])).map((t) => t.toLowerCase());
  return { profile, targets, deviceToken: name };
}

/** The pin slot of a client connection, created on its first request and released when it closes. */
function pinSlotOf(conn: ConnectionContext): PinSlot {
  let slot = conn.values.get('pin') as PinSlot | undefined;
  if (slot === undefined) {
    const created: PinSlot = { pinned: false, closed: false, data: undefined, onClose: undefined };
    conn.values.set('pin', created);
    conn.onClose.add(() => {
      created.closed = true;
      created.onClose?.();
    });
    slot = created;
  }
  return slot;
}

/** Builds a proxy; call `listen` to serve. */
export function createProxy<Ctx = Record<string, unknown>>(opts: ProxyOptions<Ctx>): Proxy<Ctx> {
  return new Proxy(opts);
}
