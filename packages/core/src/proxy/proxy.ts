import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CacheObject, type ObjectReader } from '../cache/cache-object.js';
import { MemoryStore } from '../cache/memory-store.js';
import { formatCacheStatus, type CacheStatus } from '../http/cache-status.js';
import { freshnessLifetime, initialAgeSec, type FreshnessOptions } from '../http/freshness.js';
import { appendHeader, cloneHeaders, getHeader, stripHopByHop, type HeaderMap } from '../http/headers.js';
import { varyFields, varySignature } from '../http/vary.js';
import { hasValidator, mergeNotModified, notModifiedHeaders, revalidationHeaders } from '../http/conditional.js';
import { contentRange } from '../http/range.js';
import { BodyCursor, planDelivery, type DeliveryPlan } from './delivery-plan.js';
import { metaHeaders, metaKeyOf, parseContentRange, SegmentMismatchError, segmentKeyOf, segmentMismatch, segmentRangeHeader, segmentsFor } from './slicer.js';
import { cacheControlOf, deltaSeconds } from '../http/cache-control.js';
import { errorMessage, ProxyError } from '../errors.js';
import { Http1Server, type BadRequestInfo, type ConnectionContext, type Http1Request } from '../http1/server.js';
import { serializeHeaders, type Http1Response } from '../http1/response.js';
import { createStats, type Stats } from '../stats.js';
import type { Transaction, TxLog } from '../txlog/txlog.js';

/** Where a connection keeps its Session transaction. */
const SESSION_KEY = 'txlog.session';
import type { PinSlot, Upstream, UpstreamRequest } from '../upstream.js';
import {
  builtinBackendResponse,
  builtinCacheKey,
  builtinRecv,
  type BackendResponse,
  type DeliveryResponse,
  type DownstreamRequest,
  type ProxyHooks,
  type RecvAction,
} from './hooks.js';

/**
 * The request state machine, in the spirit of Varnish's cache_req_fsm.c. Each step does one thing and names the next
 * step; `run` is the only driver and steps never call each other.
 *
 *   recv -> lookup -> (hit) ------------------------------> deliver
 *                  -> (busy: wait on the fetch, look up again)
 *                  -> (miss | hit-for-miss) -> miss -> deliver   (fetch runs as its own task)
 *                  -> (hit-for-pass) -> pass
 *        -> pass | pipe -> pass -> deliver
 *        -> synth
 *        -> slice (large objects: segment subrequests, each recv -> lookup -> miss, stitched; see slicer.ts)
 *
 * The fetch (origin -> CacheObject) is a separate task from delivery (CacheObject -> client), as Varnish's backend
 * and client threads are: a client leaving never stops a fetch that fills the cache, and a slow client never slows
 * the fetch.
 */
export type Step = 'recv' | 'lookup' | 'miss' | 'pass' | 'deliver' | 'synth' | 'slice' | 'done';

/** Settings of one proxy instance. Durations are seconds, sizes bytes. */
export interface ProxyOptions<Ctx> {
  upstream: Upstream;
  hooks?: ProxyHooks<Ctx> | undefined;
  /** Memory storage budget for cached objects (default 256 MiB). */
  storageBytes?: number | undefined;
  /** TTL for responses without explicit freshness (Varnish default_ttl). Unset: RFC 9111 heuristics only. */
  defaultTtlSec?: number | undefined;
  /** Grace added to every stored object (default 10 s). */
  defaultGraceSec?: number | undefined;
  /** Keep added to every stored object (default 0 s). */
  defaultKeepSec?: number | undefined;
  /** How long an uncacheable key stays hit-for-miss (default 120 s, as Varnish). */
  hitForMissSec?: number | undefined;
  /** How far the fetch of an unstored body may run ahead of its slowest client (default 1 MiB). */
  transitBytes?: number | undefined;
  /**
   * Adaptive streaming threshold, bytes: a body with Content-Length below it is delivered whole; an unknown-length
   * body starts once this many bytes arrived or it ended (default 0: always stream).
   */
  streamMinBytes?: number | undefined;
  /** Transaction log (varnishlog-style); none when undefined. */
  txlog?: TxLog | undefined;
  /** Addresses allowed to send the PURGE method (default none: PURGE gets 405). */
  purgeAllow?: string[] | undefined;
  /** Objects the ban sweeper tests per 100 ms tick (default 1000). */
  banLurkBatch?: number | undefined;
  /** Most ranges honoured in one request; more and the Range is ignored (default 16). */
  maxRanges?: number | undefined;
  /**
   * The slicer: GET/HEAD requests whose URL matches `match` (default: all) are served from segments of `sizeBytes`
   * fetched with origin Range requests. The sliceSize hook decides per request instead. Off by default.
   */
  slice?: { sizeBytes: number; match?: RegExp | undefined } | undefined;
  /** Clock in epoch ms (tests may inject one). */
  now?: (() => number) | undefined;
  /** Name used in Via and Cache-Status (default "sluice"). */
  name?: string | undefined;
  /** Operational log lines (backend failures, bad requests). Default: silent. */
  onLog?: ((line: LogLine) => void) | undefined;
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  event: string;
  message: string;
  url?: string;
}

interface Tx<Ctx> {
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
  key: string;
  obj: CacheObject | undefined;
  status: CacheStatus;
  synth: { status: number; body?: string; headers?: HeaderMap } | undefined;
  closeAfter: boolean;
  coalesced: boolean;
  /** An expired object for this request, kept for revalidation or stale-if-error. */
  stale: CacheObject | undefined;
  /** This request's transaction in the log (undefined when logging is off). */
  log: Transaction | undefined;
}

/** A transaction's starting state: nothing looked up, no body, not logged. */
function newTx<Ctx>(res: Http1Response, signalFrom: { readonly signal: AbortSignal }, req: DownstreamRequest, ctx: Ctx, pin: PinSlot): Tx<Ctx> {
  return {
    // The client's response (or, for a subrequest, its parent) owns the signal; read lazily, as most hits never wait.
    get signal() {
      return signalFrom.signal;
    },
    req,
    body: null,
    bodyBytes: () => 0,
    pin,
    res,
    ctx,
    key: '',
    obj: undefined,
    status: {},
    synth: undefined,
    closeAfter: false,
    coalesced: false,
    stale: undefined,
    log: undefined,
  };
}

/** The request line and headers as received (varnishlog's ReqMethod, ReqURL, ReqProtocol, ReqHeader). */
function logRequest(t: Transaction, req: DownstreamRequest): void {
  t.add('ReqMethod', req.method);
  t.add('ReqURL', req.url);
  t.add('ReqProtocol', `HTTP/${req.httpVersion}`);
  t.headers('ReqHeader', req.headers);
}

const NO_BODY_STATUS = (s: number): boolean => s === 204 || s === 304 || (s >= 100 && s < 200);

/** Request headers that only make sense between the client and the cache: a miss fetches the whole object. */
const MISS_STRIP = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'];

export class Proxy<Ctx = Record<string, unknown>> {
  readonly stats: Stats = createStats();
  readonly store: MemoryStore;
  readonly server: Http1Server;
  private readonly upstream: Upstream;
  private readonly hooks: ProxyHooks<Ctx>;
  private readonly now: () => number;
  private readonly name: string;
  private readonly via: string;
  private readonly freshness: FreshnessOptions;
  private readonly slicing: ProxyOptions<Ctx>['slice'];
  /** Set once anything was sliced: purges then also look for segment keys. */
  private sliced = false;
  private readonly graceSec: number;
  private readonly keepSec: number;
  private readonly hitForMissSec: number;
  private readonly transitBytes: number;
  private readonly maxRanges: number;
  private readonly streamMinBytes: number;
  private readonly purgeAllow: Set<string>;
  private readonly txlog: TxLog | undefined;
  private readonly lurkTimer: NodeJS.Timeout;
  private readonly log: (line: LogLine) => void;
  private readonly inflight = new Set<CacheObject>();
  private readonly steps: Record<Exclude<Step, 'done'>, (tx: Tx<Ctx>) => Step | Promise<Step>>;

