import type { CacheObject } from '../cache/cache-object.js';
import { ageFieldValid, initialAgeSec } from '../http/age.js';
import { deltaSeconds } from '../http/cache-control.js';
import { hasValidator, mergeNotModified } from '../http/conditional.js';
import { freshnessLifetime, mayServeStale, mustRevalidateEachUse } from '../http/freshness.js';
import { getHeader, stripHopByHop, type HeaderMap } from '../http/headers.js';
import { directivesOf, type CacheRules } from '../http/targeted.js';
import { normaliseHost } from '../http/target.js';
import { varyFields, varySignature } from '../http/vary.js';
import { builtinBackendResponse, type BackendResponse, type BackendResponseAction, type DownstreamRequest, type Slicer } from '../policy/hooks.js';
import type { ProxyEnv } from '../context.js';
import type { UpstreamRequest, UpstreamResponse } from '../upstream.js';
import { sentRequest } from './backend-error.js';
import { parseContentRange } from '../slicer/slicer.js';

/**
 * The backend response decided (Varnish's vcl_backend_response): freshness from RFC 9111, the policy hook, the
 * builtin rules, then the object's headers committed. Pure but for the hook and the object it writes.
 */

const NO_BODY_STATUS = (s: number): boolean => s === 204 || s === 304 || (s >= 100 && s < 200);

/** What the fetch knows when the origin's headers arrive. */
export interface BerespInput {
  res: UpstreamResponse;
  bereq: UpstreamRequest;
  obj: CacheObject;
  /** The expired object this fetch revalidates, if any. */
  stale: CacheObject | undefined;
  isPass: boolean;
  req: DownstreamRequest;
  /** How many times this fetch was retried before this response (Varnish's bereq.retries). */
  retries?: number | undefined;
}

/** A 304 answering our conditional fetch of a complete stale object: the stale body is reused. */
export function isRevalidation304(i: BerespInput): boolean {
  return i.res.status === 304 && i.stale !== undefined && !i.isPass && i.stale.state === 'finished';
}

/** The BackendResponse the hooks see, from the origin's answer (merged onto the stale object's on a 304). */
export function backendResponse<Ctx>(env: ProxyEnv<Ctx>, i: BerespInput): BackendResponse {
  const was304 = isRevalidation304(i);
  const stale = i.stale as CacheObject;
  const status = was304 ? stale.status : i.res.status;
  const headers = was304 ? mergeNotModified(stale.headers, stripHopByHop(i.res.headers)) : stripHopByHop(i.res.headers);
  const life = freshnessLifetime(status, headers, i.obj.responseTimeMs, env.freshness, env.rules);
  i.obj.initialAgeSec = initialAgeSec(headers, i.obj.requestTimeMs, i.obj.responseTimeMs);
  const swr = deltaSeconds(directivesOf(headers, env.rules).cc.get('stale-while-revalidate'));
  const staleOk = mayServeStale(headers, env.rules);
  return {
    status,
    headers,
    ttlSec: staleOnArrival(headers, env.rules) ? 0 : life.lifetimeSec - i.obj.initialAgeSec,
    // Stale is served only where the response allows it (stale-while-revalidate) or the operator set grace, and
    // never against must-revalidate, proxy-revalidate, s-maxage or no-cache (RFC 9111 §4.2.4). A hook may still set it.
    graceSec: staleOk ? (swr ?? env.graceSec) : 0,
    keepSec: env.keepSec,
    staleIfDisconnected: staleOk && env.staleIfDisconnected,
    uncacheable: i.isPass,
    uncacheableReason: i.isPass ? 'pass' : undefined,
    hitForPassSec: undefined,
    doStream: true,
    doEsi: false,
    transitBytes: env.transitBytes,
    streamMinBytes: env.streamMinBytes,
    was304,
    isPass: i.isPass,
    ttlSource: life.source,
    segment: i.req.segment,
    bereq: sentRequest(i.bereq, i.retries ?? 0),
  };
}

/**
 * The rfc profile stores these with a TTL of 0, so every use revalidates them (kept when they have a validator):
 * no-cache (RFC 9111 §5.2.2.4) and an invalid Age (see ageFieldValid).
 */
function staleOnArrival(headers: HeaderMap, rules: CacheRules): boolean {
  if (rules.profile !== 'rfc') return false;
  return mustRevalidateEachUse(headers, rules) || !ageFieldValid(getHeader(headers, 'age'));
}

/**
 * Runs the upstreamResponseFilter hook, then the builtin rules unless it returned 'deliver', then the machine's own:
 * keep (objects with a validator outlive a zero TTL) and stale-if-error (a 5xx is not stored over a usable stale).
 */
