import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { rawExchange, parseRawResponse, startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';

let origin: ScriptedOrigin | undefined;
let px: ProxyHarness | undefined;
const track = useCleanup();

/** A clock the test moves by hand. */
function clock(startMs = Date.parse('2026-11-21T12:00:00Z')): { now: () => number; advance: (sec: number) => void } {
  let t = startMs;
  return { now: () => t, advance: (sec) => void (t += sec * 1000) };
}

/** Origin answering every request with the given headers (Date from the test clock) and a body naming the request. */
async function setup(
  headers: (req: http.IncomingMessage) => http.OutgoingHttpHeaders,
  opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {},
  status = 200,
): Promise<{ get: (path: string, h?: Record<string, string>, method?: string) => Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> }> {
  const o = await startScriptedOrigin((req, res, n) => {
    res.writeHead(status, headers(req));
    res.end(req.method === 'HEAD' ? undefined : `body ${n} for ${req.url}`);
  });
  origin = o;
  track(origin);
  px = await startProxy(o.url, opts);
  track(px);
  const base = px.url;
  return {
    get: async (path, h = {}, method = 'GET') => {
      const r = await request(`${base}${path}`, { method: method as 'GET', headers: { host: 'test.local', ...h } });
      return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
    },
  };
}

describe('freshness through the proxy', () => {
  it('serves a max-age object from cache until it expires, with Age on every response', async () => {
    const c = clock();
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60', date: new Date(c.now()).toUTCString() }), { now: c.now, defaultGraceSec: 0 });
    const a = await get('/m');
    expect(a.headers['age']).toBe('0');
    c.advance(30);
    const b = await get('/m');
    expect(b.body).toBe(a.body);
    expect(b.headers['age']).toBe('30');
    expect(b.headers['cache-status']).toBe('sluice; hit; ttl=30');
    c.advance(31);
    const d = await get('/m');
    expect(d.body).not.toBe(a.body);
    expect(d.headers['cache-status']).toMatch(/^sluice; fwd=miss; fwd-status=200; stored/);
    expect(origin?.count).toBe(2);
  });

  it('s-maxage wins over max-age for a shared cache', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=0, s-maxage=60' }));
    await get('/s');
    const b = await get('/s');
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin?.count).toBe(1);
  });

  it('uses Expires minus Date when there is no max-age', async () => {
    const c = clock();
    const { get } = await setup(
      () => ({ date: new Date(c.now()).toUTCString(), expires: new Date(c.now() + 20_000).toUTCString() }),
      { now: c.now, defaultGraceSec: 0 },
    );
    await get('/e');
    c.advance(10);
    expect((await get('/e')).headers['cache-status']).toBe('sluice; hit; ttl=10');
    c.advance(11);
    expect((await get('/e')).headers['cache-status']).toMatch(/fwd=miss/);
  });

  it('counts the Age the origin sent against the lifetime', async () => {
    const c = clock();
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60', age: '50' }), { now: c.now, defaultGraceSec: 0 });
    const a = await get('/aged');
    expect(a.headers['age']).toBe('50');
    c.advance(11);
    expect((await get('/aged')).headers['cache-status']).toMatch(/fwd=miss/);
  });

  it('without explicit freshness or Last-Modified a response is not reused', async () => {
    const { get } = await setup(() => ({}));
    await get('/n');
    const b = await get('/n');
    expect(b.headers['cache-status']).toMatch(/fwd=uri-miss; fwd-status=200; detail=hit-for-miss/);
    expect(origin?.count).toBe(2);
  });

  it('applies heuristic freshness from Last-Modified (10% of its age)', async () => {
    const c = clock();
    const { get } = await setup(
      () => ({ date: new Date(c.now()).toUTCString(), 'last-modified': new Date(c.now() - 1000_000).toUTCString() }),
      // No keep: the expired object is dropped, so the next request is a plain miss (with keep it would revalidate).
      { now: c.now, defaultGraceSec: 0, defaultKeepSec: 0 },
    );
    await get('/lm');
    c.advance(99);
    expect((await get('/lm')).headers['cache-status']).toBe('sluice; hit; ttl=1');
    c.advance(2);
    expect((await get('/lm')).headers['cache-status']).toMatch(/fwd=miss/);
  });

  it('defaultTtl gives Varnish 120 s behaviour to responses without freshness', async () => {
    const c = clock();
    const { get } = await setup(() => ({}), { now: c.now, defaultTtlSec: 120 });
    await get('/d');
    c.advance(119);
    expect((await get('/d')).headers['cache-status']).toBe('sluice; hit; ttl=1');
    expect(origin?.count).toBe(1);
  });
});

