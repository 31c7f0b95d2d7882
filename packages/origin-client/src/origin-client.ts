import type { Readable } from 'node:stream';
import { Client, errors as undiciErrors, type Dispatcher } from 'undici';
import { Backend, type AdminHealth, type BackendConfig, type BackendCounters } from './backend.js';
import { createDirector, type Director, type DirectorType } from './directors.js';
import { dispatchRequest, type AbortLike, type DispatchedResponse, type ExchangeHooks, type OriginBody } from './body.js';
import { OriginError } from './errors.js';
import { openTunnel, type TunnelCounters } from './tunnel.js';

/**
 * The origin client: a pool per backend, a director over them, failover and retries. Structurally satisfies core's
 * `Upstream` port (request(req, {signal}) -> {status, headers, body}) without importing core.
 *
 * Failure handling (idempotent requests without a body only, so a retry cannot repeat a side effect):
 * - a connection that breaks before any response byte (a kept-alive socket the origin had closed) is retried once
 *   on the same backend, which opens a fresh connection;
 * - a connect failure, or a second break, moves on to the next backend the director offers (failover, bounded by
 *   `maxFailover`), as nginx's proxy_next_upstream does.
 * A response that started is never retried. Aborting the signal destroys the origin connection if a body was still
 * in flight (undici does that).
 */
export type Headers = Record<string, string | string[]>;

export interface OriginRequest {
  method: string;
  path: string;
  headers: Headers;
  body: Readable | null;
  /** Key for hash and shard directors (the cache key); defaults to the path. */
  key?: string | undefined;
  /** Use this backend (by name) instead of asking the director; a sick one fails the request (no failover). */
  backend?: string | undefined;
  /** The client connection's pin slot; see PinSlot in @sluice/core (same shape, structurally). */
  pin?: PinSlotLike | undefined;
}

/** Interim (1xx) responses before the final one, 100 Continue and 101 aside (103 Early Hints). */
export type OnInfo = (status: number, headers: Headers) => void;

/** Structural twin of core's PinSlot (origin-client does not import core). */
export interface PinSlotLike {
  pinned: boolean;
  closed: boolean;
  data: unknown;
  onClose: (() => void) | undefined;
}

/** What the origin client keeps in a pinned slot: one origin connection, and whether it is gone. */
interface PinnedConnection {
  backend: Backend;
  client: Client;
  connected: boolean;
  lost: boolean;
}

/** A 401 whose challenge authenticates the connection rather than the request. */
function isConnectionAuthChallenge(status: number, headers: Record<string, string | string[] | undefined>): boolean {
  if (status !== 401) return false;
  const v = headers['www-authenticate'];
  const all = Array.isArray(v) ? v.join(',') : (v ?? '');
  return /(^|[\s,])(ntlm|negotiate)\b/i.test(all);
}

export interface OriginResponse {
  status: number;
  headers: Headers;
  /**
   * Paused: nothing flows until the consumer reads, pipes or resumes it (a 'data' listener alone does not), or
   * attaches a sink (`OriginBody.attach`: the chunks straight from undici's parser, no stream events).
   */
  body: OriginBody;
  /** Name of the backend that answered. */
  backend: string;
}

export interface OriginClientConfig {
  backends: BackendConfig[];
  director?: DirectorType;
  /** Points per backend on the shard director's ring (default 67). */
  replicas?: number;
  /** Most other backends tried after a failure (default 2). */
  maxFailover?: number;
  /** CONNECT destinations allowed, as `host:port` (`*` and `*.domain` allowed); empty = CONNECT denied. */
  connectAllow?: string[];
  /** Connect timeout for CONNECT tunnels, ms (default 5000). */
  tunnelConnectTimeoutMs?: number;
  /**
   * Named directors over some of the backends (Varnish's `new api = directors.shard(); api.add_backend(a)`): a
   * request whose policy names one (`req.backend = 'api'`) is spread over its backends by its type, with failover
   * among them; the default director still spreads the rest over all backends.
   */
  directors?: Record<string, NamedDirectorConfig>;
}

