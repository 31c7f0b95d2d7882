import type { HeaderMap } from '../http/headers.js';
import { getHeader } from '../http/headers.js';
import { cacheControlOf } from '../http/cache-control.js';
import { normaliseHost } from '../http/target.js';
import { builtinUncacheableReason, notStorableReason, type NotStoredReason } from '../http/freshness.js';
import { RFC_RULES, type CacheRules } from '../http/targeted.js';
import type { Slicer } from '../slicer/handle.js';

export type { Slicer } from '../slicer/handle.js';

/**
 * Policy hooks: the typed version of VCL. Each hook is optional. A hook that returns `undefined` falls through to the
 * built-in behaviour (Varnish's builtin.vcl), exactly as a VCL subroutine without `return` falls through to builtin.
 *
 *   vcl_recv              -> requestFilter
 *   vcl_hash              -> cacheKey
 *   vcl_backend_fetch     -> upstreamRequestFilter
 *   vcl_backend_response  -> upstreamResponseFilter
 *   vcl_backend_error     -> backendError
 *   vcl_deliver, vcl_synth -> responseFilter
 *
 * See docs/lifecycle.md for the order, docs/vcl.md for common VCL written as hooks, and CHANGELOG.md for changes.
 */

/** The client request as the policy sees it. Header names are lowercase; edits are visible to later steps. */
export interface DownstreamRequest {
  method: string;
  /** origin-form target: path and query */
  url: string;
  headers: HeaderMap;
  httpVersion: string;
  remoteAddress: string;
  /** Set on the slicer's segment subrequests: which segment of the object this request fetches. */
  segment?: Segment | undefined;
  /**
   * How many times this request restarted (Varnish's `req.restarts`): 0 on its first walk, then 1, 2, ... The proxy
   * sets it; a restart keeps the request as the hooks left it (URL, headers, backend).
   */
  restarts: number;
  /**
   * The backend to fetch from (Varnish's `req.backend_hint`): the name of a configured backend. Undefined lets the
   * director choose. Copied to the backend request, where upstreamRequestFilter may change it (`bereq.backend`).
   */
  backend?: string | undefined;
  /** Set on ESI include subrequests: how deep the include is (1 for an include of the client's page; Varnish's req.esi_level). */
  esiLevel?: number | undefined;
}

/** One segment of a sliced object: bytes [index * size, (index + 1) * size). */
export interface Segment {
  index: number;
  size: number;
  /** The meta object's generation when slicing was decided from the response (segment keys carry it). */
  gen?: number | undefined;
}

/** A synthetic response from policy (Varnish's `return (synth(status))` with the body vcl_synth writes). */
export interface SynthSpec {
  status: number;
  body?: string;
  headers?: HeaderMap;
}

/** What vcl_recv can return: look the request up, pass it, pipe it, answer it here, or start it over. */
export type RecvAction = 'lookup' | 'pass' | 'pipe' | 'restart' | { synth: SynthSpec };

/**
 * The request a fetch sent, as the upstream hooks see it (Varnish's `bereq`): `url` is the origin-form target.
 * Read-only after it was sent; `retries` counts this fetch's retries (Varnish's `bereq.retries`).
 */
export interface SentRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<HeaderMap>;
  /** The backend name asked for (undefined: the director chose). */
  readonly backend: string | undefined;
  readonly retries: number;
}

/** What vcl_backend_response can return: skip the builtin rules ('deliver'), or fetch again ('retry'). */
export type BackendResponseAction = 'deliver' | 'retry';

/** A fetch that got no usable response (vcl_backend_error): what was sent, and why it failed. */
export interface BackendFailure {
  readonly bereq: SentRequest;
  /** The status the client gets by default: 503, or the upstream's 502/504. */
  readonly status: number;
  readonly message: string;
}

/** What vcl_backend_error can return: fetch again ('retry', up to maxRetries), or make the response. */
export type BackendErrorAction = 'retry' | { synth: SynthSpec };

/**
 * What vcl_deliver / vcl_synth can return: nothing (deliver), start the request over ('restart', up to maxRestarts;
 * `req.restarts` counts them), or answer with a synthetic response instead.
 */
export type DeliverAction = void | undefined | 'restart' | { synth: SynthSpec };

/**
 * The origin response before it is stored (Varnish's beresp). Mutable: what the hook sets is what is stored.
 * Times are seconds; `ttlSec` is the remaining freshness (lifetime minus the age it arrived with).
 */