export function decideBeresp<Ctx>(env: ProxyEnv<Ctx>, i: BerespInput, beresp: BackendResponse, ctx: Ctx, slicer: Slicer): 'retry' | undefined | Promise<'retry' | undefined> {
  const verdict = env.hooks.upstreamResponseFilter?.(beresp, ctx, slicer);
  // Synchronous unless the hook is async: a miss without one commits in the turn its response arrived (issue 16).
  if (isThenable(verdict)) return Promise.resolve(verdict).then((v) => afterHook(env, i, beresp, v));
  return afterHook(env, i, beresp, verdict);
}

/** A hook's answer that is a promise (or any thenable, as `await` would take it). */
function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}

function afterHook<Ctx>(env: ProxyEnv<Ctx>, i: BerespInput, beresp: BackendResponse, verdict: BackendResponseAction | undefined): 'retry' | undefined {
  if (verdict === 'retry') return 'retry';
  if (verdict !== 'deliver') builtinBackendResponse(beresp, i.bereq, env.hitForMissSec, env.rules);
  if (beresp.uncacheable && beresp.uncacheableReason === 'ttl-zero' && env.keepSec > 0 && hasValidator(beresp.headers)) {
    beresp.uncacheable = false;
    beresp.uncacheableReason = undefined;
    beresp.ttlSec = 0;
  }
  const staleIfError = i.stale !== undefined && !i.isPass && i.stale.staleUsableOnError(env.now());
  if (beresp.status >= 500 && staleIfError) {
    // RFC 5861 stale-if-error: the error is not stored over the stale object; the client gets the stale one.
    beresp.uncacheable = true;
    beresp.uncacheableReason = 'stale-if-error';
  }
  return undefined;
}

/**
 * A segment's 206 (a slicer subrequest or the range probe's kept body) is stored as the bytes its Content-Range
 * names: a body that ends short of them or runs past them (a Content-Length that disagrees with the Content-Range)
 * fails the segment instead of keeping it, where every later read through it would be cut until it expired.
 */
function segmentSpan(i: BerespInput, status: number): number | undefined {
  if (i.req.segment === undefined || status !== 206) return undefined;
  const cr = parseContentRange(getHeader(i.res.headers, 'content-range'));
  return cr === undefined ? undefined : cr.end - cr.start + 1;
}

/** Writes the decided response onto the object (headers, lifetimes, framing, ban fields), not yet stored. */
export function commitHeaders(i: BerespInput, beresp: BackendResponse, rules: CacheRules): void {
  const obj = i.obj;
  const clRaw = getHeader(i.res.headers, 'content-length');
  const expected = clRaw !== undefined && /^\d+$/.test(clRaw) ? Number(clRaw) : undefined;
  const cc = directivesOf(beresp.headers, rules).cc;
  obj.status = beresp.status;
  obj.headers = beresp.headers;
  obj.varyFields = varyFields(beresp.headers);
  obj.varySig = varySignature(obj.varyFields, i.req.headers);
  obj.doStream = beresp.doStream;
  obj.bodyless = i.bereq.method === 'HEAD' || NO_BODY_STATUS(beresp.status);
  obj.expectedLength = obj.bodyless && i.bereq.method !== 'HEAD' ? 0 : obj.bodyless ? expected : (segmentSpan(i, beresp.status) ?? expected);
  obj.graceSec = beresp.graceSec;
  obj.keepSec = beresp.keepSec;
  obj.staleIfDisconnected = beresp.staleIfDisconnected;
  obj.reqUrl = i.req.url;
  obj.reqHost = normaliseHost(getHeader(i.req.headers, 'host') ?? '');
  obj.tags = tagsOf(beresp.headers);
  // RFC 5861 stale-if-error, unless the response forbids stale (must-revalidate and the like, RFC 9111 §4.2.4).
  obj.staleIfErrorSec = mayServeStale(beresp.headers, rules) ? (deltaSeconds(cc.get('stale-if-error')) ?? 0) : 0;
  obj.streamMinBytes = beresp.streamMinBytes;
}

/** Invalidation tags of a response: Surrogate-Key (Fastly) or xkey (Varnish), space-separated. */
export function tagsOf(headers: HeaderMap): string[] {
  if (headers['surrogate-key'] === undefined && headers['xkey'] === undefined) return [];
  const raw = [getHeader(headers, 'surrogate-key'), getHeader(headers, 'xkey')].filter((v) => v !== undefined).join(' ');
  return raw.split(/[\s,]+/).filter((t) => t !== '');
}