  constructor(opts: ProxyOptions<Ctx>) {
    this.upstream = opts.upstream;
    this.hooks = opts.hooks ?? {};
    this.now = opts.now ?? Date.now;
    this.name = opts.name ?? 'sluice';
    this.via = `1.1 ${this.name}`;
    this.freshness = { defaultTtlSec: opts.defaultTtlSec, heuristicFraction: 0.1, heuristicMaxSec: 86_400 };
    this.graceSec = opts.defaultGraceSec ?? 10;
    this.keepSec = opts.defaultKeepSec ?? 0;
    this.hitForMissSec = opts.hitForMissSec ?? 120;
    this.transitBytes = opts.transitBytes ?? 1024 * 1024;
    this.maxRanges = opts.maxRanges ?? 16;
    this.slicing = opts.slice;
    this.streamMinBytes = opts.streamMinBytes ?? 0;
    this.purgeAllow = new Set(opts.purgeAllow ?? []);
    this.txlog = opts.txlog;
    const lurkBatch = opts.banLurkBatch ?? 1000;
    this.lurkTimer = setInterval(() => this.store.lurk(lurkBatch), 100);
    this.lurkTimer.unref();
    this.log = opts.onLog ?? (() => undefined);
    this.store = new MemoryStore(opts.storageBytes ?? 256 * 1024 * 1024, this.stats);
    this.steps = {
      recv: (tx) => this.recv(tx),
      lookup: (tx) => this.lookup(tx),
      miss: (tx) => this.miss(tx),
      pass: (tx) => this.pass(tx),
      deliver: (tx) => this.deliver(tx),
      synth: (tx) => this.synthStep(tx),
      slice: (tx) => this.slice(tx),
    };
    this.server = new Http1Server((req, res) => this.handle(req, res).catch((e: unknown) => this.lastResort(res, e)), {
      onBadRequest: (status, reason, info) => {
        this.stats.client_req_400++;
        this.log({ level: 'warn', event: 'bad-request', message: `${status} ${reason}` });
        this.logGarbage(status, reason, info);
      },
      onConnect: this.upstream.tunnel === undefined ? undefined : (req, socket, head) => void this.connect(req.target, socket, head),
      onConnection: (c) => this.sessionOpened(c),
    });
  }

  /**
   * A request the HTTP parser refused is a transaction too, as in Varnish: what arrived as `HttpGarbage` (quoted,
   * bytes outside printable ASCII as %XX, cut at 254), the refusal as `RespStatus`.
   */
  private logGarbage(status: number, reason: string, info: BadRequestInfo): void {
    if (this.txlog === undefined || !this.txlog.enabled) return;
    const c = info.connection;
    const t = this.txlog.beginRequest((c.values.get(SESSION_KEY) as Transaction | undefined) ?? 0);
    t.timestamp('Start');
    t.add('ReqStart', `${c.remoteAddress} ${c.remotePort} a0`);
    let garbage = '"';
    for (const b of info.received) garbage += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`;
    t.add('HttpGarbage', `${garbage.slice(0, 253)}"`);
    t.add('BogoHeader', reason);
    t.add('RespProtocol', 'HTTP/1.1');
    t.add('RespStatus', String(status));
    t.add('RespReason', info.reasonPhrase);
    const body = `${status} ${reason}\n`.length;
    t.add('ReqAcct', `${info.received.length} 0 ${info.received.length} ${info.responseBytes - body} ${body} ${info.responseBytes}`);
    t.timestamp('Resp');
    t.end();
  }

  /** A Session transaction per client connection while the log is wanted; its requests link to it. */
  private sessionOpened(c: ConnectionContext): void {
    const txlog = this.txlog;
    if (txlog === undefined || !txlog.enabled) return;
    const sess = txlog.beginSession(c);
    sess.timestamp('Start');
    c.values.set(SESSION_KEY, sess);
    c.onClose.add(() => {
      sess.add('SessClose', `${c.closeReason ?? 'REM_CLOSE'} ${((Date.now() - c.openedMs) / 1000).toFixed(3)}`);
      sess.end();
    });
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
    for (const obj of this.inflight) obj.fetchController.abort(new ProxyError('CORE_ERR_SHUTDOWN', 'shutdown', { source: 'internal' }));
    await this.server.close(true);
  }

  private async handle(raw: Http1Request, res: Http1Response): Promise<void> {
    this.stats.client_req++;
    const req: DownstreamRequest = { method: raw.method, url: raw.url, headers: raw.headers, httpVersion: raw.httpVersion, remoteAddress: raw.remoteAddress };
    const tx = newTx<Ctx>(res, res, req, this.hooks.newCtx?.() ?? ({} as Ctx), pinSlotOf(raw.connection));
    tx.body = raw.body;
    tx.bodyBytes = raw.bodyBytes;
    if (this.txlog !== undefined && this.txlog.enabled) {
      const c = raw.connection;
      const t = this.txlog.beginRequest((c.values.get(SESSION_KEY) as Transaction | undefined) ?? 0);
      tx.log = t;
      t.timestamp('Start');
      t.timestamp('Req');
      t.add('ReqStart', `${raw.remoteAddress} ${c.remotePort} a0`);
      logRequest(t, req);
      // As Varnish logs it: the X-Forwarded-For the proxy sends on, as the last header before policy runs.
      const xff = getHeader(raw.headers, 'x-forwarded-for');
      if (xff !== undefined) t.add('ReqUnset', `x-forwarded-for: ${xff}`);
      t.add('ReqHeader', `X-Forwarded-For: ${xff === undefined ? raw.remoteAddress : `${xff}, ${raw.remoteAddress}`}`);
    }
    let step: Step = 'recv';
    try {
      // Steps that do not wait return a Step directly: a hit runs without a promise per step.
      while (step !== 'done') {
        const next = this.steps[step](tx);
        step = typeof next === 'string' ? next : await next;
      }
    } catch (e: unknown) {
      this.failToProxy(tx, e);
    } finally {
      if (tx.log !== undefined) {
        const body = raw.bodyBytes();
        tx.log.add('ReqAcct', `${raw.headBytes} ${body} ${raw.headBytes + body} ${res.headerBytes} ${res.bodyBytes} ${res.headerBytes + res.bodyBytes}`);
        tx.log.timestamp('Resp');
        tx.log.end();
      }
    }
  }

