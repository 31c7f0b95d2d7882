import type { Duplex, Readable } from 'node:stream';
import type { HeaderMap } from './http/headers.js';

/**
 * The Upstream port: what core needs from whatever reaches origins. @sluice/origin-client satisfies it structurally;
 * tests and replay can hand core any other implementation.
 */
export interface UpstreamRequest {
  method: string;
  /** origin-form request target: path and query. */
  path: string;
  headers: HeaderMap;
  /** Request body for methods that have one; null when there is none. */
  body: Readable | null;
  /**
   * The backend to use, by its configured name (policy's `req.backend` / `bereq.backend`); undefined lets the
   * director choose. An upstream that does not know the name fails the request.
   */
  backend?: string | undefined;
  /** The cache key, for directors that pick a backend by key (hash, shard). */
  key?: string | undefined;
  /** The client connection's pin slot (connection-oriented auth); the upstream may bind it to one origin connection. */
  pin?: PinSlot | undefined;
}

/**
 * One per client connection. Connection-oriented authentication (NTLM, Negotiate) authenticates a TCP connection,
 * not a request: once the upstream pins the slot, every later request of that client connection must go over the
 * same origin connection, and is never cached. `closed` turns true when the client connection closes, and
 * `onClose` (set by the upstream) releases what it pinned.
 */
export interface PinSlot {
  pinned: boolean;
  closed: boolean;
  /** Owned by the upstream (its pinned connection). */
  data: unknown;
  onClose: (() => void) | undefined;
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  body: Readable;
  /** Whether the request went over a reused (keep-alive) connection. */
  reusedConnection?: boolean;
}

/**
 * What an upstream is handed to learn that nobody wants the answer any more: an AbortSignal fits, and so does the
 * cache's cheaper FetchAbort (an AbortSignal costs ~6 us to build in Node 20, issue 16). Listeners get no event.
 */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface Upstream {
  /**
   * Sends one request to an origin. Resolves once response headers arrived; the body streams afterwards. Rejects
   * when no response could be had (connect failure, timeout). Aborting `signal` destroys the origin connection if a
   * body was still in flight. `onInfo`, when given, hears interim responses (103 Early Hints) before the final one.
   */
  request(req: UpstreamRequest, opts: { signal: AbortLike; onInfo?: ((status: number, headers: HeaderMap) => void) | undefined }): Promise<UpstreamResponse>;
  /**
   * Optional: opens a TCP tunnel for `CONNECT host:port`. Rejects with an error carrying `status` 403 when the
   * destination is not allowed, 502/504 when it cannot be reached. Without it the proxy answers CONNECT with 405.
   */
  tunnel?(host: string, port: number, opts: { signal: AbortSignal }): Promise<Duplex>;
  /** Optional: per-backend counters and health, included in the proxy's stats snapshot. */
  counters?(): Array<Record<string, string | number | boolean>>;
}
