import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BanSyntaxError } from '../cache/ban.js';
import { ProxyError } from '../errors.js';
import type { Proxy } from './proxy.js';
import { prometheusText } from './metrics.js';
import type { LiveFilter, LiveSink } from '../txlog/live.js';
import type { TxView } from '../txlog/txlog.js';
import { formatNdjson } from '../txlog/txlog.js';

/**
 * The admin listener (varnishadm's job, over HTTP): off unless started, on its own address, every route but
 * /health needs `Authorization: Bearer <token>`.
 *
 *   GET  /health                 {"status":"ok"}
 *   GET  /stats                  counters as JSON (main, storage, backends)
 *   GET  /metrics                the same in Prometheus text format
 *   POST /purge   {"url","host"} removes every variant of that URL          -> {"purged": n}
 *   POST /purge   {"tags":[...]} removes every object with one of the tags  -> {"purged": n}
 *   POST /ban     {"expr"}       adds a ban                                 -> 201 {"id","expr"}
 *   GET  /bans                   bans not yet applied to every object
 *   GET  /backends               every backend with its health (the operator's setting, the probe's, the result)
 *   POST /backends/health {"name","health"}  sets one sick, healthy or auto (varnishadm backend.set_health)
 *   GET  /log?grouping=request|vxid|session&url=REGEX&status=404|5xx
 *                                the transaction log as it happens: one NDJSON group per line until the client
 *                                leaves; a slow reader loses groups and is told how many ({"overflow": n})
 *                                (the url regex runs off the request path: txlog/url-matcher.ts)
 */
