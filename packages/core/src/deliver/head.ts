import http from 'node:http';
import type { CacheObject } from '../cache/cache-object.js';
import { ProxyError } from '../errors.js';
import { ageOf } from '../http/age.js';
import { formatCacheStatus, type CacheStatusFields } from '../http/cache-status.js';
import { appendHeader, cloneHeaders, getHeader, type HeaderMap } from '../http/headers.js';
import { responseHead, serializeHeaders } from '../http1/response.js';
import type { DeliverAction, DeliveryResponse } from '../policy/hooks.js';
import type { ProxyEnv, Step, Synth, Tx } from '../context.js';
import { logResp, logVcl } from '../txlog/records.js';
import type { HeadOverride } from './plan.js';

/**
 * Response heads: the stored object's head with Age, Via, Cache-Status and framing (through the vcl_deliver hook),
 * and synthetic responses. The only place a response head is written.
 */

export const NO_BODY_STATUS = (s: number): boolean => s === 204 || s === 304 || (s >= 100 && s < 200);

/** Stored headers as delivered: our Via appended, Age and Cache-Status left to the caller. */
export function deliveryHeaders(obj: CacheObject, via: string): HeaderMap {
  const headers = cloneHeaders(obj.headers, NOT_DELIVERED);
  appendHeader(headers, 'via', via);
  return headers;
}

/**
 * The stored head as delivered, serialised: serializeHeaders(deliveryHeaders(obj, via)) without the copy in between
 * when the object has no Via of its own (ours then goes last, where appendHeader puts it). Issue 16: a miss builds it
 * once per object, before its first byte.
 */
export function deliveryHeadBlock(obj: CacheObject, via: string): string {
  if (obj.headers['via'] !== undefined) return serializeHeaders(deliveryHeaders(obj, via));
  return serializeHeaders(obj.headers, NOT_DELIVERED) + serializeHeaders({ via });
}

/**
 * Stored fields a delivery leaves out: Age and Cache-Status (ours are added), invalidation tags (for the cache, not
 * for clients, as Fastly does with Surrogate-Key), and Surrogate-Control (for caches like us: W3C Edge Architecture
 * has a surrogate remove it; CDN-Cache-Control goes on).
 */
const NOT_DELIVERED: ReadonlySet<string> = new Set(['age', 'cache-status', 'surrogate-key', 'xkey', 'surrogate-control']);

/** Our Cache-Status entry for this response, derived from the request's outcome and the object. */
function cacheStatusOf<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, age: number): string {
  let ours: string;
  if (tx.lookup === 'hit' && !tx.coalesced && obj.stored === true && obj.slice === undefined) {
    // The common hit: built directly (same text formatCacheStatus gives).
    ours = `${env.name}; hit; ttl=${Math.floor(obj.ttlSec - age)}`;
  } else {
    // One literal of a fixed shape, not a spread of tx.status (a miss's profile had cacheStatusOf at 3 %, issue 16):
    // a forwarded response adds the origin's status, stored, or why it was not stored.
    const s = tx.status;
    const fwd = s.fwd !== undefined;
    const status: CacheStatusFields = {
      hit: s.hit,
      fwd: s.fwd,
      fwdStatus: fwd ? obj.status : s.fwdStatus,
      stored: s.stored === true || (fwd && obj.stored === true),
      collapsed: s.collapsed,
      // RFC 9211 §2.4: ttl is negative for a stale response.
      ttlSec: obj.stored === true || s.hit === true ? obj.ttlSec - age : s.ttlSec,
      detail: s.detail ?? (fwd && obj.stored !== true ? obj.notStoredReason : undefined),
    };
    ours = formatCacheStatus(env.name, status);
  }
  // RFC 9211 §2: keep the Cache-Status entries of caches before us; ours goes last.
  return obj.headers['cache-status'] === undefined ? ours : `${getHeader(obj.headers, 'cache-status') ?? ''}, ${ours}`;
}