describe('what is not stored', () => {
  // no-cache and Set-Cookie are Varnish's builtin.vcl refusals: RFC 9111 stores both (§5.2.2.4: a no-cache response
  // is stored and revalidated on each use; §3 has no Set-Cookie condition), see issue-12-storage.test.ts.
  it.each([
    ['no-store', { 'cache-control': 'no-store, max-age=60' }, 'no-store', 'rfc'],
    ['private', { 'cache-control': 'private, max-age=60' }, 'private', 'rfc'],
    ['no-cache (varnish profile)', { 'cache-control': 'no-cache, max-age=60' }, 'no-cache', 'varnish'],
    ['Set-Cookie (varnish profile)', { 'cache-control': 'max-age=60', 'set-cookie': 'id=1' }, 'set-cookie', 'varnish'],
    ['Vary: *', { 'cache-control': 'max-age=60', vary: '*' }, 'vary-star', 'rfc'],
  ] as const)('%s: fetched every time, the key becomes hit-for-miss', async (_n, headers, reason, profile) => {
    const { get } = await setup(() => ({ ...headers }), { profile });
    const a = await get('/u');
    expect(a.headers['cache-status']).toBe(`sluice; fwd=uri-miss; fwd-status=200; detail=${reason}`);
    const b = await get('/u');
    expect(b.headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; detail=hit-for-miss');
    expect(origin?.count).toBe(2);
    expect(px?.proxy.stats.cache_hitmiss).toBe(1);
  });

  it('a hit-for-miss key is stored again once the origin sends a cacheable response', async () => {
    let cacheable = false;
    const { get } = await setup(() => (cacheable ? { 'cache-control': 'max-age=60' } : { 'cache-control': 'private' }));
    await get('/flip');
    cacheable = true;
    const b = await get('/flip');
    expect(b.headers['cache-status']).toMatch(/detail=hit-for-miss/);
    expect(b.headers['cache-status']).toMatch(/stored/);
    expect((await get('/flip')).headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin?.count).toBe(2);
  });
});

describe('builtin recv policy', () => {
  it.each([
    ['Authorization', { authorization: 'Bearer x' }],
    ['Cookie', { cookie: 'a=1' }],
  ])('passes requests with %s', async (_n, h) => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60' }));
    const a = await get('/p', h);
    const b = await get('/p', h);
    expect(a.headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; detail=pass');
    expect(b.body).not.toBe(a.body);
    expect(origin?.count).toBe(2);
    expect(px?.proxy.stats.s_pass).toBe(2);
  });

  it('passes POST with its body and does not cache it', async () => {
    const o = await startScriptedOrigin(async (req, res) => {
      let body = '';
      for await (const c of req) body += String(c);
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`got ${req.method} ${body}`);
    });
    origin = o;
    track(origin);
    px = await startProxy(o.url);
    track(px);
    const r = await request(`${px.url}/post`, { method: 'POST', body: 'hello' });
    expect(await r.body.text()).toBe('got POST hello');
    const g = await request(`${px.url}/post`);
    expect(await g.body.text()).toBe('got GET ');
    expect(o.count).toBe(2);
  });

  it('policy hooks can override the builtin (cache despite Cookie, custom key)', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60' }), {
      hooks: {
        requestFilter: (req) => {
          delete req.headers['cookie'];
          return undefined; // fall through to builtin, which now looks up
        },
        cacheKey: (req) => req.url.split('?')[0],
      },
    });
    await get('/k?a=1', { cookie: 'x=1' });
    const b = await get('/k?b=2', { cookie: 'y=2' });
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin?.count).toBe(1);
    expect(origin?.requests[0]?.headers['cookie']).toBeUndefined();
  });
});