export interface BackendResponse {
  readonly status: number;
  headers: HeaderMap;
  ttlSec: number;
  graceSec: number;
  keepSec: number;
  /**
   * Serve this object stale, within its keep window, when the origin cannot be reached (connection refused or closed,
   * timeout). Default: the proxy's `staleIfDisconnected`, false when the response forbids stale (must-revalidate,
   * proxy-revalidate, s-maxage, no-cache: RFC 9111 §4.2.4).
   */
  staleIfDisconnected: boolean;
  /** Not stored; the key becomes hit-for-miss for `ttlSec` (Varnish's beresp.uncacheable). */
  uncacheable: boolean;
  /** Why it cannot or will not be stored: set by the RFC rules before the hook, or by policy. */
  uncacheableReason: NotStoredReason | undefined;
  /**
   * Policy only: make the key hit-for-pass for this many seconds (Varnish's `return (pass(N))`): later requests are
   * passed, with their Range and conditional headers, until it expires.
   */
  hitForPassSec: number | undefined;
  /** Stream the body to clients as it arrives (default true). */
  doStream: boolean;
  /**
   * Process the body as an ESI template (Varnish's beresp.do_esi, default false): parsed once as it arrives, and on
   * delivery each `<esi:include src="..."/>` replaced by the body of a subrequest for src. See esi/ and the README.
   */
  doEsi: boolean;
  /** Per-response transit buffer for an unstored body, bytes (default: the proxy's transitBytes). */
  transitBytes: number;
  /** Per-response adaptive streaming threshold, bytes (default: the proxy's streamMinBytes). */
  streamMinBytes: number;
  /** True when this fetch revalidated a stale object and the origin answered 304 (Varnish's beresp.was_304). */
  readonly was304: boolean;
  /** True for a pass fetch (never stored whatever the hook does). */
  readonly isPass: boolean;
  /** The freshness lifetime's source, for logs. */
  readonly ttlSource: string;
  /** Set when this is a slicer segment fetch (its 206 is stored as the segment). */
  readonly segment: Segment | undefined;
  /** The request this response answers, as it was sent (Varnish's `bereq` in vcl_backend_response). */
  readonly bereq: SentRequest;
}

/** The response about to be written to one client (vcl_deliver), or a synthetic one (vcl_synth). */
export interface DeliveryResponse {
  status: number;
  headers: HeaderMap;
  /** How many times the object was a hit before this one (Varnish's `obj.hits`): 0 on a miss, pass or synth. */
  readonly hits: number;
  /** Whether this response came from the cache: a hit, grace or stale-if-error (Varnish's `req.is_hit`). */
  readonly isHit: boolean;
  /** The object is not stored (pass, hit-for-miss, hit-for-pass, uncacheable response; Varnish's `obj.uncacheable`). */
  readonly uncacheable: boolean;
  /** True for a synthetic response (vcl_synth): a step, policy or a failed fetch made it, not an object. */
  readonly synthetic: boolean;
}