/**
 * Writes the response head for `obj`: Age, Via, Cache-Status and framing added. `override` replaces status, headers
 * and length (206, 304, 416); without it the stored headers go out as they are, through the hit path's cached block.
 * Returns undefined once the head is written, or the step to take instead when the responseFilter hook returned
 * 'restart' or a synth (nothing written then); a promise only when the hook returned one.
 */
export function writeHead<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, override?: HeadOverride): HeadResult {
  const age = Math.floor(ageOf(obj, env.now()));
  const cacheStatus = cacheStatusOf(env, tx, obj, age);
  let length: string | undefined;
  if (override !== undefined) {
    length = override.length;
  } else if (!NO_BODY_STATUS(obj.status)) {
    if (obj.state === 'finished' && !obj.bodyless) length = String(obj.length);
    else if (obj.expectedLength !== undefined) length = String(obj.expectedLength);
  }
  if (override === undefined && env.hooks.responseFilter === undefined) {
    // Hit path: the stored headers are serialised once per object; only Age, Cache-Status and length vary.
    obj.headBlock ??= deliveryHeadBlock(obj, env.via);
    // RFC 9111 §5.1: a cache MUST send Age when it serves a stored response; sent on every response here.
    let block = `${obj.headBlock}age: ${age}\r\ncache-status: ${cacheStatus}\r\n`;
    if (length !== undefined) block += `content-length: ${length}\r\n`;
    tx.res.writeHeadBlock(obj.status, block, length, tx.closeAfter);
    if (tx.log !== undefined) logResp(tx.log, obj.status, block, true, obj.headBlock);
    return undefined;
  }
  const headers = override?.headers ?? deliveryHeaders(obj, env.via);
  headers['age'] = String(age);
  headers['cache-status'] = cacheStatus;
  if (length !== undefined) headers['content-length'] = length;
  if (tx.closeAfter) headers['connection'] = 'close';
  const isHit = tx.status.hit === true;
  const resp: DeliveryResponse = { status: override?.status ?? obj.status, headers, hits: obj.hits, isHit, uncacheable: !isHit && obj.stored !== true, synthetic: false };
  const verdict = env.hooks.responseFilter?.(resp, tx.req, tx.ctx);
  if (verdict instanceof Promise) return verdict.then((v) => afterDeliverHook(tx, resp, v));
  return afterDeliverHook(tx, resp, verdict);
}

/**
 * A stored object's hit response, prepared once and reused by every hit until what it was built from changes: the
 * head (stored fields, Via, Age, Cache-Status, Content-Length, the connection lines) and, for a small object, the body
 * after it in the same Buffer. Age and the Cache-Status ttl change once a second, so a hot object's response is built
 * about once a second and each hit is one socket write of shared bytes (issue 16).
 */
interface PreparedHit {
  /** What it was built from: the environment (name, Via), the object's head block and ttl, Age, connection lines. */
  readonly env: object;
  readonly headBlock: string;
  readonly ttlSec: number;
  readonly age: number;
  readonly persistence: string;
  /** The fields as logged (RespHeader), without the connection lines. */
  readonly block: string;
  readonly bytes: Buffer;
  readonly headBytes: number;
  /** Whether `bytes` holds the body too. */
  readonly joined: boolean;
}

/** Hit responses up to this size (head and body) are prepared as one Buffer: a hit is then one write, no copy. */
export const JOIN_HIT_MAX_BYTES = 128 * 1024;
/**
 * Bytes of joined hit responses (body copies) held at once. They are dropped when the clock's second changes (their
 * Age is stale by then anyway), so this bounds the copies of the objects hit within one second; past it, a response is
 * prepared as its head alone and the body leaves from the object's own chunks.
 */
export const JOINED_HELD_MAX_BYTES = 8 * 1024 * 1024;
let heldSecond = Number.NaN;
let heldBytes = 0;
let held: Array<{ obj: CacheObject; hit: PreparedHit }> = [];

