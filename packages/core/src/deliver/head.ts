import http from 'node:http';
import type { CacheObject } from '../cache/cache-object.js';
import { ProxyError } from '../errors.js';
import { ageOf } from '../http/age.js';
import { formatCacheStatus, type CacheStatus } from '../http/cache-status.js';
import { appendHeader, cloneHeaders, getHeader, type HeaderMap } from '../http/headers.js';
import { serializeHeaders } from '../http1/response.js';
import type { DeliveryResponse } from '../policy/hooks.js';
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
  const headers = cloneHeaders(obj.headers);
  delete headers['age'];
  delete headers['cache-status'];
  // Invalidation tags are for the cache, not for clients (as Fastly does with Surrogate-Key).
  delete headers['surrogate-key'];
  delete headers['xkey'];
  appendHeader(headers, 'via', via);
  return headers;
}

/** Our Cache-Status entry for this response, derived from the request's outcome and the object. */
function cacheStatusOf<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, age: number): string {
  let ours: string;
  if (tx.lookup === 'hit' && !tx.coalesced && obj.stored === true && obj.slice === undefined) {
    // The common hit: built directly (same text formatCacheStatus gives).
    ours = `${env.name}; hit; ttl=${Math.floor(obj.ttlSec - age)}`;
  } else {
    const status: CacheStatus = { ...tx.status };
    if (status.fwd !== undefined) {
      status.fwdStatus = obj.status;
      if (obj.stored === true) status.stored = true;
      else if (status.detail === undefined && obj.notStoredReason !== undefined) status.detail = obj.notStoredReason;
    }
    // RFC 9211 §2.4: ttl is negative for a stale response.
    if (obj.stored === true || status.hit === true) status.ttlSec = obj.ttlSec - age;
    ours = formatCacheStatus(env.name, status);
  }
  // RFC 9211 §2: keep the Cache-Status entries of caches before us; ours goes last.
  return obj.headers['cache-status'] === undefined ? ours : `${getHeader(obj.headers, 'cache-status') ?? ''}, ${ours}`;
}

/**
 * Writes the response head for `obj`: Age, Via, Cache-Status and framing added. `override` replaces status, headers
 * and length (206, 304, 416); without it the stored headers go out as they are, through the hit path's cached block.
 */
export function writeHead<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, override?: HeadOverride): void {
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
    obj.headBlock ??= serializeHeaders(deliveryHeaders(obj, env.via));
    // RFC 9111 §5.1: a cache MUST send Age when it serves a stored response; sent on every response here.
    let block = `${obj.headBlock}age: ${age}\r\ncache-status: ${cacheStatus}\r\n`;
    if (length !== undefined) block += `content-length: ${length}\r\n`;
    tx.res.writeHeadBlock(obj.status, block, length, tx.closeAfter);
    if (tx.log !== undefined) logResp(tx.log, obj.status, block);
    return;
  }
  const headers = override?.headers ?? deliveryHeaders(obj, env.via);
  headers['age'] = String(age);
  headers['cache-status'] = cacheStatus;
  if (length !== undefined) headers['content-length'] = length;
  if (tx.closeAfter) headers['connection'] = 'close';
  const resp: DeliveryResponse = { status: override?.status ?? obj.status, headers };
  env.hooks.responseFilter?.(resp, tx.req, tx.ctx);
  tx.res.writeHead(resp.status, resp.headers);
  if (tx.log !== undefined) logResp(tx.log, resp.status, resp.headers);
}

/** The synth a failed fetch becomes: its upstream status (502/504) or 503, "Backend fetch failed". */
export function fetchFailedSynth<Ctx>(tx: Tx<Ctx>, obj: CacheObject): Step {
  const err = obj.error;
  tx.synth = { status: err instanceof ProxyError && err.status !== undefined ? err.status : 503, body: 'Backend fetch failed\n' };
  tx.status = { ...tx.status, detail: 'fetch-error' };
  tx.outcome = 'error';
  return 'synth';
}

/** Writes a synthetic response (vcl_synth), through the responseFilter hook. */
export function writeSynth<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, synth: Synth): void {
  env.stats.s_synth++;
  const body = synth.body ?? `${synth.status} ${http.STATUS_CODES[synth.status] ?? ''}\n`;
  const headers: HeaderMap = {
    'content-type': 'text/plain; charset=utf-8',
    ...synth.headers,
    'content-length': String(Buffer.byteLength(body)),
    'cache-status': formatCacheStatus(env.name, { ...tx.status, detail: tx.status.detail ?? 'synth' }),
    via: env.via,
  };
  if (tx.closeAfter) headers['connection'] = 'close';
  const resp: DeliveryResponse = { status: synth.status, headers };
  env.hooks.responseFilter?.(resp, tx.req, tx.ctx);
  tx.res.writeHead(resp.status, resp.headers);
  if (tx.log !== undefined) {
    logVcl(tx.log, 'SYNTH', 'deliver');
    logResp(tx.log, resp.status, resp.headers, false);
  }
  tx.res.end(Buffer.from(body));
}
