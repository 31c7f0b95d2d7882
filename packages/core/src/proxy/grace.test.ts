import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, until, useCleanup, type ProxyHarness } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';

const track = useCleanup();

function clock(startMs = Date.parse('2026-11-21T12:00:00Z')): { now: () => number; advance: (sec: number) => void } {
  let t = startMs;
  return { now: () => t, advance: (sec) => void (t += sec * 1000) };
}

async function get(px: ProxyHarness, path = '/g'): Promise<{ status: number; body: string; cacheStatus: string }> {
  const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
  return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']) };
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void | Promise<void>;

async function setup(handler: Handler, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'>) {
  const origin = track(await startScriptedOrigin(handler));
  const px = track(await startProxy(origin.url, opts));
  return { origin, px };
}

describe('grace (Varnish) and stale-while-revalidate', () => {
  it('serves an expired object in grace at once while exactly one background fetch refreshes it', async () => {
    const c = clock();
    const bgGate = deferred();
    const { origin, px } = await setup(
      async (_req, res, n) => {
        if (n > 1) await bgGate.promise;
        res.writeHead(200, { 'cache-control': 'max-age=10', date: new Date(c.now()).toUTCString() });
        res.end(`v${n}`);
      },
      { now: c.now, defaultGraceSec: 30 },
    );
    expect((await get(px)).body).toBe('v1');
    c.advance(15);
    // Three clients during grace: all get the stale body at once although the refresh is held at the origin.
    const stale = await Promise.all([get(px), get(px), get(px)]);
    for (const s of stale) {
      expect(s.body).toBe('v1');
      expect(s.cacheStatus).toBe('sluice; hit; ttl=-5; detail=grace');
    }
    expect(origin.count).toBe(2);
    expect(px.proxy.stats.bgfetch).toBe(1);
    bgGate.resolve();
    await until(() => px.proxy.stats.s_beresp_bodybytes === 4);
    const fresh = await get(px);
    expect(fresh.body).toBe('v2');
    expect(fresh.cacheStatus).toMatch(/^sluice; hit; ttl=10$/);
    expect(origin.count).toBe(2);
  });

  it('past grace the client waits for a fresh fetch', async () => {
    const c = clock();
    const { origin, px } = await setup(
      (_req, res, n) => {
        res.writeHead(200, { 'cache-control': 'max-age=10', date: new Date(c.now()).toUTCString() });
        res.end(`v${n}`);
      },
      { now: c.now, defaultGraceSec: 5 },
    );
    await get(px);
    c.advance(16);
    const r = await get(px);
    expect(r.body).toBe('v2');
    expect(r.cacheStatus).toMatch(/fwd=miss/);
    expect(origin.count).toBe(2);
  });

  it("stale-while-revalidate from the origin sets the object's grace", async () => {
    const c = clock();
    const { px } = await setup(
      (_req, res, n) => {
        res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', date: new Date(c.now()).toUTCString() });
        res.end(`v${n}`);
      },
      { now: c.now, defaultGraceSec: 0 },
    );
    await get(px);
    c.advance(30);
    const r = await get(px);
    expect(r.body).toBe('v1');
    expect(r.cacheStatus).toMatch(/detail=grace/);
  });
});

describe('revalidation (RFC 9111 §4.3)', () => {
  it('revalidates a stale object with its validators; a 304 refreshes headers and freshness without a body', async () => {
    const c = clock();
    const { origin, px } = await setup(
      (req, res, n) => {
        if (n > 1 && req.headers['if-none-match'] === '"e1"') {
          res.writeHead(304, { 'cache-control': 'max-age=100', etag: '"e1"', 'x-refreshed': 'yes', date: new Date(c.now()).toUTCString() });
          res.end();
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=1', etag: '"e1"', 'content-type': 'text/plain', date: new Date(c.now()).toUTCString() });
        res.end('the body');
      },
      { now: c.now, defaultGraceSec: 0, defaultKeepSec: 3600 },
    );
    await get(px);
    c.advance(5);
    const r = await request(`${px.url}/g`, { headers: { host: 't' } });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('the body');
    expect(r.headers['x-refreshed']).toBe('yes');
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.headers['cache-status']).toBe('sluice; fwd=stale; fwd-status=200; stored; ttl=100');
    expect(origin.requests[1]?.headers['if-none-match']).toBe('"e1"');
    expect(px.proxy.stats.fetch_304).toBe(1);
    c.advance(50);
    const hit = await get(px);
    expect(hit.cacheStatus).toBe('sluice; hit; ttl=50');
    expect(origin.count).toBe(2);
  });

  it('a background fetch in grace is conditional too', async () => {
    const c = clock();
    const { origin, px } = await setup(
      (req, res, n) => {
        if (n > 1) {
          res.writeHead(304, { 'cache-control': 'max-age=10', date: new Date(c.now()).toUTCString() });
          res.end();
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=10', 'last-modified': 'Fri, 20 Nov 2026 00:00:00 GMT', date: new Date(c.now()).toUTCString() });
        res.end('lm body');
      },
      { now: c.now, defaultGraceSec: 30 },
    );
    await get(px);
    c.advance(12);
    expect((await get(px)).cacheStatus).toMatch(/detail=grace/);
    await until(() => px.proxy.stats.fetch_304 === 1);
    expect(origin.requests[1]?.headers['if-modified-since']).toBe('Fri, 20 Nov 2026 00:00:00 GMT');
    const r = await get(px);
    expect(r.body).toBe('lm body');
    expect(r.cacheStatus).toBe('sluice; hit; ttl=10');
  });

  it('with keep, a response with a validator but no freshness is stored and revalidated on every use', async () => {
    const { origin, px } = await setup(
      (req, res) => {
        if (req.headers['if-none-match'] === '"z"') {
          res.writeHead(304, { etag: '"z"' });
          res.end();
          return;
        }
        res.writeHead(200, { etag: '"z"' });
        res.end('zero ttl body');
      },
      { defaultKeepSec: 60, defaultGraceSec: 0 },
    );
    await get(px);
    const r = await get(px);
    expect(r.body).toBe('zero ttl body');
    expect(r.cacheStatus).toMatch(/fwd=stale; fwd-status=200; stored/);
    expect(origin.count).toBe(2);
    expect(px.proxy.stats.fetch_304).toBe(1);
  });
});

describe('stale-if-error (RFC 5861)', () => {
  it.each([
    ['the origin answers 503', 'status'],
    ['the origin connection fails', 'reset'],
  ])('serves the stale object when %s', async (_n, how) => {
    const c = clock();
    const { origin, px } = await setup(
      (req, res, n) => {
        if (n === 1) {
          res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=600', date: new Date(c.now()).toUTCString() });
          res.end('good');
        } else if (how === 'status') {
          res.writeHead(503, { 'content-length': '4' });
          res.end('down');
        } else {
          req.socket.destroy();
        }
      },
      { now: c.now, defaultGraceSec: 0 },
    );
    await get(px);
    c.advance(100);
    const r = await get(px);
    expect(r.status).toBe(200);
    expect(r.body).toBe('good');
    expect(r.cacheStatus).toMatch(/^sluice; hit; ttl=-\d+; detail=stale-if-error$/);
    expect(px.proxy.stats.stale_if_error).toBe(1);
    // A reset connection is retried once by the origin client before the fetch counts as failed.
    expect(origin.count).toBe(how === 'reset' ? 3 : 2);
  });

  it('past the stale-if-error window the error goes through', async () => {
    const c = clock();
    const { px } = await setup(
      (_req, res, n) => {
        if (n === 1) {
          res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=10', date: new Date(c.now()).toUTCString() });
          res.end('good');
        } else {
          res.writeHead(503, { 'content-length': '4' });
          res.end('down');
        }
      },
      { now: c.now, defaultGraceSec: 0 },
    );
    await get(px);
    c.advance(30);
    expect((await get(px)).status).toBe(503);
  });
});

describe('hit-for-pass and hit-for-miss', () => {
  it('policy can make a key hit-for-pass for its own TTL: later requests are passed with their Range', async () => {
    const c = clock();
    const { origin, px } = await setup(
      (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'x-range-seen': String(req.headers.range ?? '-') });
        res.end('hfp');
      },
      {
        now: c.now,
        hooks: {
          upstreamResponseFilter(beresp) {
            beresp.hitForPassSec = 30;
            return undefined;
          },
        },
      },
    );
    const a = await get(px);
    expect(a.cacheStatus).toMatch(/detail=hit-for-pass/);
    const b = await request(`${px.url}/g`, { headers: { host: 't', range: 'bytes=0-1' } });
    await b.body.text();
    expect(b.headers['cache-status']).toMatch(/fwd=uri-miss; fwd-status=200; detail=hit-for-pass/);
    expect(b.headers['x-range-seen']).toBe('bytes=0-1');
    expect(px.proxy.stats.cache_hitpass).toBe(1);
    c.advance(31);
    await get(px);
    expect(px.proxy.stats.cache_hitpass).toBe(1);
    expect(origin.count).toBe(3);
  });

  it('hit-for-miss lasts hitForMissSec', async () => {
    const c = clock();
    const { px } = await setup(
      (_req, res) => {
        res.writeHead(200, { 'cache-control': 'private' });
        res.end('p');
      },
      { now: c.now, hitForMissSec: 10 },
    );
    await get(px);
    expect((await get(px)).cacheStatus).toMatch(/hit-for-miss/);
    c.advance(11);
    expect((await get(px)).cacheStatus).not.toMatch(/hit-for-miss/);
  });
});