/** Whether `bytes` more of joined responses may be held in the second of `nowMs`; drops the last second's. */
function mayHoldJoined(nowMs: number, bytes: number): boolean {
  const sec = Math.floor(nowMs / 1000);
  if (sec !== heldSecond) {
    for (const h of held) if (h.obj.hitResponse === h.hit) h.obj.hitResponse = undefined;
    held = [];
    heldBytes = 0;
    heldSecond = sec;
  }
  if (heldBytes + bytes > JOINED_HELD_MAX_BYTES) return false;
  heldBytes += bytes;
  return true;
}

/** Joined hit responses held now, bytes (for tests). */
export function joinedHitBytesHeld(): number {
  return heldBytes;
}

/**
 * The common hit, whole: a complete stored object (`chunks`), a plain GET, no responseFilter hook. Writes the
 * prepared response (building it when Age, the connection lines or the object changed) and ends; false when the
 * request is not that case (nothing written then: the caller goes the general way).
 */
export function sendStoredHit<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, chunks: readonly Buffer[]): boolean {
  const res = tx.res;
  if (env.hooks.responseFilter !== undefined || !res.preparable || tx.req.method === 'HEAD' || obj.bodyless || NO_BODY_STATUS(obj.status)) return false;
  // Only the plain hit's Cache-Status is prepared (see cacheStatusOf).
  if (tx.lookup !== 'hit' || tx.coalesced || obj.slice !== undefined) return false;
  const nowMs = env.now();
  const age = Math.floor(ageOf(obj, nowMs));
  const persistence = res.persistenceLines(tx.closeAfter);
  let hit = obj.hitResponse as PreparedHit | undefined;
  if (hit === undefined || hit.age !== age || hit.persistence !== persistence || hit.env !== env || hit.ttlSec !== obj.ttlSec || hit.headBlock !== obj.headBlock) {
    // Only the usual connection (HTTP/1.1 kept alive) is kept and joined: a client asking to close, or HTTP/1.0, gets
    // a head built for it, so clients of both kinds on one object never rebuild (and copy) it in turn.
    hit = prepareHit(env, tx, obj, chunks, age, persistence, nowMs, res.keepAlive && res.version === '1.1');
  }
  // The prepared block recurs as it is until Age or the object changes: its records are one run (txlog/raw.ts).
  if (tx.log !== undefined) logResp(tx.log, obj.status, hit.block, true, hit.block);
  env.stats.s_resp_bodybytes += obj.length;
  res.endPrepared(obj.status, obj.length, hit.bytes, hit.headBytes, hit.joined ? undefined : chunks);
  return true;
}

function prepareHit<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, chunks: readonly Buffer[], age: number, persistence: string, nowMs: number, keep: boolean): PreparedHit {
  const headBlock = (obj.headBlock ??= deliveryHeadBlock(obj, env.via));
  // RFC 9111 §5.1: a cache MUST send Age when it serves a stored response; sent on every response here.
  const block = `${headBlock}age: ${age}\r\ncache-status: ${cacheStatusOf(env, tx, obj, age)}\r\ncontent-length: ${obj.length}\r\n`;
  const head = responseHead(obj.status, block, persistence);
  const total = head.length + obj.length;
  const joined = keep && total <= JOIN_HIT_MAX_BYTES && mayHoldJoined(nowMs, total);
  // Own memory (not a slice of Node's shared pool), so that what an object keeps is only its response.
  const bytes = Buffer.allocUnsafeSlow(joined ? total : head.length);
  let at = bytes.write(head, 0, 'latin1');
  if (joined) for (const c of chunks) at += c.copy(bytes, at);
  const hit: PreparedHit = { env, headBlock, ttlSec: obj.ttlSec, age, persistence, block, bytes, headBytes: head.length, joined };
  if (!keep) return hit;
  obj.hitResponse = hit;
  if (joined) held.push({ obj, hit });
  return hit;
}