export interface NamedDirectorConfig {
  type: DirectorType;
  /** Names of configured backends, at least one. */
  backends: string[];
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors that happened on an established connection before the response started. */
function isBrokenConnection(e: unknown): boolean {
  if (e instanceof undiciErrors.SocketError) return true;
  const code = (e as { code?: unknown }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET';
}

/** Errors where no connection could be made. */
function isConnectFailure(e: unknown): boolean {
  if (e instanceof undiciErrors.ConnectTimeoutError) return true;
  const code = (e as { code?: unknown }).code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN';
}

/** One backend as `backend list` shows it. */
export interface BackendStatus {
  name: string;
  url: string;
  admin: AdminHealth;
  probe: 'healthy' | 'sick' | 'none';
  healthy: boolean;
  /** Requests in flight on it now. */
  active: number;
}

export class OriginClient {
  readonly backends: Backend[];
  readonly director: Director;
  private readonly namedDirectors = new Map<string, { director: Director; backends: Backend[] }>();
  /** The backends by name (fixed at construction). */
  private readonly byName: ReadonlyMap<string, Backend>;
  private readonly maxFailover: number;
  private readonly connectAllow: readonly string[];
  private readonly tunnelConnectTimeoutMs: number;
  readonly tunnelCounters: TunnelCounters = { opened: 0, denied: 0, failed: 0 };

  constructor(config: OriginClientConfig) {
    if (config.backends.length === 0) throw new OriginError('ORIGIN_ERR_CONFIG', 'at least one backend is required');
    this.backends = config.backends.map((b) => new Backend(b));
    const names = new Set<string>();
    for (const b of this.backends) {
      if (names.has(b.name)) throw new OriginError('ORIGIN_ERR_CONFIG', `two backends are named "${b.name}"`);
      names.add(b.name);
    }
    this.byName = new Map(this.backends.map((b) => [b.name, b]));
    this.director = createDirector(config.director ?? 'round-robin', { replicas: config.replicas ?? 67 });
    for (const [name, d] of Object.entries(config.directors ?? {})) {
      if (names.has(name)) throw new OriginError('ORIGIN_ERR_CONFIG', `director "${name}" has the name of a backend`);
      if (d.backends.length === 0) throw new OriginError('ORIGIN_ERR_CONFIG', `director "${name}" has no backends`);
      const members = d.backends.map((b) => {
        const found = this.backends.find((x) => x.name === b);
        if (found === undefined) throw new OriginError('ORIGIN_ERR_CONFIG', `director "${name}": no backend is named "${b}"`);
        return found;
      });
      this.namedDirectors.set(name, { director: createDirector(d.type, { replicas: config.replicas ?? 67 }), backends: members });
    }
    this.maxFailover = config.maxFailover ?? 2;
    this.connectAllow = config.connectAllow ?? [];
    this.tunnelConnectTimeoutMs = config.tunnelConnectTimeoutMs ?? 5_000;
    for (const b of this.backends) b.probe?.start();
  }

  /** Backends in the director's order of preference for `key`; empty when all are sick. */
  choose(key: string, director: Director = this.director, backends: readonly Backend[] = this.backends): Backend[] {
    // One backend under a director that only filters and orders (round-robin, fallback): it when healthy, without the
    // per-request candidate list (the hash, shard and random directors still decide, e.g. a zero random weight).
    if (backends.length === 1 && (director.type === 'round-robin' || director.type === 'fallback')) {
      const only = backends[0] as Backend;
      return only.healthy ? [only] : [];
    }
    const byName = this.byName;
    return director
      .choose(backends.map((b) => ({ name: b.name, weight: b.weight, healthy: b.healthy })), key)
      .map((c) => byName.get(c.name) as Backend);
  }

  /**
   * What policy named (req.backend_hint): a named director's healthy backends in its order for `key` (failover among
   * them), or a backend when healthy (one candidate, no failover).
   */
  private named(name: string, key: string): Backend[] {
    const d = this.namedDirectors.get(name);
    if (d !== undefined) return this.choose(key, d.director, d.backends);
    const b = this.byName.get(name);
    if (b === undefined) throw new OriginError('ORIGIN_ERR_NO_BACKEND', `no backend or director is named "${name}"`, { status: 503 });
    return b.healthy ? [b] : [];
  }

  async request(req: OriginRequest, opts: { signal: AbortLike; onInfo?: OnInfo | undefined }): Promise<OriginResponse> {
    if (opts.signal.aborted) throw opts.signal.reason;
    if (req.pin?.pinned === true) return this.pinnedRequest(req, req.pin, opts.signal);
    const candidates = req.backend !== undefined ? this.named(req.backend, req.key ?? req.path) : this.choose(req.key ?? req.path);
    if (candidates.length === 0) {
      const which = req.backend === undefined ? 'no healthy backend' : this.namedDirectors.has(req.backend) ? `director "${req.backend}" has no healthy backend` : `backend "${req.backend}" is sick`;
      throw new OriginError('ORIGIN_ERR_NO_BACKEND', which, { status: 503 });
    }
    const replayable = req.body === null && IDEMPOTENT.has(req.method);
    let last: unknown;
    const tries = replayable ? Math.min(candidates.length, this.maxFailover + 1) : 1;
    for (let i = 0; i < tries; i++) {
      const backend = candidates[i] as Backend;
      try {
        return await this.attempt(backend, req, opts.signal, false, opts.onInfo);
      } catch (e: unknown) {
        last = e;
        if (!replayable || opts.signal.aborted) break;
        if (isBrokenConnection(e)) {
          // A kept-alive connection the origin had closed: once more on this backend, on a fresh connection.
          backend.counters.retries++;
          try {
            return await this.attempt(backend, req, opts.signal, true, opts.onInfo);
          } catch (e2: unknown) {
            last = e2;
            if (!isBrokenConnection(e2) && !isConnectFailure(e2)) break;
          }
        } else if (!isConnectFailure(e)) {
          break;
        }
        if (i + 1 < tries) backend.counters.failovers++;
      }
    }
    throw wrap(last, candidates[0] as Backend, req, opts.signal);
  }

  /**
   * A request of a pinned client connection: over its one origin connection, never another. If that connection is
   * gone the client gets an error (502) instead of a request on a different connection, which the origin would
   * not recognise as authenticated.
   */
  private async pinnedRequest(req: OriginRequest, pin: PinSlotLike, signal: AbortLike): Promise<OriginResponse> {
    const p = pin.data as PinnedConnection;
    if (p.lost) throw new OriginError('ORIGIN_ERR_PIN_LOST', `the pinned connection to ${p.backend.name} is gone`, { status: 502 });
    p.backend.counters.requests++;
    const headers: Headers = { ...req.headers };
    if (p.backend.config.hostHeader !== undefined) headers['host'] = p.backend.config.hostHeader;
    try {
      const res = await dispatchRequest(p.client, { method: req.method as Dispatcher.HttpMethod, path: req.path, headers, body: req.body }, signal, p.backend.hooks);
      return { status: res.statusCode, headers: res.headers, body: res.body, backend: p.backend.name };
    } catch (e: unknown) {
      p.backend.counters.failures++;
      // Any failure here means the one authenticated connection is unusable: never retried elsewhere.
      p.lost = true;
      if (e instanceof OriginError) throw e;
      throw new OriginError('ORIGIN_ERR_PIN_LOST', `the pinned connection to ${p.backend.name} failed`, { status: 502, cause: e });
    }
  }

  /** Binds a client connection to a new origin connection of `backend` (connection-oriented auth). */
  private pin(slot: PinSlotLike, backend: Backend): void {
    if (slot.pinned || slot.closed) return;
    // Pinned connections live outside the pool and its limit: without a cap of their own, every client connection
    // that sends `Authorization: NTLM ...` to a challenging origin would open one more origin connection.
    if (backend.pinnedOpen >= backend.maxPinned) return;
    backend.pinnedOpen++;
    const client = backend.pinnedClient();
    const p: PinnedConnection = { backend, client, connected: false, lost: false };
    client.on('connect', () => {
      // A pinned client must never open a second connection: a reconnect means the authenticated one is gone.
      if (p.connected) p.lost = true;
      p.connected = true;
    });
    client.on('disconnect', () => {
      if (p.connected) p.lost = true;
    });
    slot.data = p;
    slot.pinned = true;
    slot.onClose = () => {
      backend.pinnedOpen--;
      void client.destroy();
    };
    backend.counters.pinned++;
  }

  /** One request to one backend: a connection slot, credentials, the 401 retry. */
  private async attempt(backend: Backend, req: OriginRequest, signal: AbortLike, fresh = false, onInfo?: OnInfo): Promise<OriginResponse> {
    // A free slot is taken at once: the request is dispatched (and written to the origin socket) synchronously.
    const queued = backend.acquire(signal);
    if (queued !== undefined) await queued;
    const dispatcher: Dispatcher = fresh ? backend.freshClient() : backend.pool;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        backend.release();
        if (fresh) void dispatcher.close();
      }
    };
    try {
      backend.counters.requests++;
      const auth = backend.config.auth;
      const credentials = auth === undefined ? undefined : auth.type === 'basic' ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` : `Bearer ${auth.token}`;
      const preempt = credentials !== undefined && auth?.preemptive !== false && req.headers['authorization'] === undefined;
      // The caller's headers go as they are (undici only reads them) unless something is set on them here: a copy then.
      const headers: Headers = backend.config.hostHeader === undefined && !preempt ? req.headers : { ...req.headers };
      if (backend.config.hostHeader !== undefined) headers['host'] = backend.config.hostHeader;
      if (preempt) headers['authorization'] = credentials;
      // Through undici's dispatch with a handler of our own, not request(): no RequestHandler, AsyncResource or
      // BodyReadable, no stream event per chunk unless a consumer reads the body as a stream (issue 16). The body
      // counts backend bytes as they arrive and frees the connection slot when the exchange is over.
      const hooks: ExchangeHooks = onInfo === undefined ? backend.hooks : { count: backend.hooks.count, onInfo: (i) => forwardInfo(onInfo, i) };
      // `servername` is not in undici's typings, but its Request takes it (else derives it from the Host header).
      const send = (h: Headers): Promise<DispatchedResponse> =>
        dispatchRequest(
          dispatcher,
          {
            method: req.method as Dispatcher.HttpMethod,
            path: req.path,
            headers: h,
            body: req.body,
            reset: fresh || backend.config.keepAlive === false,
            servername: backend.plainServername,
          } as Dispatcher.DispatchOptions & { servername: string | undefined },
          signal,
          hooks,
        );
      let res = await send(headers);
      // A 401 we can answer: retry once with the configured credentials (only when they were not sent yet).
      if (res.statusCode === 401 && credentials !== undefined && headers['authorization'] === undefined && req.body === null) {
        const challenge = String(res.headers['www-authenticate'] ?? '').toLowerCase();
        if (challenge.startsWith(auth?.type ?? '')) {
          await res.body.dump();
          res = await send({ ...headers, authorization: credentials });
        }
      }
      if (req.pin !== undefined && isConnectionAuthChallenge(res.statusCode, res.headers)) this.pin(req.pin, backend);
      res.body.whenFinished(release);
      return { status: res.statusCode, headers: res.headers, body: res.body, backend: backend.name };
    } catch (e: unknown) {
      release();
      backend.counters.failures++;
      throw e;
    }
  }

  /** A TCP tunnel for CONNECT host:port, if the allowlist permits it (deny by default). */
  tunnel(host: string, port: number, opts: { signal: AbortSignal }): Promise<import('node:net').Socket> {
    return openTunnel(this.connectAllow, host, port, { signal: opts.signal, connectTimeoutMs: this.tunnelConnectTimeoutMs, counters: this.tunnelCounters });
  }

  /**
   * Every backend with its health, as `varnishadm backend.list` shows them: the operator's setting (`admin`), what
   * the probe says (`probe`: healthy, sick, or none without a probe) and the result the directors use (`healthy`).
   */
  listBackends(): BackendStatus[] {
    return this.backends.map((b) => ({
      name: b.name,
      url: b.origin,
      admin: b.adminHealth,
      probe: b.probe === undefined ? 'none' : b.probe.healthy ? 'healthy' : 'sick',
      healthy: b.healthy,
      active: b.active,
    }));
  }

  /** Sets one backend's health by hand (`varnishadm backend.set_health NAME sick|healthy|auto`); undefined when no backend has that name. */
  setHealth(name: string, health: AdminHealth): BackendStatus | undefined {
    const b = this.backends.find((x) => x.name === name);
    if (b === undefined) return undefined;
    if (b.adminHealth !== health) {
      const before = b.healthy;
      b.adminHealth = health;
      if (b.healthy !== before) b.counters.healthChanges++;
    }
    return this.listBackends().find((x) => x.name === name);
  }

  /** Per-backend counters and health, for stats. */
  counters(): Array<{ name: string; url: string; healthy: boolean; active: number } & BackendCounters> {
    return this.backends.map((b) => ({ name: b.name, url: b.origin, healthy: b.healthy, active: b.active, ...b.counters }));
  }

  async close(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.close()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.destroy()));
  }
}

/** undici's refusals of the request itself: nothing was wrong with the connection or the origin. */
const REQUEST_SIDE_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);

/** The request body stream failed or was destroyed before its end (the client's body broke off or was malformed). */
function bodyFailed(body: Readable | null): boolean {
  return body !== null && (body.errored !== null || (body.destroyed && !body.readableEnded));
}

/**
 * One OriginError for a failed request, from the most specific cause: our own signal (the client left, shutdown),
 * a timeout, the connection (refused, reset, TLS, a broken response), the request itself (undici refused it, or its
 * body stream failed). The signal comes first: undici rejects with the abort reason, whatever it is.
 */
/** An interim response from undici to `onInfo` (100 Continue and 101 are the connection's business), names lowercase. */
function forwardInfo(onInfo: OnInfo, i: { statusCode: number; headers: Headers }): void {
  if (i.statusCode <= 101) return;
  const out: Headers = {};
  for (const [k, v] of Object.entries(i.headers)) out[k.toLowerCase()] = v;
  onInfo(i.statusCode, out);
}

function wrap(e: unknown, backend: Backend, req: OriginRequest, signal: AbortLike): OriginError {
  if (e instanceof OriginError) return e;
  if (signal.aborted) return new OriginError('ORIGIN_ERR_ABORTED', `request to ${backend.origin} aborted`, { cause: e });
  if (e instanceof undiciErrors.ConnectTimeoutError) {
    return new OriginError('ORIGIN_ERR_TIMEOUT', `connect to ${backend.origin} timed out`, { cause: e, status: 503 });
  }
  if (e instanceof undiciErrors.HeadersTimeoutError) {
    return new OriginError('ORIGIN_ERR_TIMEOUT', `no response headers from ${backend.origin} in time`, { cause: e, status: 504 });
  }
  const code = (e as { code?: unknown }).code;
  const detail = typeof code === 'string' ? code : e instanceof Error ? e.message : String(e);
  if (isConnectFailure(e)) return new OriginError('ORIGIN_ERR_CONNECT', `cannot reach ${backend.origin}: ${detail}`, { cause: e, status: 503 });
  if (isBrokenConnection(e)) return new OriginError('ORIGIN_ERR_CONNECT', `connection to ${backend.origin} failed: ${detail}`, { cause: e, status: 503 });
  if ((typeof code === 'string' && REQUEST_SIDE_CODES.has(code)) || bodyFailed(req.body)) {
    const why = e instanceof Error && e.message !== detail ? `${detail}: ${e.message}` : detail;
    return new OriginError('ORIGIN_ERR_REQUEST', `request to ${backend.origin} not sent: ${why}`, { cause: e, status: 503 });
  }
  if (e instanceof undiciErrors.RequestAbortedError || (e instanceof Error && e.name === 'AbortError')) {
    return new OriginError('ORIGIN_ERR_ABORTED', `request to ${backend.origin} aborted`, { cause: e });
  }
  // The rest happened on the connection: TLS verification, a response undici could not parse, a closed socket.
  return new OriginError('ORIGIN_ERR_CONNECT', `connection to ${backend.origin} failed: ${detail}`, { cause: e, status: 503 });
}

export function createOriginClient(config: OriginClientConfig): OriginClient {
  return new OriginClient(config);
}