export interface AdminServer {
  listen(port: number, host?: string): Promise<AddressInfo>;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = type === 'application/json' ? `${JSON.stringify(body)}\n` : String(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let raw = '';
  for await (const c of req) {
    raw += String(c);
    if (raw.length > 64 * 1024) throw new ProxyError('CORE_ERR_BAD_REQUEST', 'body too large', { source: 'downstream', status: 413 });
  }
  const v: unknown = raw === '' ? {} : JSON.parse(raw);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ProxyError('CORE_ERR_BAD_REQUEST', 'expected a JSON object', { source: 'downstream', status: 400 });
  return v as Record<string, unknown>;
}

function authorized(req: http.IncomingMessage, token: string): boolean {
  const got = Buffer.from(String(req.headers.authorization ?? ''));
  const want = Buffer.from(`Bearer ${token}`);
  return got.length === want.length && timingSafeEqual(got, want);
}


/** Parses /log's query into a filter; a string is the error. */
export function parseLogQuery(q: URLSearchParams): LiveFilter | string {
  const grouping = q.get('grouping') ?? 'request';
  if (grouping !== 'request' && grouping !== 'vxid' && grouping !== 'session') return `grouping must be request, vxid or session, not "${grouping}"`;
  const f: LiveFilter = { grouping };
  const url = q.get('url');
  if (url !== null) {
    try {
      f.url = new RegExp(url);
    } catch {
      return `url: "${url}" is not a regular expression`;
    }
  }
  const status = q.get('status');
  if (status !== null) {
    if (/^[1-5]\d\d$/.test(status)) f.status = { code: Number(status) };
    else if (/^[1-5]xx$/i.test(status)) f.status = { class: Number(status[0]) };
    else return `status must be a code (404) or a class (5xx), not "${status}"`;
  }
  return f;
}

/** Streams matching groups as NDJSON until the client leaves. Beyond 1 MiB unsent, groups are dropped and counted. */
function tail(live: LiveSink, filter: LiveFilter, req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  let dropped = 0;
  const unsubscribe = live.subscribe(filter, (t: TxView) => {
    if (res.writableLength > 1024 * 1024) {
      dropped++;
      return;
    }
    if (dropped > 0) {
      res.write(`${JSON.stringify({ overflow: dropped })}\n`);
      dropped = 0;
    }
    res.write(formatNdjson(t));
  });
  req.socket.on('close', unsubscribe);
}

/**
 * The backends as the admin API sees them: core knows no origin client, so the composition root hands these in
 * (the CLI passes the origin client's listBackends and setHealth).
 */
export interface BackendAdmin {
  list(): unknown[];
  /** Undefined when no backend has that name. */
  setHealth(name: string, health: 'auto' | 'sick' | 'healthy'): unknown;
}

type AdminOptions = {
  token: string;
  live?: LiveSink | undefined;
  reload?: (() => Promise<string>) | undefined;
  backends?: BackendAdmin | undefined;
};

/** One admin request: health, then the bearer token, then the route. */
async function answer(proxy: Proxy, opts: AdminOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  if (req.method === 'GET' && url.pathname === '/health') return send(res, 200, { status: 'ok' });
  if (!authorized(req, opts.token)) return send(res, 401, { error: 'missing or wrong bearer token' });
  const route = `${req.method ?? ''} ${url.pathname}`;
  switch (route) {
    case 'GET /stats':
      return send(res, 200, proxy.snapshot());
    case 'GET /metrics':
      return send(res, 200, prometheusText(proxy), 'text/plain; version=0.0.4');
    case 'GET /log': {
      if (opts.live === undefined) return send(res, 404, { error: 'this proxy has no live log' });
      const filter = parseLogQuery(url.searchParams);
      if (typeof filter === 'string') return send(res, 400, { error: filter });
      return tail(opts.live, filter, req, res);
    }
    case 'GET /bans':
      return send(res, 200, proxy.store.activeBans.map((b) => ({ id: b.id, expr: b.expr, created: new Date(b.createdMs).toISOString() })));
    case 'POST /purge':
      return await purge(proxy, await readJson(req), res);
    case 'POST /ban':
      return ban(proxy, await readJson(req), res);
    case 'GET /backends':
      if (opts.backends === undefined) return send(res, 404, { error: 'this proxy has no backends to list' });
      return send(res, 200, opts.backends.list());
    case 'POST /backends/health':
      return setHealth(opts.backends, await readJson(req), res);
    case 'POST /reload': {
      if (opts.reload === undefined) return send(res, 404, { error: 'this proxy has nothing to reload (no --config)' });
      try {
        return send(res, 200, { reloaded: await opts.reload() });
      } catch (e: unknown) {
        return send(res, 400, { error: `reload failed, the running configuration stays: ${e instanceof Error ? e.message : String(e)}` });
      }
    }
    default:
      return send(res, 404, { error: `no route ${route}` });
  }
}

async function purge(proxy: Proxy, body: Record<string, unknown>, res: http.ServerResponse): Promise<void> {
  if (Array.isArray(body['tags']) && body['tags'].every((t) => typeof t === 'string') && body['tags'].length > 0) {
    return send(res, 200, { purged: proxy.store.purgeTags(body['tags'] as string[]) });
  }
  if (typeof body['url'] === 'string' && body['url'].startsWith('/')) {
    const host = typeof body['host'] === 'string' ? body['host'] : '';
    return send(res, 200, { purged: await proxy.purge(body['url'], host) });
  }
  return send(res, 400, { error: 'give {"url": "/path", "host": "example.com"} or {"tags": ["t1"]}' });
}

function setHealth(backends: BackendAdmin | undefined, body: Record<string, unknown>, res: http.ServerResponse): void {
  if (backends === undefined) return send(res, 404, { error: 'this proxy has no backends to set' });
  const { name, health } = body;
  if (typeof name !== 'string' || (health !== 'auto' && health !== 'sick' && health !== 'healthy')) {
    return send(res, 400, { error: 'give {"name": "backend", "health": "sick" | "healthy" | "auto"}' });
  }
  const r = backends.setHealth(name, health);
  if (r === undefined) return send(res, 404, { error: `no backend named "${name}"` });
  return send(res, 200, r);
}

function ban(proxy: Proxy, body: Record<string, unknown>, res: http.ServerResponse): void {
  if (typeof body['expr'] !== 'string') return send(res, 400, { error: 'give {"expr": "req.url ~ ^/x"}' });
  try {
    return send(res, 201, proxy.ban(body['expr']));
  } catch (e: unknown) {
    if (e instanceof BanSyntaxError) return send(res, 400, { error: `bad ban expression: ${e.message}` });
    throw e;
  }
}

/**
 * `reload`, when given, serves POST /reload: it reloads the configuration (the CLI reads its config file again) and
 * resolves with a line saying what changed, or rejects with why nothing did (the running configuration stays).
 */
export function createAdminServer(proxy: Proxy, opts: AdminOptions): AdminServer {
  if (opts.token.length < 8) throw new ProxyError('CORE_ERR_CONFIG', 'the admin token must be at least 8 characters', { source: 'internal' });
  const server = http.createServer((req, res) => {
    answer(proxy, opts, req, res).catch((e: unknown) => send(res, 400, { error: e instanceof Error ? e.message : String(e) }));
  });
  return {
    listen: (port, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve(server.address() as AddressInfo));
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
