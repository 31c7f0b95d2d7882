import type { AbortLike, ExchangeHooks } from './body.js';
import { buildConnector, Client, Pool } from 'undici';
import { OriginError } from './errors.js';
import { Probe, type ProbeConfig } from './health.js';
import { bigReadConnector } from './socket-reads.js';

/** One origin server: where it is and how to talk to it. Times in ms. */
export interface BackendConfig {
  /** Name used by directors and counters (default: the URL's host:port). */
  name?: string;
  /** http(s)://host:port, no path. */
  url: string;
  /** Host header sent instead of the client's (undefined: the client's Host is forwarded). */
  hostHeader?: string | undefined;
  /** Weight for the random director (default 1). */
  weight?: number;
  connectTimeoutMs?: number;
  /** Time to the response headers. */
  firstByteTimeoutMs?: number;
  /** Idle time allowed between two body chunks. */
  betweenBytesTimeoutMs?: number;
  /** Most requests in flight (each holds a connection), default 64. */
  maxConnections?: number;
  /** How long a request may wait for a free connection before failing with 503 (default 5000). */
  queueTimeoutMs?: number;
  /** Most requests waiting for a connection; more fail at once with 503 (default 1024). */
  maxQueue?: number;
  /**
   * Most pinned connections (NTLM/Negotiate, one per client connection, outside the pool) open at once; default
   * maxConnections. Past it a connection-auth challenge is passed through without pinning.
   */
  maxPinned?: number;
  /** Keep connections open for reuse (default true); false = one connection per request. */
  keepAlive?: boolean;
  /** Credentials for the origin. */
  auth?: { type: 'basic'; username: string; password: string; preemptive?: boolean } | { type: 'bearer'; token: string; preemptive?: boolean };
  /** TLS for https backends. Verification is on unless dangerouslySkipTlsVerify is set. */
  tls?: { ca?: string | string[]; servername?: string; dangerouslySkipTlsVerify?: boolean };
  /** Health probe; without one the backend is always healthy. */
  probe?: ProbeConfig;
}

/** Parses and checks a backend URL; throws an OriginError naming the problem. */
export function parseBackendUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new OriginError('ORIGIN_ERR_CONFIG', `invalid backend URL "${raw}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new OriginError('ORIGIN_ERR_CONFIG', `backend URL "${raw}" must be http:// or https://`);
  }
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') {
    throw new OriginError('ORIGIN_ERR_CONFIG', `backend URL "${raw}" must not have a path or query`);
  }
  return u;
}

/** Per-backend counters (varnishstat's VBE.* in spirit). */
export type BackendCounters = {
  requests: number;
  failures: number;
  /** Connections opened. */
  connects: number;
  /** Connections closed. */
  disconnects: number;
  /** Body bytes received. */
  bytes: number;
  /** Retries on this backend after a broken reused connection. */
  retries: number;
  /** Requests that failed here and went on to another backend. */
  failovers: number;
  /** Requests refused because the wait queue was full or timed out. */
  queueRejects: number;
  /** Health changes seen from the probe. */
  healthChanges: number;
  /** Client connections pinned to an origin connection (NTLM/Negotiate). */
  pinned: number;
};

/** An operator's health setting for a backend: forced sick, forced healthy, or the probe's word (auto). */
export type AdminHealth = 'auto' | 'sick' | 'healthy';

/** A backend with its keep-alive pool, a bounded wait queue in front of it, counters and an optional probe. */
export class Backend {
  readonly config: BackendConfig;
  readonly name: string;
  readonly origin: string;
  /**
   * For a plain http backend, the server name handed to undici with each request: undici otherwise derives one from
   * the Host header for TLS (an IPv4/IPv6 regex test per request) that a plain connection never uses. Undefined for
   * https, where the name chosen per request (the Host's) stays as it was.
   */
  readonly plainServername: string | undefined;
  readonly pool: Pool;
  readonly counters: BackendCounters = {
    requests: 0,
    failures: 0,
    connects: 0,
    disconnects: 0,
    bytes: 0,
    retries: 0,
    failovers: 0,
    queueRejects: 0,
    healthChanges: 0,
    pinned: 0,
  };
  /** What each dispatched request of this backend reports to it (body bytes as they arrive), one object for all. */
  readonly hooks: ExchangeHooks = { count: (n: number) => void (this.counters.bytes += n) };
  readonly probe: Probe | undefined;
  private inflight = 0;
  private readonly waiting: Array<{ resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  readonly maxConnections: number;
  /** Pinned connections open now, and the most allowed (see BackendConfig.maxPinned). */
  pinnedOpen = 0;
  readonly maxPinned: number;
  private readonly clientOptions: Client.Options;
  /** How origin connections are opened (undici buildConnector options): the pool's, a fresh client's, a pinned one's. */
  private readonly connectOptions: buildConnector.BuildOptions;
  readonly queueTimeoutMs: number;
  readonly maxQueue: number;

  constructor(config: BackendConfig) {
    this.config = config;
    const u = parseBackendUrl(config.url);
    this.origin = u.origin;
    this.plainServername = u.protocol === 'http:' ? u.hostname : undefined;
    this.name = config.name ?? u.host;
    this.maxConnections = config.maxConnections ?? 64;
    this.maxPinned = config.maxPinned ?? this.maxConnections;
    this.queueTimeoutMs = config.queueTimeoutMs ?? 5_000;
    this.maxQueue = config.maxQueue ?? 1024;
    const tls = config.tls;
    this.connectOptions = {
      timeout: config.connectTimeoutMs ?? 3_000,
      ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls?.servername !== undefined ? { servername: tls.servername } : {}),
      rejectUnauthorized: tls?.dangerouslySkipTlsVerify !== true,
    };
    this.clientOptions = {
      // Plain http: connections read up to 256 KiB at a time (socket-reads.ts, issue 16).
      connect: bigReadConnector(this.connectOptions),
      headersTimeout: config.firstByteTimeoutMs ?? 60_000,
      bodyTimeout: config.betweenBytesTimeoutMs ?? 60_000,
      keepAliveTimeout: 4_000,
      pipelining: 1,
    };
    this.pool = new Pool(this.origin, { ...this.clientOptions, connections: this.maxConnections });
    this.pool.on('connect', () => this.counters.connects++);
    this.pool.on('disconnect', () => this.counters.disconnects++);
    this.probe =
      config.probe === undefined
        ? undefined
        : new Probe(this.pool, this.origin, config.probe, () => {
            this.counters.healthChanges++;
          });
  }

