import type { HeaderMap } from '../http/headers.js';
import { getHeader } from '../http/headers.js';
import { cacheControlOf } from '../http/cache-control.js';
import { normaliseHost } from '../http/target.js';
import { builtinUncacheableReason, notStorableReason, type NotStoredReason } from '../http/freshness.js';
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
 *   vcl_deliver           -> responseFilter
 *
 * See docs/lifecycle.md for the order.
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
}

/** One segment of a sliced object: bytes [index * size, (index + 1) * size). */
export interface Segment {
  index: number;
  size: number;
  /** The meta object's generation when slicing was decided from the response (segment keys carry it). */
  gen?: number | undefined;
}

/** What vcl_recv can return: look the request up, pass it, pipe it, or answer it here. */
export type RecvAction =
  | 'lookup'
  | 'pass'
  | 'pipe'
  | { synth: { status: number; body?: string; headers?: HeaderMap } };

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
}

/** The response about to be written to one client (vcl_deliver). */
export interface DeliveryResponse {
  status: number;
  headers: HeaderMap;
}

export interface ProxyHooks<Ctx = Record<string, unknown>> {
  /** Makes the per-request context every hook receives. */
  newCtx?(): Ctx;
  /** vcl_recv. Return undefined to run the built-in rules. */
  requestFilter?(req: DownstreamRequest, ctx: Ctx): RecvAction | undefined | Promise<RecvAction | undefined>;
  /** vcl_hash: the cache key. Return undefined for the default (host + URL). A wrong key poisons the cache. */
  cacheKey?(req: DownstreamRequest, ctx: Ctx): string | undefined;
  /**
   * vcl_backend_fetch: edit the request sent to the origin. `slicer.enable(size)` here makes the fetch a HEAD first
   * and slices a qualifying object; one that does not qualify is fetched again with `slicer.failed()` true.
   */
  upstreamRequestFilter?(bereq: { method: string; path: string; headers: HeaderMap }, ctx: Ctx, slicer: Slicer): void | Promise<void>;
  /**
   * vcl_backend_response: runs before the object is stored, so its edits are persisted. Return 'deliver' to skip the
   * built-in uncacheable checks (as `return (deliver)` skips builtin.vcl). `slicer.enable(size)` here slices the object
   * when it qualifies (its body is never read; segments are fetched instead), and returns false when it cannot.
   */
  upstreamResponseFilter?(beresp: BackendResponse, ctx: Ctx, slicer: Slicer): 'deliver' | undefined | Promise<'deliver' | undefined>;
  /** vcl_deliver: edit the response for this one client. */
  responseFilter?(resp: DeliveryResponse, req: DownstreamRequest, ctx: Ctx): void;
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
 * builtin.vcl vcl_backend_response, on top of RFC 9111 storability: ttl <= 0, Set-Cookie, Surrogate-Control no-store,
 * Cache-Control no-cache/no-store/private, or Vary: * make the object uncacheable; the key becomes hit-for-miss for
 * `hitForMissSec` (Varnish: 120 s).
 */
export function builtinBackendResponse(
  beresp: BackendResponse,
  bereq: { method: string; headers: HeaderMap },
  hitForMissSec: number,
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
  );
  const reason =
    beresp.uncacheableReason ??
    rfc ??
    builtinUncacheableReason(beresp.headers) ??
    (beresp.ttlSec <= 0 ? 'ttl-zero' : undefined);
  if (reason !== undefined || beresp.uncacheable) {
    beresp.uncacheable = true;
    beresp.uncacheableReason = reason ?? 'policy';
    beresp.ttlSec = hitForMissSec;
  }
}