describe('adaptive streaming (streamMinBytes)', () => {
  it('a body with Content-Length under the threshold is delivered whole, after the origin finished', async () => {
    const gate = deferred();
    const { origin, px } = await setup(
      async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '200' });
        res.write(Buffer.alloc(100, 97));
        await gate.promise;
        res.end(Buffer.alloc(100, 98));
      },
      { streamMinBytes: 4096 },
    );
    let early = 0;
    const pending = rawExchange(px.port, 'GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (all) => {
      if (px.proxy.stats.s_beresp_bodybytes < 200) early = all.length;
    });
    await until(() => origin.count === 1 && px.proxy.stats.s_beresp_bodybytes === 100);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    gate.resolve();
    const r = parseRawResponse(await pending);
    expect(early).toBe(0);
    expect(r.headers['content-length']).toBe('200');
    expect(r.body.length).toBe(200);
  });

  it('an unknown-length body starts once the threshold arrived, not before', async () => {
    const gate = deferred();
    const { origin, px } = await setup(
      async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.write(Buffer.alloc(100, 97));
        await gate.promise;
        res.write(Buffer.alloc(2000, 98));
        res.end();
      },
      { streamMinBytes: 1000 },
    );
    let early = 0;
    const pending = rawExchange(px.port, 'GET /chunky HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (all) => {
      if (px.proxy.stats.s_beresp_bodybytes < 1000) early = all.length;
    });
    await until(() => origin.count === 1 && px.proxy.stats.s_beresp_bodybytes === 100);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    gate.resolve();
    const r = parseRawResponse(await pending);
    expect(early).toBe(0);
    expect(r.body.length).toBe(2100);
  });
});