describe('Vary and HEAD', () => {
  it('stores one variant per value of the varied header', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60', vary: 'Accept-Language' }));
    const en = await get('/v', { 'accept-language': 'en' });
    const fr = await get('/v', { 'accept-language': 'fr' });
    expect(fr.headers['cache-status']).toMatch(/fwd=vary-miss/);
    expect((await get('/v', { 'accept-language': 'en' })).body).toBe(en.body);
    expect((await get('/v', { 'accept-language': 'fr' })).body).toBe(fr.body);
    expect(origin?.count).toBe(2);
  });

  it('serves HEAD from a cached GET, with the length and no body', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60' }));
    const g = await get('/head');
    const raw = parseRawResponse(await rawExchange(px!.port, 'HEAD /head HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n'));
    expect(raw.status).toBe(200);
    expect(raw.headers['content-length']).toBe(String(g.body.length));
    expect(raw.body.length).toBe(0);
    expect(raw.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin?.count).toBe(1);
  });

  it('a HEAD miss fetches GET from the origin so a later GET is a hit', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60' }));
    const h = await get('/hm', {}, 'HEAD');
    expect(h.body).toBe('');
    expect(origin?.requests[0]?.method).toBe('GET');
    // The fetch runs to completion in the background.
    const g = await get('/hm');
    expect(g.body).toBe('body 1 for /hm');
    expect(origin?.count).toBe(1);
  });
});

describe('headers between hops', () => {
  it('strips hop-by-hop fields both ways and adds Via and X-Forwarded-For', async () => {
    const { get } = await setup(() => ({
      'cache-control': 'max-age=60',
      connection: 'X-Origin-Secret',
      'x-origin-secret': 'o',
      'keep-alive': 'timeout=5',
      'proxy-authenticate': 'Basic',
      'x-origin-ok': '1',
    }));
    await get('/warm');
    // Raw socket: HTTP clients refuse to send a Connection header naming other fields.
    const r = parseRawResponse(
      await rawExchange(
        px!.port,
        'GET /hop HTTP/1.1\r\nHost: test.local\r\nConnection: close, X-Client-Secret\r\nX-Client-Secret: c\r\n' +
          'Proxy-Authorization: Basic y\r\nTE: trailers\r\nKeep-Alive: timeout=9\r\nX-Client-Ok: 1\r\n\r\n',
      ),
    );
    const seen = origin!.requests[1]!.headers;
    expect(origin!.requests[1]!.url).toBe('/hop');
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['x-client-secret']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['te']).toBeUndefined();
    expect(seen['x-client-ok']).toBe('1');
    expect(seen['via']).toBe('1.1 sluice');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(r.headers['x-origin-secret']).toBeUndefined();
    expect(r.headers['proxy-authenticate']).toBeUndefined();
    expect(r.headers['keep-alive']).toBeUndefined();
    expect(r.headers['x-origin-ok']).toBe('1');
    expect(r.headers['via']).toBe('1.1 sluice');
  });

  it('appends to an existing X-Forwarded-For and Via', async () => {
    const { get } = await setup(() => ({ 'cache-control': 'max-age=60' }));
    await get('/xff', { 'x-forwarded-for': '10.1.2.3', via: '1.1 edge' });
    expect(origin!.requests[0]!.headers['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(origin!.requests[0]!.headers['via']).toBe('1.1 edge, 1.1 sluice');
  });
});