  /**
   * CONNECT host:port: a TCP tunnel through the upstream's tunnel(), which decides what is allowed. Bytes are relayed
   * both ways and counted; either side closing closes the other.
   */
  private async connect(target: string, client: Socket, head: Buffer): Promise<void> {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(target);
    const answer = (status: number, reason: string): void => {
      client.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    };
    if (m === null || Number(m[2]) > 65535) {
      this.stats.client_req_400++;
      return answer(400, 'Bad Request');
    }
    const host = (m[1] as string).replace(/^\[|\]$/g, '');
    const port = Number(m[2]);
    const ac = new AbortController();
    client.once('close', () => ac.abort());
    let upstream: Duplex;
    try {
      upstream = await (this.upstream.tunnel as NonNullable<Upstream['tunnel']>)(host, port, { signal: ac.signal });
    } catch (e: unknown) {
      const status = typeof (e as { status?: unknown }).status === 'number' ? (e as { status: number }).status : 502;
      if (status === 403) this.stats.tunnel_denied++;
      this.log({ level: status === 403 ? 'warn' : 'error', event: 'connect', message: `CONNECT ${target}: ${errorMessage(e)}` });
      return answer(status, http.STATUS_CODES[status] ?? 'Error');
    }
    this.stats.tunnel_opened++;
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) {
      this.stats.tunnel_bytes_up += head.length;
      upstream.write(head);
    }
    client.on('data', (d: Buffer) => (this.stats.tunnel_bytes_up += d.length));
    upstream.on('data', (d: Buffer) => (this.stats.tunnel_bytes_down += d.length));
    void pipeline(client, upstream).catch(() => undefined);
    void pipeline(upstream, client).catch(() => undefined);
  }

  /**
   * A fault that escaped the request's own error handling (a bug, not an input): logged, that one connection cut,
   * the process and every other client go on.
   */
  private lastResort(res: Http1Response, e: unknown): void {
    this.log({ level: 'error', event: 'internal', message: `request handling failed: ${errorMessage(e)}` });
    res.destroy();
  }

  /** The one place errors become client responses: a status if nothing was sent yet, otherwise a cut connection. */
  private failToProxy(tx: Tx<Ctx>, e: unknown): void {
    if (tx.signal.aborted) return;
    if (!tx.res.committed) {
      const status = e instanceof ProxyError && e.status !== undefined ? e.status : 503;
      this.log({ level: 'error', event: 'internal', message: errorMessage(e), url: tx.req.url });
      this.writeSynth(tx, { status });
    } else {
      tx.res.destroy();
    }
  }

  // --- steps -------------------------------------------------------------------------------------------------

  private recv(tx: Tx<Ctx>): Step | Promise<Step> {
    const req = tx.req;
    if (!normaliseTarget(req) || !hostOk(req)) {
      tx.log?.add('VCL_call', 'RECV');
      tx.log?.add('VCL_return', 'synth');
      this.stats.client_req_400++;
      tx.synth = { status: 400 };
      tx.closeAfter = true;
      return 'synth';
    }
    if (req.method === 'PURGE') return this.purgeRequest(tx);
    if (tx.pin.pinned) {
      // A connection pinned by NTLM/Negotiate: always passed, never cached, over its own origin connection.
      tx.status = { fwd: 'uri-miss', detail: 'pinned' };
      return 'pass';
    }
    const fromHook = this.hooks.requestFilter?.(req, tx.ctx);
    if (fromHook instanceof Promise) return fromHook.then((a) => this.recvAction(tx, a ?? builtinRecv(req)));
    return this.recvAction(tx, fromHook ?? builtinRecv(req));
  }

  /** Hit / HitMiss / HitPass and the VCL_call that follows, as varnishlog shows a lookup. */
  private logLookup(t: Transaction, r: ReturnType<MemoryStore['lookup']>): void {
    const nowMs = this.now();
    const remaining = (o: CacheObject): string => (o.ttlSec - (o.initialAgeSec + (nowMs - o.responseTimeMs) / 1000)).toFixed(6);
    switch (r.kind) {
      case 'hit':
      case 'grace':
        t.add('Hit', `${r.obj.fetchVxid} ${remaining(r.obj)} ${r.obj.graceSec.toFixed(6)} ${r.obj.keepSec.toFixed(6)}`);
        t.add('VCL_call', 'HIT');
        t.add('VCL_return', 'deliver');
        break;
      case 'busy':
        t.timestamp('Waitinglist');
        break;
      case 'miss':
        t.add('VCL_call', 'MISS');
        t.add('VCL_return', 'fetch');
        break;
      case 'hit-for-miss':
        t.add('HitMiss', `0 ${this.hitForMissSec.toFixed(6)}`);
        t.add('VCL_call', 'MISS');
        t.add('VCL_return', 'fetch');
        break;
      case 'hit-for-pass':
        t.add('HitPass', `0 ${this.hitForMissSec.toFixed(6)}`);
        t.add('VCL_call', 'PASS');
        t.add('VCL_return', 'fetch');
        break;
    }
  }

  /** The cache key of a request: the cacheKey hook's, else builtin (Host + URL). Also the key directors hash. */
  private keyOf(req: DownstreamRequest, ctx: Ctx): string {
    const key = this.hooks.cacheKey?.(req, ctx) ?? builtinCacheKey(req);
    return req.segment === undefined ? key : segmentKeyOf(key, req.segment.size, req.segment.index);
  }

  /** HTTP PURGE from an allowed address: removes every variant of the request's cache key. */
  private purgeRequest(tx: Tx<Ctx>): Step {
    const addr = tx.req.remoteAddress.replace(/^::ffff:/, '');
    if (!this.purgeAllow.has(addr)) {
      tx.synth = { status: 405, body: 'PURGE not allowed from this address\n' };
      return 'synth';
    }
    const n = this.purge(tx.req.url, getHeader(tx.req.headers, 'host') ?? '');
    tx.synth = { status: 200, body: `Purged ${n}\n` };
    tx.status = { detail: 'purge' };
    return 'synth';
  }

  /** Removes every variant stored for `url` on `host` (the key the cacheKey hook gives that request). */
  purge(url: string, host: string): number {
    const req: DownstreamRequest = { method: 'GET', url, headers: { host }, httpVersion: '1.1', remoteAddress: '' };
    const key = this.keyOf(req, this.hooks.newCtx?.() ?? ({} as Ctx));
    return this.store.purgeKey(key) + (this.sliced ? this.store.purgePrefix(`${key}\0slice`) : 0);
  }

  /** Adds a ban (see cache/ban.ts for the syntax); throws BanSyntaxError for a bad expression. */
  ban(expr: string): { id: number; expr: string } {
    const b = this.store.addBan(expr, this.now());
    return { id: b.id, expr: b.expr };
  }

  private recvAction(tx: Tx<Ctx>, action: RecvAction): Step {
    if (tx.log !== undefined) {
      tx.log.add('VCL_call', 'RECV');
      tx.log.add('VCL_return', action === 'lookup' ? 'hash' : typeof action === 'string' ? action : 'synth');
    }
    if (action === 'lookup') return this.sliceSizeOf(tx) === undefined ? 'lookup' : 'slice';
    if (action === 'pass') {
      tx.log?.add('VCL_call', 'PASS');
      tx.log?.add('VCL_return', 'fetch');
      tx.status = { fwd: 'uri-miss', detail: 'pass' };
      return 'pass';
    }
    if (action === 'pipe') {
      // Pipe is approximated by a pass on a connection that closes afterwards.
      tx.log?.add('VCL_call', 'PIPE');
      tx.log?.add('VCL_return', 'pipe');
      tx.status = { fwd: 'uri-miss', detail: 'pipe' };
      tx.closeAfter = true;
      return 'pass';
    }
    tx.synth = action.synth;
    return 'synth';
  }

  private lookup(tx: Tx<Ctx>): Step | Promise<Step> {
    tx.key = this.keyOf(tx.req, tx.ctx);
    const r = this.store.lookup(tx.key, tx.req.headers, this.now());
    if (tx.log !== undefined) this.logLookup(tx.log, r);
    switch (r.kind) {
      case 'hit':
        this.stats.cache_hit++;
        tx.obj = r.obj;
        tx.status = tx.coalesced ? { hit: true, detail: 'coalesced' } : { hit: true };
        return 'deliver';
      case 'busy':
        // The waiting list: park until the fetch has decided its headers, then look up again.
        this.stats.busy_sleep++;
        return r.obj.waitState('stream', tx.signal).then(() => {
          this.stats.busy_wakeup++;
          tx.coalesced = true;
          return 'lookup' as const;
        });
      case 'grace': {
        // Serve the stale object now; refresh it in the background unless a fetch is already running.
        this.stats.cache_hit++;
        this.stats.cache_hit_grace++;
        tx.obj = r.obj;
        tx.status = { hit: true, detail: 'grace' };
        if (r.fetch !== undefined) {
          this.stats.bgfetch++;
          const bereq = this.missRequest(tx, false);
          makeConditional(bereq, r.obj);
          void this.fetch(r.fetch, bereq, tx, false, r.obj);
        }
        return 'deliver';
      }
      case 'miss':
        this.stats.cache_miss++;
        tx.obj = r.obj;
        tx.stale = r.stale;
        tx.status = { fwd: r.reason === 'expired' ? 'miss' : r.reason };
        return 'miss';
      case 'hit-for-miss':
        this.stats.cache_hitmiss++;
        tx.obj = r.obj;
        tx.status = { fwd: 'uri-miss', detail: 'hit-for-miss' };
        return 'miss';
      case 'hit-for-pass':
        this.stats.cache_hitpass++;
        tx.status = { fwd: 'uri-miss', detail: 'hit-for-pass' };
        return 'pass';
    }
  }

  private miss(tx: Tx<Ctx>): Step {
    const obj = tx.obj as CacheObject;
    // A hit-for-miss fetch cannot be stored as a whole object anyway: it forwards Range and conditionals like a pass.
    const bereq = this.missRequest(tx, tx.status.detail === 'hit-for-miss');
    const stale = tx.stale;
    if (stale !== undefined && makeConditional(bereq, stale)) tx.status = { ...tx.status, fwd: 'stale' };
    void this.fetch(obj, bereq, tx, false, stale);
    return 'deliver';
  }

  private pass(tx: Tx<Ctx>): Step {
    this.stats.s_pass++;
    const obj = new CacheObject(tx.key);
    tx.obj = obj;
    const headers = stripHopByHop(tx.req.headers, { keepContentLength: true });
    this.addForwarding(headers, tx.req);
    if (tx.body === null) delete headers['content-length'];
    // Expect: 100-continue is answered by our own server when the fetch starts reading the body (as nginx does);
    // it is not forwarded.
    delete headers['expect'];
    const bereq: UpstreamRequest = {
      method: tx.req.method,
      path: tx.req.url,
      headers,
      body: tx.body,
      key: tx.key !== '' ? tx.key : this.keyOf(tx.req, tx.ctx),
      pin: tx.pin,
    };
    void this.fetch(obj, bereq, tx, true);
    return 'deliver';
  }

  private deliver(tx: Tx<Ctx>): Step | Promise<Step> {
    const obj = tx.obj as CacheObject;
    const chunks = obj.stored === true ? obj.completeChunks : undefined;
    if (chunks !== undefined && !this.needsPlan(tx, obj)) {
      // Complete stored object, plain request: Content-Length, head and body in one write; no reader, no waiting.
      this.writeHead(tx, obj);
      this.endComplete(tx, obj, chunks);
      return 'done';
    }
    return this.deliverPlanned(tx, obj);
  }

  /**
   * Ends a response whose head is written with the whole body of a complete object: its chunks (one Buffer once
   * joined) leave under one cork, no reader, no copy. HEAD and bodiless statuses get no body.
   */
  private endComplete(tx: Tx<Ctx>, obj: CacheObject, chunks: readonly Buffer[]): void {
    if (tx.req.method === 'HEAD' || NO_BODY_STATUS(obj.status)) {
      tx.res.end();
      return;
    }
    this.stats.s_resp_bodybytes += obj.length;
    tx.res.endChunks(chunks);
  }

  /** Whether the request carries anything (a condition, a range) that may change what is delivered. */
  private needsPlan(tx: Tx<Ctx>, obj: CacheObject): boolean {
    const h = tx.req.headers;
    return obj.status === 200 && (h['range'] !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined);
  }

  /**
   * Delivery in general: waits for the object's headers (and, with doStream off, its body), decides full / 304 /
   * range / multipart / 416, then copies the body as it arrives.
   */
  private async deliverPlanned(tx: Tx<Ctx>, obj: CacheObject): Promise<Step> {
    const reader = obj.readable ? obj.openReader() : undefined;
    const cursor = reader === undefined ? undefined : new BodyCursor(obj.read(reader, tx.signal));
    try {
      if (obj.state === 'busy') await obj.waitState('stream', tx.signal);
      if (tx.stale !== undefined && ((obj.state === 'failed' && obj.status === 0) || obj.status >= 500) && this.staleUsableOnError(tx.stale)) {
        // stale-if-error (RFC 5861): the origin failed; the stale object is served instead.
        this.stats.stale_if_error++;
        tx.obj = tx.stale;
        tx.stale = undefined;
        tx.status = { hit: true, detail: 'stale-if-error' };
        return 'deliver';
      }
      if (obj.state === 'failed' && obj.status === 0) return this.fetchFailedSynth(tx, obj);
      if (!obj.doStream && !obj.isFinal) {
        await obj.waitState('finished', tx.signal);
        if (obj.state === 'failed') return this.fetchFailedSynth(tx, obj);
      }
      // Adaptive streaming: a body known to be small is delivered whole (one write, Content-Length); an unknown-length
      // body starts once streamMinBytes arrived or it ended.
      const minBytes = obj.streamMinBytes;
      if (minBytes > 0 && !obj.isFinal) {
        if (obj.expectedLength !== undefined) {
          if (obj.expectedLength < minBytes) await obj.waitState('finished', tx.signal);
        } else {
          while (obj.length < minBytes && !obj.isFinal) await obj.waitChange(tx.signal);
        }
        if (obj.state === 'failed') return this.fetchFailedSynth(tx, obj);
      }
      let plan = this.plan(tx, obj);
      while (plan.kind === 'wait') {
        if (obj.state === 'failed') return this.fetchFailedSynth(tx, obj);
        await obj.waitChange(tx.signal);
        plan = this.plan(tx, obj);
      }
      const res = tx.res;
      let ranges: Array<{ head?: Buffer; start: number; end: number }> = [{ start: 0, end: Number.MAX_SAFE_INTEGER }];
      let tail: Buffer | undefined;
      switch (plan.kind) {
        case 'full':
          this.writeHead(tx, obj);
          break;
        case 'not-modified':
          this.writeHead(tx, obj, { status: 304, headers: { ...notModifiedHeaders(obj.headers), via: this.via }, length: undefined });
          ranges = [];
          break;
        case 'unsatisfiable': {
          const headers = this.deliveryHeaders(obj);
          headers['content-range'] = `bytes */${plan.total}`;
          this.writeHead(tx, obj, { status: 416, headers, length: '0' });
          ranges = [];
          break;
        }
        case 'range': {
          const headers = this.deliveryHeaders(obj);
          headers['content-range'] = contentRange(plan.range, plan.total);
          const length = plan.total === undefined ? undefined : String(plan.range.end - plan.range.start + 1);
          this.writeHead(tx, obj, { status: 206, headers, length });
          ranges = [{ start: plan.range.start, end: plan.range.end }];
          break;
        }
        case 'multipart': {
          const headers = this.deliveryHeaders(obj);
          headers['content-type'] = `multipart/byteranges; boundary=${plan.plan.boundary}`;
          this.writeHead(tx, obj, { status: 206, headers, length: String(plan.plan.length) });
          ranges = plan.plan.parts.map((p) => ({ head: p.head, start: p.range.start, end: p.range.end }));
          tail = plan.plan.tail;
          break;
        }
      }
      if (tx.req.method === 'HEAD' || NO_BODY_STATUS(res.statusCode) || cursor === undefined || ranges.length === 0) {
        res.end();
        return 'done';
      }
      const complete = obj.stored === true ? obj.completeChunks : undefined;
      if (plan.kind === 'full' && complete !== undefined) {
        this.endComplete(tx, obj, complete);
        return 'done';
      }
      // Headers go out at once only when no body byte is there yet; otherwise they leave with the first bytes.
      if (obj.length === 0 && !obj.isFinal) res.flushHeaders();
      try {
        await this.sendBody(tx, ranges, tail, (from, to) => cursor.range(from, to));
      } catch (e: unknown) {
        // The fetch failed mid-body (or the client left): cut the client off so it can tell the body is incomplete
        // (no terminating chunk, or fewer bytes than Content-Length).
        if (!tx.signal.aborted) this.log({ level: 'warn', event: 'stream-cut', message: errorMessage(e), url: tx.req.url });
        res.destroy();
      }
      return 'done';
    } finally {
      await cursor?.close();
      if (reader !== undefined) obj.closeReader(reader);
    }
  }

  /**
   * Writes a planned body: each range (after its multipart part head), then the multipart tail, from `bytes(from, to)`
   * (inclusive offsets), and ends the response. Throws what the source throws; a body that does not add up to the
   * length announced is cut off, never ended cleanly.
   */
  private async sendBody(
    tx: Tx<Ctx>,
    ranges: ReadonlyArray<{ head?: Buffer; start: number; end: number }>,
    tail: Buffer | undefined,
    bytes: (from: number, to: number) => AsyncIterable<Buffer>,
  ): Promise<void> {
    const res = tx.res;
    let sent = 0;
    for (const r of ranges) {
      if (r.head !== undefined) {
        sent += r.head.length;
        if (!res.write(r.head)) await res.drained(tx.signal);
      }
      for await (const chunk of bytes(r.start, r.end)) {
        sent += chunk.length;
        this.stats.s_resp_bodybytes += chunk.length;
        if (!res.write(chunk)) await res.drained(tx.signal);
      }
    }
    if (tail !== undefined) {
      sent += tail.length;
      res.write(tail);
    }
    const announced = res.announcedLength;
    if (announced !== undefined && announced !== sent) {
      this.log({ level: 'error', event: 'length-mismatch', message: `sent ${sent} of ${String(announced)} bytes`, url: tx.req.url });
      res.destroy();
      return;
    }
    res.end();
  }

  private plan(tx: Tx<Ctx>, obj: CacheObject): DeliveryPlan {
    return planDelivery(
      tx.req.method,
      tx.req.headers,
      {
        status: obj.status,
        headers: obj.headers,
        length: obj.length,
        complete: obj.state === 'finished',
        expectedLength: obj.expectedLength,
      },
      { maxRanges: this.maxRanges, boundary: () => `sluice-${randomUUID()}` },
    );
  }

  // --- the slicer --------------------------------------------------------------------------------------------

  /** Segment size for this request when its object is to be sliced, else undefined. */
  private sliceSizeOf(tx: Tx<Ctx>): number | undefined {
    const req = tx.req;
    if (req.segment !== undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return undefined;
    const fromHook = this.hooks.sliceSize?.(req, tx.ctx);
    if (fromHook !== undefined) return fromHook > 0 ? fromHook : undefined;
    const s = this.slicing;
    if (s === undefined || (s.match !== undefined && !s.match.test(req.url))) return undefined;
    return s.sizeBytes;
  }

  /**
   * A sliced request: the meta object gives the representation's headers and length (made from segment 0 when it is
   * not cached), then the segments the request needs are fetched as subrequests, one after another, and stitched.
   * A segment that does not fit (the object changed at the origin) drops the meta object: before the response head
   * the request starts over once, after it the client is cut off. An origin that ignores Range answers segment 0
   * with the whole object, which is then delivered as it is.
   */
  private async slice(tx: Tx<Ctx>, restarted = false): Promise<Step> {
    const size = this.sliceSizeOf(tx) as number;
    this.sliced = true;
    this.stats.slice_req++;
    tx.key = this.keyOf(tx.req, tx.ctx);
    // One subrequest per segment and request, started at most one segment ahead of the one being sent.
    const segments = new Map<number, Promise<Tx<Ctx>>>();
    const start = (i: number): Promise<Tx<Ctx>> => {
      let p = segments.get(i);
      if (p === undefined) {
        p = this.segmentRequest(tx, i, size);
        p.catch(() => undefined);
        segments.set(i, p);
      }
      return p;
    };
    const segment = async (i: number): Promise<Tx<Ctx>> => {
      const sub = await start(i);
      const obj = sub.obj as CacheObject;
      if (obj.state === 'busy') await obj.waitState('stream', tx.signal);
      return sub;
    };
    try {
      const metaKey = metaKeyOf(tx.key, size);
      let meta = this.cachedMeta(metaKey, tx);
      const metaCached = meta !== undefined;
      if (meta === undefined) {
        const first = await segment(0);
        const obj = first.obj as CacheObject;
        const total = obj.status === 206 ? parseContentRange(getHeader(obj.headers, 'content-range'))?.total : undefined;
        if (total === undefined || obj.state === 'failed') {
          // Not sliceable (failed, an error status, Range ignored, or unknown length): that response is the answer.
          tx.obj = obj;
          tx.status = { ...first.status };
          return obj.state === 'failed' && obj.status === 0 ? this.fetchFailedSynth(tx, obj) : 'deliver';
        }
        meta = this.storeMeta(metaKey, obj, total, tx);
      }
      const total = Number(getHeader(meta.headers, 'content-length'));
      const plan = planDelivery(
        tx.req.method,
        tx.req.headers,
        { status: 200, headers: meta.headers, length: total, complete: true, expectedLength: total },
        { maxRanges: this.maxRanges, boundary: () => `sluice-${randomUUID()}` },
      );
      let ranges: Array<{ head?: Buffer; start: number; end: number }> = total > 0 ? [{ start: 0, end: total - 1 }] : [];
      let tail: Buffer | undefined;
      let head: { status: number; headers: HeaderMap; length: string | undefined } = { status: 200, headers: this.deliveryHeaders(meta), length: String(total) };
      switch (plan.kind) {
        case 'not-modified':
          head = { status: 304, headers: { ...notModifiedHeaders(meta.headers), via: this.via }, length: undefined };
          ranges = [];
          break;
        case 'unsatisfiable':
          head.status = 416;
          head.headers['content-range'] = `bytes */${total}`;
          head.length = '0';
          ranges = [];
          break;
        case 'range':
          head.status = 206;
          head.headers['content-range'] = contentRange(plan.range, total);
          head.length = String(plan.range.end - plan.range.start + 1);
          ranges = [plan.range];
          break;
        case 'multipart':
          head.status = 206;
          head.headers['content-type'] = `multipart/byteranges; boundary=${plan.plan.boundary}`;
          head.length = String(plan.plan.length);
          ranges = plan.plan.parts.map((p) => ({ head: p.head, start: p.range.start, end: p.range.end }));
          tail = plan.plan.tail;
          break;
        default:
          break;
      }
      if (tx.req.method === 'HEAD') ranges = [];
      // The first segment needed is in hand (and checked) before the head goes out, so a changed object can still
      // be started over and a failed fetch still gets a 503.
      const needed = segmentsFor(ranges, size);
      if (needed.length > 0) {
        const sub = await segment(needed[0] as number);
        const obj = sub.obj as CacheObject;
        if (obj.state === 'failed' && obj.status === 0) return this.fetchFailedSynth(tx, obj);
        const why = segmentMismatch(obj.status, obj.headers, needed[0] as number, size, total, meta.headers);
        if (why !== undefined) return this.sliceMismatch(tx, obj, why, restarted);
        // A hit only when everything the response needs came from the cache: the meta object, the first segment, and
        // (checked without looking them up) every later segment.
        const restCached = needed.slice(1).every((i) => this.store.hasFresh(this.keyOf({ ...tx.req, segment: { index: i, size } }, tx.ctx), tx.req.headers, this.now()));
        tx.status = metaCached && sub.status.hit === true && restCached ? { hit: true, detail: 'slice' } : { fwd: sub.status.fwd ?? 'miss', detail: 'slice' };
      } else {
        tx.status = metaCached ? { hit: true, detail: 'slice' } : { fwd: 'miss', detail: 'slice' };
      }
      this.writeHead(tx, meta, head);
      const res = tx.res;
      if (ranges.length === 0) {
        res.end();
        return 'done';
      }
      res.flushHeaders();
      // The bytes [from, to] of the representation, from the segments that hold them.
      const stitched = async function* (from: number, to: number): AsyncGenerator<Buffer, void, undefined> {
        for (const i of segmentsFor([{ start: from, end: to }], size)) {
          // Read-ahead: the next segment's lookup (and fetch, when it is a miss) runs while this one is sent.
          const after = needed[needed.indexOf(i) + 1];
          if (after !== undefined) void start(after);
          const sub = await segment(i);
          const obj = sub.obj as CacheObject;
          if (obj.state === 'failed' && obj.status === 0) throw new Error(`segment ${i}: fetch failed`);
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
          if (obj.state === 'failed') throw new Error(`segment ${i}: body failed`);
        }
      };
      try {
        await this.sendBody(tx, ranges, tail, stitched);
      } catch (e: unknown) {
        // Mid-body: the client must be able to tell the body is incomplete; a changed object loses its meta.
        if (!tx.signal.aborted) this.log({ level: 'warn', event: 'slice-cut', message: errorMessage(e), url: tx.req.url });
        if (e instanceof SegmentMismatchError) this.store.purgePrefix(`${tx.key}\0slice`);
        res.destroy();
      }
      return 'done';
    } finally {
      // A segment subrequest's log ends with its parent (or when a read-ahead one resolves after it).
      for (const p of segments.values()) {
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

  /** A complete, fresh meta object for `metaKey`, or undefined. */
  private cachedMeta(metaKey: string, tx: Tx<Ctx>): CacheObject | undefined {
    const r = this.store.lookup(metaKey, tx.req.headers, this.now());
    if (r.kind === 'hit' && r.obj.state === 'finished') return r.obj;
    if (r.kind === 'miss' || r.kind === 'hit-for-miss') this.store.releaseBusy(r.obj);
    else if (r.kind === 'grace' && r.fetch !== undefined) this.store.releaseBusy(r.fetch);
    return undefined;
  }

  /** The meta object made from segment 0: the whole representation's headers, its length, segment 0's lifetime. */
  private storeMeta(metaKey: string, seg: CacheObject, total: number, tx: Tx<Ctx>): CacheObject {
    const r = this.store.lookup(metaKey, tx.req.headers, this.now());
    const mine = r.kind === 'miss';
    const meta = mine ? r.obj : new CacheObject(metaKey);
    if (!mine && r.kind === 'grace' && r.fetch !== undefined) this.store.releaseBusy(r.fetch);
    meta.status = 200;
    meta.headers = metaHeaders(seg.headers, total);
    meta.bodyless = true;
    meta.expectedLength = 0;
    meta.copyLifetime(seg);
    if (mine) {
      if (seg.stored === true) this.store.insert(meta);
      else this.store.releaseBusy(meta);
    }
    meta.setState('stream');
    meta.finish();
    return meta;
  }

  private sliceMismatch(tx: Tx<Ctx>, seg: CacheObject, why: string, restarted: boolean): Step | Promise<Step> {
    this.log({ level: 'warn', event: 'slice-mismatch', message: why, url: tx.req.url });
    // The object changed at the origin: its meta object and every segment are dropped, then it is sliced anew.
    this.store.purgePrefix(`${tx.key}\0slice`);
    this.store.remove(seg);
    if (!restarted) return this.slice(tx, true);
    tx.synth = { status: 503, body: 'Segments of this object do not match\n' };
    return 'synth';
  }

  /**
   * A segment subrequest: its own request (the client's headers without Range or conditionals, `segment` set) through
   * recv and lookup, and miss or pass when it is not cached, counted and logged as a request of its own. Resolves
   * once it has an object to read (delivery is the parent's).
   */
  private async segmentRequest(parent: Tx<Ctx>, index: number, size: number): Promise<Tx<Ctx>> {
    const headers: HeaderMap = { ...parent.req.headers };
    for (const h of MISS_STRIP) delete headers[h];
    headers['range'] = segmentRangeHeader(index, size);
    const req: DownstreamRequest = { method: 'GET', url: parent.req.url, headers, httpVersion: parent.req.httpVersion, remoteAddress: parent.req.remoteAddress, segment: { index, size } };
    const tx = newTx<Ctx>(parent.res, parent, req, this.hooks.newCtx?.() ?? ({} as Ctx), parent.pin);
    this.stats.slice_segments++;
    if (parent.log !== undefined && this.txlog !== undefined) {
      const t = this.txlog.beginSubrequest(parent.log, 'slice');
      tx.log = t;
      t.timestamp('Start');
      logRequest(t, req);
    }
    let step: Step = 'recv';
    while (step !== 'deliver' && step !== 'done') {
      if (step === 'synth' || step === 'slice') {
        // Policy answered a segment itself: there is nothing to stitch.
        const obj = new CacheObject(tx.key);
        obj.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', `segment ${index} was answered by policy (synth ${tx.synth?.status ?? '?'})`, { source: 'internal', status: 503 }));
        tx.obj = obj;
        return tx;
      }
      const next = this.steps[step](tx);
      step = typeof next === 'string' ? next : await next;
    }
    return tx;
  }

  private synthStep(tx: Tx<Ctx>): Step {
    this.writeSynth(tx, tx.synth ?? { status: 500 });
    return 'done';
  }

  // --- the fetch task (origin -> CacheObject) ------------------------------------------------------------------

  /**
   * The fetch task: origin response -> `obj`. With `stale` (an expired object with validators) the request is
   * conditional, and a 304 refreshes the stale object's headers and freshness onto `obj` without refetching the body
   * (RFC 9111 §4.3.4). With a stale object usable for stale-if-error, a 5xx is not stored over it.
   */
  private async fetch(obj: CacheObject, bereq: UpstreamRequest, tx: Tx<Ctx>, isPass: boolean, stale?: CacheObject): Promise<void> {
    const signal = obj.fetchController.signal;
    this.inflight.add(obj);
    this.stats.s_fetch++;
    let be: Transaction | undefined;
    // BereqAcct: heads as Sluice hands them to the origin client (its own additions, such as Host, not counted).
    const acct = { reqHead: 0, respHead: 0, respBody: 0 };
    const reason = isPass ? 'pass' : tx.status.detail === 'grace' ? 'bgfetch' : 'fetch';
    if (tx.log !== undefined && this.txlog !== undefined) {
      be = this.txlog.beginBereq(tx.log, reason);
      tx.log.add('Link', `bereq ${be.vxid} ${reason}`);
      obj.fetchVxid = be.vxid;
      be.timestamp('Start');
    }
    try {
      await this.hooks.upstreamRequestFilter?.(bereq, tx.ctx);
      if (be !== undefined) {
        be.add('BereqMethod', bereq.method);
        be.add('BereqURL', bereq.path);
        be.add('BereqProtocol', 'HTTP/1.1');
        be.headers('BereqHeader', bereq.headers);
        be.add('VCL_call', 'BACKEND_FETCH');
        be.add('VCL_return', 'fetch');
        be.timestamp('Fetch');
        be.timestamp('Bereq');
        acct.reqHead = headBytes(`${bereq.method} ${bereq.path} HTTP/1.1`, bereq.headers);
      }
      obj.requestTimeMs = this.now();
      let res;
      try {
        res = await this.upstream.request(bereq, { signal });
      } catch (e: unknown) {
        this.stats.backend_fail++;
        this.stats.fetch_failed++;
        be?.add('FetchError', `backend fetch failed: ${errorMessage(e)}`);
        this.log({ level: 'error', event: 'backend-fail', message: `backend fetch failed: ${errorMessage(e)}`, url: bereq.path });
        // The upstream's own status when it gives one (502 lost pinned connection, 504 timeout), else 503.
        const upstreamStatus = (e as { status?: unknown }).status;
        const status = typeof upstreamStatus === 'number' && upstreamStatus >= 500 && upstreamStatus <= 599 ? upstreamStatus : 503;
        obj.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', 'backend fetch failed', { source: 'upstream', status, cause: e }));
        this.store.releaseBusy(obj);
        return;
      }
      obj.responseTimeMs = this.now();
      if (be !== undefined) {
        be.timestamp('Beresp');
        be.add('BerespProtocol', 'HTTP/1.1');
        be.add('BerespStatus', String(res.status));
        be.add('BerespReason', http.STATUS_CODES[res.status] ?? '');
        acct.respHead = headBytes(`HTTP/1.1 ${res.status} ${http.STATUS_CODES[res.status] ?? ''}`, res.headers);
        be.headers('BerespHeader', res.headers);
      }
      const clRaw = getHeader(res.headers, 'content-length');
      const expected = clRaw !== undefined && /^\d+$/.test(clRaw) ? Number(clRaw) : undefined;
      const was304 = res.status === 304 && stale !== undefined && !isPass && stale.state === 'finished';
      const status = was304 ? stale.status : res.status;
      const headers = was304 ? mergeNotModified(stale.headers, stripHopByHop(res.headers)) : stripHopByHop(res.headers);
      if (was304) this.stats.fetch_304++;
      const life = freshnessLifetime(status, headers, obj.responseTimeMs, this.freshness);
      obj.initialAgeSec = initialAgeSec(headers, obj.requestTimeMs, obj.responseTimeMs);
      const cc = cacheControlOf(headers);
      const swr = deltaSeconds(cc.get('stale-while-revalidate'));
      const beresp: BackendResponse = {
        status,
        headers,
        ttlSec: life.lifetimeSec - obj.initialAgeSec,
        graceSec: swr ?? this.graceSec,
        keepSec: this.keepSec,
        uncacheable: isPass,
        uncacheableReason: isPass ? 'pass' : undefined,
        hitForPassSec: undefined,
        doStream: true,
        transitBytes: this.transitBytes,
        streamMinBytes: this.streamMinBytes,
        was304,
        isPass,
        ttlSource: life.source,
        segment: tx.req.segment,
      };
      const verdict = await this.hooks.upstreamResponseFilter?.(beresp, tx.ctx);
      if (verdict !== 'deliver') builtinBackendResponse(beresp, bereq, this.hitForMissSec);
      // Keep objects with a validator past a zero TTL when keep allows it: they are revalidated, not refetched.
      if (beresp.uncacheable && beresp.uncacheableReason === 'ttl-zero' && this.keepSec > 0 && hasValidator(headers)) {
        beresp.uncacheable = false;
        beresp.uncacheableReason = undefined;
        beresp.ttlSec = 0;
      }
      const staleIfError = stale !== undefined && !isPass && this.staleUsableOnError(stale);
      if (status >= 500 && staleIfError) {
        // RFC 5861 stale-if-error: the error is not stored over the stale object; the client gets the stale one.
        beresp.uncacheable = true;
        beresp.uncacheableReason = 'stale-if-error';
      }

      obj.status = beresp.status;
      obj.headers = beresp.headers;
      obj.varyFields = varyFields(beresp.headers);
      obj.varySig = varySignature(obj.varyFields, tx.req.headers);
      obj.doStream = beresp.doStream;
      obj.bodyless = bereq.method === 'HEAD' || NO_BODY_STATUS(beresp.status);
      obj.expectedLength = obj.bodyless && bereq.method !== 'HEAD' ? 0 : expected;
      obj.graceSec = beresp.graceSec;
      obj.keepSec = beresp.keepSec;
      obj.reqUrl = tx.req.url;
      obj.reqHost = (getHeader(tx.req.headers, 'host') ?? '').toLowerCase();
      obj.tags = tagsOf(beresp.headers);
      obj.staleIfErrorSec = deltaSeconds(cc.get('stale-if-error')) ?? 0;
      obj.streamMinBytes = beresp.streamMinBytes;
      const transitBytes = beresp.transitBytes;
      if (!beresp.uncacheable && !isPass) {
        obj.ttlSec = beresp.ttlSec + obj.initialAgeSec;
        this.store.insert(obj);
      } else {
        obj.stored = false;
        obj.notStoredReason = beresp.uncacheableReason;
        if (beresp.uncacheableReason === 'stale-if-error') this.store.releaseBusy(obj);
        else if (beresp.hitForPassSec !== undefined && beresp.hitForPassSec > 0) {
          this.store.markUncacheable(obj, beresp.hitForPassSec, this.now(), 'pass');
        } else if (!isPass) this.store.markUncacheable(obj, beresp.ttlSec, this.now());
      }
      if (be !== undefined) {
        be.add('TTL', `RFC ${beresp.ttlSec.toFixed(0)} ${beresp.graceSec} ${beresp.keepSec} ${Math.floor(obj.responseTimeMs / 1000)} ${beresp.uncacheable ? 'uncacheable' : 'cacheable'}`);
        be.add('VCL_call', 'BACKEND_RESPONSE');
        be.add('VCL_return', 'deliver');
        be.add('Storage', obj.stored === true ? 'malloc s0' : 'malloc Transient');
        be.timestamp('Process');
        // The client side's `Fetch`: the fetch has handed over its response headers (not for a background fetch).
        if (reason !== 'bgfetch') tx.log?.timestamp('Fetch');
      }
      obj.setState('stream');

      if (was304) {
        res.body.resume();
        obj.adoptBody(stale);
        return;
      }
      if (obj.bodyless) {
        res.body.resume();
        obj.finish();
        return;
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          obj.extend(chunk);
          acct.respBody += chunk.length;
          this.stats.s_beresp_bodybytes += chunk.length;
          if (obj.stored === true) this.store.charge(obj, chunk.length);
          if (obj.stored === false) await obj.waitForSpace(transitBytes, signal);
        }
        if (expected !== undefined && obj.length !== expected) {
          throw new ProxyError('CORE_ERR_UPSTREAM_LENGTH_MISMATCH', `body ended at ${obj.length} of ${expected} bytes`, {
            source: 'upstream',
          });
        }
        be?.timestamp('BerespBody');
        be?.add('Length', String(obj.length));
        obj.finish();
      } catch (e: unknown) {
        res.body.destroy();
        this.stats.fetch_failed++;
        be?.add('FetchError', signal.aborted ? 'fetch aborted (no reader left)' : `body fetch failed: ${errorMessage(e)}`);
        if (!signal.aborted) {
          this.log({ level: 'error', event: 'fetch-error', message: `body fetch failed: ${errorMessage(e)}`, url: bereq.path });
        }
        // Never keep a truncated object.
        this.store.remove(obj);
        obj.fail(new ProxyError('CORE_ERR_UPSTREAM_BODY', 'origin body failed', { source: 'upstream', cause: e }));
      }
    } catch (e: unknown) {
      this.stats.fetch_failed++;
      this.log({ level: 'error', event: 'fetch-error', message: errorMessage(e), url: bereq.path });
      this.store.releaseBusy(obj);
      this.store.remove(obj);
      obj.fail(new ProxyError('CORE_ERR_HOOK_FAILED', 'fetch failed', { source: 'internal', cause: e }));
    } finally {
      this.inflight.delete(obj);
      if (be !== undefined) {
        const reqBody = bereq.body === null ? 0 : tx.bodyBytes();
        be.add('BereqAcct', `${acct.reqHead} ${reqBody} ${acct.reqHead + reqBody} ${acct.respHead} ${acct.respBody} ${acct.respHead + acct.respBody}`);
        be.end();
      }
    }
  }

  /** Whether a stale object may still be served when the origin fails (within its stale-if-error window). */
  private staleUsableOnError(stale: CacheObject): boolean {
    if (stale.state !== 'finished' || stale.staleIfErrorSec <= 0) return false;
    const ageSec = stale.initialAgeSec + (this.now() - stale.responseTimeMs) / 1000;
    return ageSec < stale.ttlSec + stale.staleIfErrorSec;
  }

  /** The origin request for a miss: the client's headers without hop-by-hop fields, conditionals or Range. */
  private missRequest(tx: Tx<Ctx>, forwardConditionals: boolean): UpstreamRequest {
    const headers = stripHopByHop(tx.req.headers);
    if (!forwardConditionals) for (const h of MISS_STRIP) delete headers[h];
    // A miss sends no body, so there is nothing to expect a 100 Continue for (undici refuses the header anyway).
    delete headers['expect'];
    // A segment fetch asks the origin for its bytes only.
    if (tx.req.segment !== undefined) headers['range'] = segmentRangeHeader(tx.req.segment.index, tx.req.segment.size);
    this.addForwarding(headers, tx.req);
    // A HEAD miss fetches GET so the object can be stored and serve later GETs (Varnish does the same).
    return { method: 'GET', path: tx.req.url, headers, body: null, key: tx.key, pin: tx.pin };
  }

  // --- writing -------------------------------------------------------------------------------------------------

  /**
   * Writes the response head for `obj`: Age, Via, Cache-Status and framing added. `override` replaces status, headers
   * and length (206, 304, 416); without it the stored headers go out as they are, through the hit path's cached block.
   */
  private writeHead(
    tx: Tx<Ctx>,
    obj: CacheObject,
    override?: { status: number; headers: HeaderMap; length: string | undefined },
  ): void {
    const nowMs = this.now();
    const ageSec = obj.initialAgeSec + Math.max(0, (nowMs - obj.responseTimeMs) / 1000);
    const age = Math.floor(ageSec);
    let ours: string;
    if (tx.status.hit === true && tx.status.detail === undefined && obj.stored === true) {
      // The common hit: built directly (same text formatCacheStatus gives).
      ours = `${this.name}; hit; ttl=${Math.floor(obj.ttlSec - age)}`;
    } else {
      const status: CacheStatus = { ...tx.status };
      if (status.fwd !== undefined) {
        status.fwdStatus = obj.status;
        if (obj.stored === true) status.stored = true;
        else if (status.detail === undefined && obj.notStoredReason !== undefined) status.detail = obj.notStoredReason;
      }
      // RFC 9211 §2.4: ttl is negative for a stale response.
      if (obj.stored === true || status.hit === true) status.ttlSec = obj.ttlSec - age;
      ours = formatCacheStatus(this.name, status);
    }
    // RFC 9211 §2: keep the Cache-Status entries of caches before us; ours goes last.
    const upstreamStatus = obj.headers['cache-status'];
    const cacheStatus = upstreamStatus === undefined ? ours : `${getHeader(obj.headers, 'cache-status') ?? ''}, ${ours}`;
    let length: string | undefined;
    if (override !== undefined) {
      length = override.length;
    } else if (!NO_BODY_STATUS(obj.status)) {
      if (obj.state === 'finished' && !obj.bodyless) length = String(obj.length);
      else if (obj.expectedLength !== undefined) length = String(obj.expectedLength);
    }
    if (override === undefined && this.hooks.responseFilter === undefined) {
      // Hit path: the stored headers are serialised once per object; only Age, Cache-Status and length vary.
      obj.headBlock ??= serializeHeaders(this.deliveryHeaders(obj));
      // RFC 9111 §5.1: a cache MUST send Age when it serves a stored response; sent on every response here.
      let block = `${obj.headBlock}age: ${age}\r\ncache-status: ${cacheStatus}\r\n`;
      if (length !== undefined) block += `content-length: ${length}\r\n`;
      tx.res.writeHeadBlock(obj.status, block, length, tx.closeAfter);
      if (tx.log !== undefined) this.logResp(tx.log, obj.status, block);
      return;
    }
    const headers = override?.headers ?? this.deliveryHeaders(obj);
    headers['age'] = String(age);
    headers['cache-status'] = cacheStatus;
    if (length !== undefined) headers['content-length'] = length;
    if (tx.closeAfter) headers['connection'] = 'close';
    const resp: DeliveryResponse = { status: override?.status ?? obj.status, headers };
    this.hooks.responseFilter?.(resp, tx.req, tx.ctx);
    tx.res.writeHead(resp.status, resp.headers);
    if (tx.log !== undefined) this.logResp(tx.log, resp.status, resp.headers);
  }

  /** The response as sent; `deliver` = false for synth responses (vcl_synth runs instead of vcl_deliver). */
  private logResp(t: Transaction, status: number, headers: HeaderMap | string, deliver = true): void {
    t.add('RespProtocol', 'HTTP/1.1');
    t.add('RespStatus', String(status));
    t.add('RespReason', http.STATUS_CODES[status] ?? '');
    if (typeof headers === 'string') t.headerBlock('RespHeader', headers);
    else t.headers('RespHeader', headers);
    if (deliver) {
      t.add('VCL_call', 'DELIVER');
      t.add('VCL_return', 'deliver');
    }
    t.timestamp('Process');
  }

  /** Stored headers as delivered: our Via appended, Age and Cache-Status left to the caller. */
  private deliveryHeaders(obj: CacheObject): HeaderMap {
    const headers = cloneHeaders(obj.headers);
    delete headers['age'];
    delete headers['cache-status'];
    // Invalidation tags are for the cache, not for clients (as Fastly does with Surrogate-Key).
    delete headers['surrogate-key'];
    delete headers['xkey'];
    appendHeader(headers, 'via', this.via);
    return headers;
  }

  private fetchFailedSynth(tx: Tx<Ctx>, obj: CacheObject): Step {
    const err = obj.error;
    tx.synth = { status: err instanceof ProxyError && err.status !== undefined ? err.status : 503, body: 'Backend fetch failed\n' };
    tx.status = { ...tx.status, detail: 'fetch-error' };
    return 'synth';
  }

  private writeSynth(tx: Tx<Ctx>, synth: { status: number; body?: string; headers?: HeaderMap }): void {
    this.stats.s_synth++;
    const body = synth.body ?? `${synth.status} ${http.STATUS_CODES[synth.status] ?? ''}\n`;
    const headers: HeaderMap = {
      'content-type': 'text/plain; charset=utf-8',
      ...synth.headers,
      'content-length': String(Buffer.byteLength(body)),
      'cache-status': formatCacheStatus(this.name, { ...tx.status, detail: tx.status.detail ?? 'synth' }),
      via: this.via,
    };
    if (tx.closeAfter) headers['connection'] = 'close';
    const resp: DeliveryResponse = { status: synth.status, headers };
    this.hooks.responseFilter?.(resp, tx.req, tx.ctx);
    tx.res.writeHead(resp.status, resp.headers);
    if (tx.log !== undefined) {
      tx.log.add('VCL_call', 'SYNTH');
      tx.log.add('VCL_return', 'deliver');
      this.logResp(tx.log, resp.status, resp.headers, false);
    }
    tx.res.end(Buffer.from(body));
  }

  private addForwarding(headers: HeaderMap, req: DownstreamRequest): void {
    appendHeader(headers, 'via', this.via);
    appendHeader(headers, 'x-forwarded-for', req.remoteAddress);
  }
}

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one, gets 400 (Varnish's builtin vcl_req_host
 * does the same). HTTP/1.0 may omit it.
 */
function hostOk(req: DownstreamRequest): boolean {
  const h = req.headers['host'];
  if (Array.isArray(h)) return false;
  return h !== undefined || req.httpVersion === '1.0';
}

/** Bytes of an HTTP/1.1 head: start line, header lines, blank line. */
function headBytes(startLine: string, headers: HeaderMap): number {
  let n = Buffer.byteLength(startLine) + 4;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) n += k.length + 4 + Buffer.byteLength(one);
  }
  return n;
}

