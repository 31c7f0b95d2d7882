import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';
import { testClock } from '../test-support/clock.js';

/**
 * Issue 12, what the rfc profile stores (RFC 9111 §3) that the builtin refused, over real sockets. Before the fix:
 * - any status outside Varnish's set was never stored, even with explicit freshness (the suite's status-500-fresh,
 *   status-599-fresh ... and the status-*-stale that depend on them), and must-understand was not read (§5.2.2.3);
 * - a no-cache response made the key hit-for-miss, so the next request was never conditional (§5.2.2.4:
 *   cc-resp-no-cache-revalidate);
 * - a Set-Cookie response was never stored (headers-store-Set-Cookie, other-set-cookie);
 * - a 304 carrying a different ETag renamed the stored response (§4.3.4: 304-etag-update-response-ETag).
 * The varnish profile keeps builtin.vcl's refusals.
 */
const track = useCleanup();

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function setup(handler: Handler, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  const origin: ScriptedOrigin = track(await startScriptedOrigin(handler));
  // A frozen clock unless the test moves one: ages stay 0, so the ttl in Cache-Status is exact.
  const frozen = Date.parse('2026-12-01T12:00:00Z');
  const px = track(await startProxy(origin.url, { now: () => frozen, ...opts }));
  const get = async (path: string) => {
    const r = await request(`${px.url}${path}`, { headers: { host: 'site.test' } });
    return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']), headers: r.headers };
  };
  return { origin, get };
}

const answer =
  (status: number, headers: (n: number) => http.OutgoingHttpHeaders): Handler =>
  (_req, res, n) => {
    res.writeHead(status, headers(n));
    res.end(`#${n}`);
  };

describe('issue 12: statuses with explicit freshness (RFC 9111 §3)', () => {
  it.each([[299], [400], [500], [503], [599]])('a fresh %i with max-age is stored and reused; once stale it is not', async (status) => {
    const c = testClock();
    const date = (): string => new Date(c.now()).toUTCString();
    const { origin, get } = await setup(answer(status, () => ({ 'cache-control': 'max-age=60', date: date() })), { now: c.now });
    const a = await get('/s');
    expect(a.status).toBe(status);
    expect(a.cacheStatus).toMatch(/stored/);
    const b = await get('/s');
    expect(b.status).toBe(status);
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toMatch(/^sluice; hit/);
    c.advance(61);
    expect((await get('/s')).body).toBe('#2');
    expect(origin.count).toBe(2);
  });

  it('an unknown status with must-understand is not stored; a known one is stored despite no-store', async () => {
    const { origin, get } = await setup((req, res, n) => {
      res.writeHead(req.url === '/known' ? 200 : 599, { 'cache-control': 'max-age=3600, must-understand, no-store' });
      res.end(`#${n}`);
    });
    const u1 = await get('/unknown');
    expect(u1.cacheStatus).toMatch(/detail=must-understand/);
    expect((await get('/unknown')).body).toBe('#2');
    await get('/known');
    const k2 = await get('/known');
    expect(k2.body).toBe('#3');
    expect(k2.cacheStatus).toMatch(/^sluice; hit/);
    expect(origin.count).toBe(3);
  });

  it('a 500 without explicit freshness is not stored (no heuristic for it)', async () => {
    const { origin, get } = await setup(answer(500, () => ({ etag: '"e"', 'last-modified': 'Wed, 01 Jan 2020 00:00:00 GMT' })));
    expect((await get('/e')).cacheStatus).toMatch(/detail=no-freshness/);
    expect((await get('/e')).body).toBe('#2');
    expect(origin.count).toBe(2);
  });

  it('the varnish profile stores only its own statuses: a 500 with max-age is not stored', async () => {
    const { origin, get } = await setup(answer(500, () => ({ 'cache-control': 'max-age=60' })), { profile: 'varnish' });
    expect((await get('/v')).cacheStatus).toMatch(/detail=status/);
    expect((await get('/v')).body).toBe('#2');
    expect(origin.count).toBe(2);
  });
});

describe('issue 12: no-cache is stored and revalidated on every use (RFC 9111 §5.2.2.4)', () => {
  it('even while fresh by max-age, each request is conditional; a 304 serves the stored body', async () => {
    const { origin, get } = await setup((req, res, n) => {
      if (n > 1) {
        expect(req.headers['if-none-match']).toBe('"nc"');
        res.writeHead(304, { etag: '"nc"', 'cache-control': 'no-cache, max-age=3600' });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"nc"', 'cache-control': 'no-cache, max-age=3600' });
      res.end('stored');
    });
    expect((await get('/nc')).body).toBe('stored');
    for (const n of [2, 3]) {
      const r = await get('/nc');
      expect(r.status).toBe(200);
      expect(r.body).toBe('stored');
      expect(r.cacheStatus).toMatch(/fwd=stale; fwd-status=200; stored; ttl=0/);
      expect(origin.count).toBe(n);
    }
    expect(origin.requests.slice(1).every((q) => q.headers['if-none-match'] === '"nc"')).toBe(true);
  });

  it('the varnish profile does not store it: the next request is not conditional', async () => {
    const { origin, get } = await setup(answer(200, () => ({ etag: '"nc"', 'cache-control': 'no-cache, max-age=3600' })), { profile: 'varnish' });
    await get('/nc');
    expect((await get('/nc')).body).toBe('#2');
    expect(origin.requests[1]?.headers['if-none-match']).toBeUndefined();
  });
});

describe('issue 12: Set-Cookie responses', () => {
  it('the rfc profile stores a fresh Set-Cookie response and serves it, Set-Cookie included (RFC 9111 §3.1)', async () => {
    const { origin, get } = await setup(answer(200, (n) => ({ 'cache-control': 'max-age=60', 'set-cookie': `a=${n}` })));
    await get('/c');
    const b = await get('/c');
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toMatch(/^sluice; hit/);
    expect(b.headers['set-cookie']).toBe('a=1');
    expect(origin.count).toBe(1);
  });

  it('private keeps a personal Set-Cookie response out of the cache', async () => {
    const { origin, get } = await setup(answer(200, (n) => ({ 'cache-control': 'private, max-age=60', 'set-cookie': `a=${n}` })));
    await get('/p');
    const b = await get('/p');
    expect(b.headers['set-cookie']).toBe('a=2');
    expect(origin.count).toBe(2);
  });
});

describe('issue 12: a 304 does not rename the stored response (RFC 9111 §4.3.4)', () => {
  it('a 304 with another ETag freshens the stored response but its ETag stays', async () => {
    const c = testClock();
    const { origin, get } = await setup(
      (_req, res, n) => {
        const date = new Date(c.now()).toUTCString();
        res.writeHead(n === 1 ? 200 : 304, { etag: n === 1 ? '"abcdef"' : '"ghijkl"', 'cache-control': 'max-age=2', date, 'x-v': String(n) });
        res.end(n === 1 ? 'body' : undefined);
      },
      { now: c.now },
    );
    await get('/e');
    c.advance(3);
    const b = await get('/e');
    expect(b.body).toBe('body');
    expect(b.headers['etag']).toBe('"abcdef"');
    expect(b.headers['x-v']).toBe('2');
    const d = await get('/e');
    expect(d.cacheStatus).toMatch(/^sluice; hit/);
    expect(d.headers['etag']).toBe('"abcdef"');
    expect(origin.count).toBe(2);
  });
});
