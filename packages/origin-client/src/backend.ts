import { Pool } from 'undici';
import { OriginError } from './errors.js';

/** One origin server: where it is and how to talk to it. Times in ms. */
export interface BackendConfig {
  /** http(s)://host:port, no path. */
  url: string;
  /** Host header sent instead of the client's (undefined: the client's Host is forwarded). */
  hostHeader?: string | undefined;
  connectTimeoutMs?: number;
  /** Time to the response headers. */
  firstByteTimeoutMs?: number;
  /** Idle time allowed between two body chunks. */
  betweenBytesTimeoutMs?: number;
  maxConnections?: number;
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

/** A backend with its keep-alive connection pool and counters. */
export class Backend {
  readonly config: BackendConfig;
  readonly origin: string;
  readonly pool: Pool;
  readonly counters = { requests: 0, failures: 0, bytes: 0, connects: 0, disconnects: 0 };

  constructor(config: BackendConfig) {
    this.config = config;
    this.origin = parseBackendUrl(config.url).origin;
    this.pool = new Pool(this.origin, {
      connections: config.maxConnections ?? 64,
      connectTimeout: config.connectTimeoutMs ?? 3_000,
      headersTimeout: config.firstByteTimeoutMs ?? 60_000,
      bodyTimeout: config.betweenBytesTimeoutMs ?? 60_000,
      keepAliveTimeout: 4_000,
    });
    this.pool.on('connect', () => this.counters.connects++);
    this.pool.on('disconnect', () => this.counters.disconnects++);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}