/** Accepts origin-form, absolute-form (rewritten to origin-form + Host) and `OPTIONS *`; false = bad target. */
function normaliseTarget(req: DownstreamRequest): boolean {
  const url = req.url;
  if (url.startsWith('/')) return true;
  if (url === '*' && req.method === 'OPTIONS') return true;
  if (/^https?:\/\//i.test(url)) {
    try {
      const u = new URL(url);
      req.url = `${u.pathname}${u.search}`;
      req.headers['host'] = u.host;
      return true;
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * Makes a fetch conditional on a stale object's validators (RFC 9111 §4.3.1) when it is complete and has one;
 * returns whether it did (a 304 then refreshes that object).
 */
function makeConditional(bereq: UpstreamRequest, stale: CacheObject): boolean {
  if (stale.state !== 'finished' || !hasValidator(stale.headers)) return false;
  Object.assign(bereq.headers, revalidationHeaders(stale.headers));
  return true;
}

/** Header map back from a serialised `name: value\r\n` block (for the log only). */
/** Invalidation tags of a response: Surrogate-Key (Fastly) or xkey (Varnish), space-separated. */
function tagsOf(headers: HeaderMap): string[] {
  const raw = [getHeader(headers, 'surrogate-key'), getHeader(headers, 'xkey')].filter((v) => v !== undefined).join(' ');
  return raw.split(/[\s,]+/).filter((t) => t !== '');
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
