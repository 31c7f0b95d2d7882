import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';
import { testClock } from '../test-support/clock.js';

/**
 * Issue 12, serving stale (RFC 9111 §4.2.4) and keeping stale objects for revalidation (§4.3.1). Before the fix the
 * default 10 s grace served stale responses the origin never allowed, must-revalidate, proxy-revalidate and s-maxage
 * included (the suite's stale-close-*: "Response 2 comes from cache"), and an expired object was dropped unless
 * --keep was set, so the next request was never conditional.
 */
const track = useCleanup();

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function setup(handler: Handler, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  const origin: ScriptedOrigin = track(await startScriptedOrigin(handler));
  const px = track(await startProxy(origin.url, opts));
  const get = async (path: string) => {
    const r = await request(`${px.url}${path}`, { headers: { host: 'site.test' } });
    return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']), headers: r.headers };
  };
  return { origin, get };
}

/** An origin whose every answer carries `cc` and a body naming the request number. */
const answering =
  (cc: string, c: { now: () => number }, extra: http.OutgoingHttpHeaders = {}): Handler =>
  (_req, res, n) => {
    res.writeHead(200, { 'cache-control': cc, date: new Date(c.now()).toUTCString(), ...extra });
    res.end(`#${n}`);
  };

describe('issue 12: stale only with permission (RFC 9111 §4.2.4)', () => {
  it('by default an expired object is not served stale: the request waits for the origin', async () => {
    const c = testClock();
    const { origin, get } = await setup(answering('max-age=1', c), { now: c.now });
    expect((await get('/a')).body).toBe('#1');
    c.advance(3);
    const b = await get('/a');
    expect(b.body).toBe('#2');
    expect(b.cacheStatus).not.toMatch(/grace/);
    expect(origin.count).toBe(2);
  });

  it('stale-while-revalidate allows stale by default: served at once while one background fetch refreshes it', async () => {
    const c = testClock();
    const { origin, get } = await setup(answering('max-age=1, stale-while-revalidate=30', c), { now: c.now });
    await get('/swr');
    c.advance(3);
    const b = await get('/swr');
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toMatch(/detail=grace/);
    await until(() => origin.count === 2);
  });

  it.each(['must-revalidate', 'proxy-revalidate', 's-maxage=1', 'must-revalidate, stale-while-revalidate=30', 'no-cache'])(
    'an explicit grace of 10 s never serves stale against "max-age=1, %s"',
    async (directive) => {
      const c = testClock();
      const { origin, get } = await setup(answering(`max-age=1, ${directive}`, c), { now: c.now, defaultGraceSec: 10 });
      await get('/mr');
      c.advance(3);
      const b = await get('/mr');
      expect(b.body).toBe('#2');
      expect(b.cacheStatus).not.toMatch(/grace/);
      expect(origin.count).toBe(2);
    },
  );

  it('an explicit grace still serves stale where nothing forbids it (the Varnish behaviour, one setting away)', async () => {
    const c = testClock();
    const { get } = await setup(answering('max-age=1', c), { now: c.now, defaultGraceSec: 10 });
    await get('/g');
    c.advance(3);
    const b = await get('/g');
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toMatch(/detail=grace/);
  });
});

describe('issue 12: stale objects kept for revalidation and for a disconnected origin', () => {
  it('by default an expired object with a validator is kept, and the next request revalidates it (a 304: the stored body reused)', async () => {
    const c = testClock();
    const { origin, get } = await setup((req, res, n) => {
      const headers = { 'cache-control': 'max-age=1', etag: '"v1"', date: new Date(c.now()).toUTCString() };
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, headers);
      res.end(`#${n}`);
    }, { now: c.now });
    await get('/v');
    c.advance(600);
    const b = await get('/v');
    expect(origin.requests[1]?.headers['if-none-match']).toBe('"v1"');
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toMatch(/fwd=stale/);
  });

  it('an origin that cannot be reached gets the kept stale object served, unless the response forbids stale', async () => {
    const c = testClock();
    const { get } = await setup((req, res, n) => {
      if (n > 2) {
        res.socket?.destroy();
        return;
      }
      const cc = req.url === '/strict' ? 'max-age=1, must-revalidate' : 'max-age=1';
      res.writeHead(200, { 'cache-control': cc, date: new Date(c.now()).toUTCString() });
      res.end(`#${n}`);
    }, { now: c.now });
    await get('/loose');
    await get('/strict');
    c.advance(60);
    const loose = await get('/loose');
    expect(loose.status).toBe(200);
    expect(loose.body).toBe('#1');
    expect(loose.cacheStatus).toMatch(/detail=stale-if-error/);
    const strict = await get('/strict');
    expect(strict.status).toBeGreaterThanOrEqual(500);
  });

  it('staleIfDisconnected: false (the Varnish profile) answers an unreachable origin with an error', async () => {
    const c = testClock();
    const { get } = await setup((_req, res, n) => {
      if (n > 1) {
        res.socket?.destroy();
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=1', date: new Date(c.now()).toUTCString() });
      res.end(`#${n}`);
    }, { now: c.now, staleIfDisconnected: false });
    await get('/x');
    c.advance(60);
    expect((await get('/x')).status).toBeGreaterThanOrEqual(500);
  });
});