export interface ProxyHooks<Ctx = Record<string, unknown>> {
  /** Makes the per-request context every hook receives. */
  newCtx?(): Ctx;
  /** vcl_recv. Return undefined to run the built-in rules; `req.restarts` tells a restarted request. */
  requestFilter?(req: DownstreamRequest, ctx: Ctx): RecvAction | undefined | Promise<RecvAction | undefined>;
  /**
   * vcl_hash: the cache key. Return undefined for the default (host + URL). A wrong key poisons the cache. May be
   * async; a plain return value costs no promise.
   */
  cacheKey?(req: DownstreamRequest, ctx: Ctx): string | undefined | Promise<string | undefined>;
  /**
   * vcl_backend_fetch: edit the request sent to the origin. `bereq.backend` names the backend to use (from
   * `req.backend`; undefined lets the director choose). `slicer.enable(size)` here makes the fetch a HEAD first and
   * slices a qualifying object; one that does not qualify is fetched again with `slicer.failed()` true.
   */
  upstreamRequestFilter?(bereq: { method: string; path: string; headers: HeaderMap; backend?: string | undefined }, ctx: Ctx, slicer: Slicer): void | Promise<void>;
  /**
   * vcl_backend_response: runs before the object is stored, so its edits are persisted. `beresp.bereq` is the request
   * that was sent. Return 'deliver' to skip the built-in uncacheable checks (as `return (deliver)` skips builtin.vcl),
   * or 'retry' to fetch again (upstreamRequestFilter runs again; `bereq.retries` counts, up to maxRetries).
   * `slicer.enable(size)` here slices the object when it qualifies (its body is never read; segments are fetched
   * instead), and returns false when it cannot.
   */
  upstreamResponseFilter?(beresp: BackendResponse, ctx: Ctx, slicer: Slicer): BackendResponseAction | undefined | Promise<BackendResponseAction | undefined>;
  /**
   * vcl_backend_error: the fetch got no response (connection refused, reset, timeout, no backend). Return 'retry' to
   * fetch again (up to maxRetries), `{ synth }` to make the response every waiting client gets (not stored), or
   * undefined for the default (the upstream's 502/504, else 503 "Backend fetch failed").
   */
  backendError?(err: BackendFailure, ctx: Ctx): BackendErrorAction | undefined | Promise<BackendErrorAction | undefined>;
  /**
   * vcl_deliver (and vcl_synth for synthetic responses): edit the response for this one client, before its head is
   * written. Return 'restart' to start the request over from requestFilter (`req.restarts` counts; past
   * maxRestarts the client gets a 503), or `{ synth }` to answer with a synthetic response instead. May be async; a
   * plain return value costs no promise.
   */
  responseFilter?(resp: DeliveryResponse, req: DownstreamRequest, ctx: Ctx): DeliverAction | Promise<DeliverAction>;
  /**
   * Slice this GET/HEAD's object into segments of this many bytes, each fetched with an origin Range request and cached
   * on its own (0: do not slice). Undefined falls back to the proxy's `slice` setting.
   */
  sliceSize?(req: DownstreamRequest, ctx: Ctx): number | undefined;
}

const LOOKUP_METHODS = new Set(['GET', 'HEAD']);
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'TRACE', 'OPTIONS', 'DELETE', 'PATCH']);

/** builtin.vcl vcl_recv: pipe unknown methods, pass non-GET/HEAD, pass on Authorization or Cookie, else look up. */
export function builtinRecv(req: DownstreamRequest): RecvAction {
  if (req.method === 'PRI') return { synth: { status: 405 } };
  if (!KNOWN_METHODS.has(req.method)) return 'pipe';
  if (!LOOKUP_METHODS.has(req.method)) return 'pass';
  if (req.headers['authorization'] !== undefined || req.headers['cookie'] !== undefined) return 'pass';
  return 'lookup';
}

/** builtin.vcl vcl_hash: URL plus Host, normalised (no case, default port or trailing dot; empty when none). */
export function builtinCacheKey(req: DownstreamRequest): string {
  return `${normaliseHost(getHeader(req.headers, 'host') ?? '')}${req.url}`;
}

/**
 * builtin.vcl vcl_backend_response, on top of RFC 9111 storability (under `rules`: the profile and the targeted
 * fields): ttl <= 0, Cache-Control no-store/private, or Vary: * make the object uncacheable, and with the varnish
 * profile also Set-Cookie, no-cache and Surrogate-Control no-store; the key becomes hit-for-miss for `hitForMissSec`
 * (Varnish: 120 s).
 */
export function builtinBackendResponse(
  beresp: Omit<BackendResponse, 'bereq'>,
  bereq: { method: string; headers: HeaderMap },
  hitForMissSec: number,
  rules: CacheRules = RFC_RULES,
): void {
  if (beresp.isPass) return;
  if (beresp.hitForPassSec !== undefined && beresp.hitForPassSec > 0) {
    beresp.uncacheable = true;
    beresp.uncacheableReason ??= 'hit-for-pass';
    return;
  }
  const rfc = notStorableReason(
    bereq.method,
    // A segment's 206 is a whole stored object for the slicer.
    beresp.segment !== undefined && beresp.status === 206 ? 200 : beresp.status,
    beresp.headers,
    cacheControlOf(bereq.headers),
    bereq.headers['authorization'] !== undefined,
    rules,
  );
  const reason =
    beresp.uncacheableReason ??
    rfc ??
    builtinUncacheableReason(beresp.headers, rules) ??
    (beresp.ttlSec <= 0 ? 'ttl-zero' : undefined);
  if (reason !== undefined || beresp.uncacheable) {
    beresp.uncacheable = true;
    beresp.uncacheableReason = reason ?? 'policy';
    beresp.ttlSec = hitForMissSec;
  }
}