/** What writeHead gives: undefined once the head is written, else the step the deliver hook chose instead. */
export type HeadResult = undefined | 'restart' | 'synth' | Promise<undefined | 'restart' | 'synth'>;

/** vcl_deliver's return: deliver (write the head), restart, or synth (Varnish's cnt_deliver). */
function afterDeliverHook<Ctx>(tx: Tx<Ctx>, resp: DeliveryResponse, verdict: DeliverAction): undefined | 'restart' | 'synth' {
  if (verdict === 'restart') {
    logVcl(tx.log, 'DELIVER', 'restart');
    return 'restart';
  }
  if (verdict !== undefined) {
    logVcl(tx.log, 'DELIVER', 'synth');
    tx.synth = verdict.synth;
    tx.outcome = 'synth';
    return 'synth';
  }
  tx.res.writeHead(resp.status, resp.headers);
  if (tx.log !== undefined) logResp(tx.log, resp.status, resp.headers);
  return undefined;
}

/** The synth a failed fetch becomes: its upstream status (502/504) or 503, "Backend fetch failed". */
export function fetchFailedSynth<Ctx>(tx: Tx<Ctx>, obj: CacheObject): Step {
  const err = obj.error;
  tx.synth = { status: err instanceof ProxyError && err.status !== undefined ? err.status : 503, body: 'Backend fetch failed\n' };
  tx.status = { ...tx.status, detail: 'fetch-error' };
  tx.outcome = 'error';
  return 'synth';
}

/**
 * Writes a synthetic response (vcl_synth), through the responseFilter hook, and returns 'done'; or 'restart' when the
 * hook restarts (honoured while `req.restarts` is within `maxRestarts`, as Varnish's cnt_synth). A synth the hook
 * returns replaces this one and is written without running the hook again. `restartable` false (the last-resort
 * error answer) writes whatever the hook says.
 */
export function writeSynth<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, synth: Synth, restartable = true): 'done' | 'restart' | Promise<'done' | 'restart'> {
  const resp = synthResponse(env, tx, synth);
  const verdict = env.hooks.responseFilter?.(resp, tx.req, tx.ctx);
  const after = (v: DeliverAction): 'done' | 'restart' => {
    if (v === 'restart' && restartable && tx.req.restarts <= env.maxRestarts) {
      logVcl(tx.log, 'SYNTH', 'restart');
      return 'restart';
    }
    const final = v !== undefined && v !== 'restart' ? synthResponse(env, tx, v.synth) : resp;
    sendSynth(env, tx, final);
    return 'done';
  };
  return verdict instanceof Promise ? verdict.then(after) : after(verdict);
}

/** The synthetic response as the hook sees it: our framing and Cache-Status, the body kept beside it. */
function synthResponse<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, synth: Synth): DeliveryResponse & { body: string } {
  const body = synth.body ?? `${synth.status} ${http.STATUS_CODES[synth.status] ?? ''}\n`;
  const headers: HeaderMap = {
    'content-type': 'text/plain; charset=utf-8',
    ...synth.headers,
    'content-length': String(Buffer.byteLength(body)),
    'cache-status': formatCacheStatus(env.name, { ...tx.status, detail: tx.status.detail ?? 'synth' }),
    via: env.via,
  };
  if (tx.closeAfter) headers['connection'] = 'close';
  return { status: synth.status, headers, hits: 0, isHit: false, uncacheable: true, synthetic: true, body };
}

function sendSynth<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, resp: DeliveryResponse & { body: string }): void {
  env.stats.s_synth++;
  // A hook may have changed the body's length: the framing follows the body actually sent.
  resp.headers['content-length'] = String(Buffer.byteLength(resp.body));
  tx.res.writeHead(resp.status, resp.headers);
  if (tx.log !== undefined) {
    logVcl(tx.log, 'SYNTH', 'deliver');
    logResp(tx.log, resp.status, resp.headers, false);
  }
  tx.res.end(Buffer.from(resp.body));
}
