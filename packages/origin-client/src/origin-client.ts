import type { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { Backend, type BackendConfig } from './backend.js';
import { OriginError } from './errors.js';

/**
 * The origin client: a pool per backend and a round-robin director over them. Structurally satisfies core's
 * `Upstream` port (request(req, {signal}) -> {status, headers, body}) without importing core.
 */
export type Headers = Record<string, string | string[]>;

export interface OriginRequest {
  method: string;
  path: string;
  headers: Headers;
  body: Readable | null;
}

export interface OriginResponse {
  status: number;
  headers: Headers;
  body: Readable;
}

export interface OriginClientConfig {
  backends: BackendConfig[];
}

export class OriginClient {
  readonly backends: Backend[];
  private next = 0;

  constructor(config: OriginClientConfig) {
    if (config.backends.length === 0) throw new OriginError('ORIGIN_ERR_CONFIG', 'at least one backend is required');
    this.backends = config.backends.map((b) => new Backend(b));
  }

  /** Picks a backend round-robin. */
  private pick(): Backend {
    const b = this.backends[this.next % this.backends.length] as Backend;
    this.next = (this.next + 1) % this.backends.length;
    return b;
  }

  async request(req: OriginRequest, opts: { signal: AbortSignal }): Promise<OriginResponse> {
    opts.signal.throwIfAborted();
    const backend = this.pick();
    backend.counters.requests++;
    const headers: Headers = { ...req.headers };
    if (backend.config.hostHeader !== undefined) headers['host'] = backend.config.hostHeader;
    try {
      const res = await backend.pool.request({
        method: req.method as Dispatcher.HttpMethod,
        path: req.path,
        headers,
        body: req.body,
        signal: opts.signal,
      });
      const out: Headers = {};
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out[k] = v;
      return { status: res.statusCode, headers: out, body: res.body as unknown as Readable };
    } catch (e: unknown) {
      backend.counters.failures++;
      throw wrap(e, backend);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.close()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.destroy()));
  }
}

function wrap(e: unknown, backend: Backend): OriginError {
  if (e instanceof undiciErrors.ConnectTimeoutError) {
    return new OriginError('ORIGIN_ERR_TIMEOUT', `connect to ${backend.origin} timed out`, { cause: e, status: 503 });
  }
  if (e instanceof undiciErrors.HeadersTimeoutError) {
    return new OriginError('ORIGIN_ERR_TIMEOUT', `no response headers from ${backend.origin} in time`, { cause: e, status: 504 });
  }
  if (e instanceof undiciErrors.RequestAbortedError || (e instanceof Error && e.name === 'AbortError')) {
    return new OriginError('ORIGIN_ERR_ABORTED', `request to ${backend.origin} aborted`, { cause: e });
  }
  const code = (e as { code?: unknown }).code;
  const detail = typeof code === 'string' ? code : e instanceof Error ? e.message : String(e);
  return new OriginError('ORIGIN_ERR_CONNECT', `cannot reach ${backend.origin}: ${detail}`, { cause: e, status: 503 });
}

export function createOriginClient(config: OriginClientConfig): OriginClient {
  return new OriginClient(config);
}
