import net from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { createOriginClient } from '@sluice/origin-client';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { createProxy } from './proxy.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import { hdr } from '../policy/header-helpers.js';
import type { ProxyHooks, SentRequest } from '../policy/hooks.js';

/**
 * Issue 14: what a Varnish user's VCL needs from the hooks: obj.hits / is_hit in vcl_deliver, bereq in
 * vcl_backend_response, req.backend_hint, vcl_backend_error (synth, retry), retry from vcl_backend_response, async
 * cacheKey, and header helpers.
 */
const track = useCleanup();

async function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(`${url}${path}`, { headers: { host: 't', ...headers } });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('policy hooks (issue 14)', () => {
  it('the deliver hook sees obj.hits and whether it was a hit: X-Cache MISS, then HIT with hits counting', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': req.url === '/nostore' ? 'no-store' : 'max-age=60' });
        res.end('x');
      }),
    );
    const hooks: ProxyHooks = {
      responseFilter(resp) {
        resp.headers['x-cache'] = resp.isHit ? 'HIT' : resp.uncacheable ? 'UNCACHEABLE' : 'MISS';
        resp.headers['x-hits'] = String(resp.hits);
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push((await get(px.url, '/a')).headers);
    expect(seen.map((h) => [h['x-cache'], h['x-hits']])).toEqual([
      ['MISS', '0'],
      ['HIT', '1'],
      ['HIT', '2'],
    ]);
    expect((await get(px.url, '/nostore')).headers['x-cache']).toBe('UNCACHEABLE');
  });

  it('upstreamResponseFilter sees the request that was sent: method, url, headers (per-URL TTL without carrying ctx)', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=1' });
        res.end('x');
      }),
    );
    const sent: SentRequest[] = [];
    const hooks: ProxyHooks = {
      upstreamRequestFilter(bereq) {
        bereq.headers['x-from-policy'] = '1';
      },
      upstreamResponseFilter(beresp) {
        sent.push(beresp.bereq);
        if (beresp.bereq.url.startsWith('/long/')) beresp.ttlSec = 3600;
        return undefined;
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    const r = await get(px.url, '/long/x', { 'x-client': 'c' });
    expect(r.headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; stored; ttl=3600');
    expect(sent).toHaveLength(1);
    const b = sent[0] as SentRequest;
    expect([b.method, b.url, b.retries, b.backend]).toEqual(['GET', '/long/x', 0, undefined]);
    expect(hdr.get(b.headers, 'X-Client')).toBe('c');
    expect(hdr.get(b.headers, 'x-from-policy')).toBe('1');
    const cached = px.proxy.store.lookup('t/long/x', {}, Date.now());
    expect(cached.kind).toBe('hit');
    if (cached.kind === 'hit') expect(cached.obj.ttlSec).toBeGreaterThanOrEqual(3600);
  });

  it('req.backend picks a configured backend by name; an unknown name gets a 503', async () => {
    const a = track(await startScriptedOrigin((_req, res) => {
      res.end('from a');
    }));
    const b = track(await startScriptedOrigin((_req, res) => {
      res.end('from b');
    }));
    const origin = createOriginClient({ backends: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }] });
    const hooks: ProxyHooks = {
      requestFilter(req) {
        const host = hdr.get(req.headers, 'host') ?? '';
        req.backend = host === 'api.example' ? 'b' : host === 'nowhere.example' ? 'c' : 'a';
        return 'pass';
      },
    };
    const proxy = createProxy({ upstream: origin, hooks });
    const addr = await proxy.listen(0);
    track({ close: async () => (await proxy.close(), await origin.destroy()) });
    const url = `http://127.0.0.1:${addr.port}`;
    const bodies = [];
    for (const host of ['www.example', 'api.example', 'api.example', 'www.example']) bodies.push((await get(url, '/', { host })).body);
    expect(bodies).toEqual(['from a', 'from b', 'from b', 'from a']);
    expect([a.count, b.count]).toEqual([2, 2]);
    expect((await get(url, '/', { host: 'nowhere.example' })).status).toBe(503);
  });

  it('backendError makes the response when the origin cannot be reached, after retrying (bereq.retries)', async () => {
    const port = await deadPort();
    const retries: number[] = [];
    const sink = new MemorySink();
    const hooks: ProxyHooks = {
      backendError(err) {
        retries.push(err.bereq.retries);
        if (err.bereq.retries < 2) return 'retry';
        return { synth: { status: 200, body: `maintenance (${err.status})\n`, headers: { 'Retry-After': '30' } } };
      },
    };
    const px = track(await startProxy(`http://127.0.0.1:${port}`, { hooks, txlog: new TxLog([sink]) }));
    const r = await get(px.url, '/down');
    expect(r.status).toBe(200);
    expect(r.body).toBe('maintenance (503)\n');
    expect(r.headers['retry-after']).toBe('30');
    expect(retries).toEqual([0, 1, 2]);
    expect(px.proxy.stats.s_retry).toBe(2);
    // Not stored: the next request fetches again.
    await get(px.url, '/down');
    expect(retries).toEqual([0, 1, 2, 0, 1, 2]);
    await until(() => sink.groups.length === 2);
    // The log: bereq -> Link bereq N retry -> bereq -> ... as Varnish's VSL_ChgId.
    const req = sink.groups[0] as Transaction;
    let be = req.children[0] as Transaction;
    const chain = [be];
    for (let next = be.children[0]; next !== undefined; next = next.children[0]) chain.push((be = next));
    expect(chain).toHaveLength(3);
    expect(chain[0]?.records.find((x) => x.tag === 'Link')?.value).toBe(`bereq ${chain[1]?.vxid} retry`);
    expect(chain[1]?.records[0]?.value).toBe(`bereq ${chain[0]?.vxid} retry`);
  });

  it('upstreamResponseFilter may retry (503 once, then the good answer), capped by maxRetries', async () => {
    const origin = track(
      await startScriptedOrigin((req, res, n) => {
        if (req.url === '/always' || n === 1) {
          res.writeHead(503, { 'cache-control': 'no-store' });
          res.end('busy');
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('ok');
      }),
    );
    const hooks: ProxyHooks = { upstreamResponseFilter: (beresp) => (beresp.status === 503 ? 'retry' : undefined) };
    const px = track(await startProxy(origin.url, { hooks, maxRetries: 3 }));
    const r = await get(px.url, '/flaky');
    expect([r.status, r.body]).toEqual([200, 'ok']);
    expect(origin.count).toBe(2);
    const before = origin.count;
    expect((await get(px.url, '/always')).status).toBe(503);
    expect(origin.count - before).toBe(4);
    expect(px.proxy.stats.s_retry).toBe(1 + 3);
  });

  it('cacheKey may be async: the key it resolves to is the one looked up and purged', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end(`body of ${req.url}`);
      }),
    );
    const hooks: ProxyHooks = {
      async cacheKey(req) {
        await new Promise((r) => setImmediate(r));
        return `k:${req.url.split('?')[0]}`;
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    expect((await get(px.url, '/p?a=1')).body).toBe('body of /p?a=1');
    const second = await get(px.url, '/p?b=2');
    expect(second.body).toBe('body of /p?a=1');
    expect(second.headers['cache-status']).toMatch(/; hit/);
    expect(origin.count).toBe(1);
    expect(await px.proxy.purge('/p', 't')).toBe(1);
    await get(px.url, '/p?c=3');
    expect(origin.count).toBe(2);
  });
});

describe('hdr helpers', () => {
  it('get one (joined), get all, has, set, append, delete, any case of name', () => {
    const h: Record<string, string | string[]> = { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/html' };
    expect(hdr.get(h, 'Content-Type')).toBe('text/html');
    expect(hdr.get(h, 'set-cookie')).toBe('a=1, b=2');
    expect(hdr.getAll(h, 'Set-Cookie')).toEqual(['a=1', 'b=2']);
    expect(hdr.getAll(h, 'x-none')).toEqual([]);
    expect(hdr.get(h, 'constructor')).toBeUndefined();
    expect(hdr.has(h, 'CONTENT-TYPE')).toBe(true);
    hdr.set(h, 'X-A', '1');
    hdr.append(h, 'x-a', '2');
    hdr.append(h, 'x-a', '3');
    expect(h['x-a']).toEqual(['1', '2', '3']);
    expect(hdr.delete(h, 'X-A')).toBe(true);
    expect(hdr.delete(h, 'X-A')).toBe(false);
    expect(hdr.has(h, 'x-a')).toBe(false);
  });
});