  /**
   * A one-off client on a new connection (closed after its one request): the retry after a broken reused
   * connection must not land on another pooled connection the origin may have closed too.
   */
  freshClient(): Client {
    const c = new Client(this.origin, this.clientOptions);
    c.on('connect', () => this.counters.connects++);
    c.on('disconnect', () => this.counters.disconnects++);
    return c;
  }

  /**
   * A client with exactly one connection, kept open as long as its client connection lives (pinned auth). Its
   * connector succeeds once: if that connection goes, any later request fails instead of opening another one.
   */
  pinnedClient(): Client {
    const base = bigReadConnector(this.connectOptions);
    let used = false;
    const once: buildConnector.connector = (opts, callback) => {
      if (used) {
        callback(new OriginError('ORIGIN_ERR_PIN_LOST', `the pinned connection to ${this.name} is gone`, { status: 502 }), null);
        return;
      }
      used = true;
      base(opts, callback);
    };
    const c = new Client(this.origin, { ...this.clientOptions, connect: once, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });
    c.on('connect', () => this.counters.connects++);
    c.on('disconnect', () => this.counters.disconnects++);
    return c;
  }

  /**
   * The operator's say over the probe, as `varnishadm backend.set_health`: `sick` and `healthy` force the state every
   * director sees, `auto` (the default) follows the probe (or healthy without one). The probe keeps running under a
   * forced state, so `auto` goes back to what it says now.
   */
  adminHealth: AdminHealth = 'auto';

  get healthy(): boolean {
    if (this.adminHealth !== 'auto') return this.adminHealth === 'healthy';
    return this.probe?.healthy ?? true;
  }

  get weight(): number {
    return this.config.weight ?? 1;
  }

  /** Requests holding a connection slot now. */
  get active(): number {
    return this.inflight;
  }

  /**
   * Takes a connection slot, waiting at most queueTimeoutMs in a queue of at most maxQueue. Rejects with a 503
   * OriginError rather than piling requests up without bound. Undefined when a slot was free and is taken now: the
   * request goes out in the same turn, with no promise hop before it (issue 16, a miss's first byte).
   */
  acquire(signal: AbortLike): Promise<void> | undefined {
    if (this.inflight < this.maxConnections) {
      this.inflight++;
      return undefined;
    }
    if (this.waiting.length >= this.maxQueue) {
      this.counters.queueRejects++;
      return Promise.reject(new OriginError('ORIGIN_ERR_QUEUE_FULL', `backend ${this.name}: ${this.waiting.length} requests already waiting for a connection`, { status: 503 }));
    }
    return new Promise((resolve, reject) => {
      const entry = {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
        timer: setTimeout(() => {
          this.dropWaiter(entry);
          this.counters.queueRejects++;
          reject(new OriginError('ORIGIN_ERR_QUEUE_TIMEOUT', `backend ${this.name}: no connection free within ${this.queueTimeoutMs} ms`, { status: 503 }));
        }, this.queueTimeoutMs),
      };
      const onAbort = (): void => {
        this.dropWaiter(entry);
        reject(new OriginError('ORIGIN_ERR_ABORTED', `request to ${this.name} aborted while queued`, { cause: signal.reason }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /** Gives a slot back; the next waiter (if any) takes it. */
  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) {
      clearTimeout(next.timer);
      next.resolve();
    } else {
      this.inflight--;
    }
  }

  private dropWaiter(entry: { timer: NodeJS.Timeout }): void {
    clearTimeout(entry.timer);
    const i = this.waiting.indexOf(entry as (typeof this.waiting)[number]);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  async close(): Promise<void> {
    this.probe?.stop();
    await this.pool.close();
  }

  async destroy(): Promise<void> {
    this.probe?.stop();
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new OriginError('ORIGIN_ERR_ABORTED', `backend ${this.name} closed`));
    }
    await this.pool.destroy();
  }
}
