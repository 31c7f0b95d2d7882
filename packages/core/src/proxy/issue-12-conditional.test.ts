import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';
import { testClock } from '../test-support/clock.js';

/**
 * Issue 12, conditional requests and Vary over real sockets:
 * - If-Modified-Since against a stored response without Last-Modified is judged by its Date (RFC 9111 §4.3.2); before
 *   the fix the cache answered 200 (the suite's conditional-lm-fresh-no-lm);
 * - Accept-Language values differing only in case select the same variant (before: a miss, vary-normalise-lang-case);
 * - a client's conditional request is answered from the variant its Vary fields select, and a stale variant is
 *   revalidated with its own validators, never another variant's.
 */
const track = useCleanup();

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function setup(handler: Handler, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  const origin: ScriptedOrigin = track(await startScriptedOrigin(handler));
  // A frozen clock unless the test moves one: ages stay 0, so the ttl in Cache-Status is exact.
  const frozen = Date.parse('2026-12-01T12:00:00Z');
  const px = track(await startProxy(origin.url, { now: () => frozen, ...opts }));
  const get = async (h: Record<string, string> = {}) => {
    const r = await request(`${px.url}/v`, { headers: { host: 'site.test', ...h } });
    return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']), headers: r.headers };
  };
  return { origin, get };
}

describe('issue 12: conditional requests against stored responses', () => {
  it('If-Modified-Since against a stored response without Last-Modified: 304 when its Date is not later', async () => {
    const c = testClock();
    const date = new Date(c.now()).toUTCString();
    const { origin, get } = await setup((_req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=3600', date });
      res.end(`#${n}`);
    }, { now: c.now });
    await get();
    const after = await get({ 'if-modified-since': new Date(c.now() + 60_000).toUTCString() });
    expect(after.status).toBe(304);
    expect(after.cacheStatus).toMatch(/^sluice; hit/);
    const before = await get({ 'if-modified-since': new Date(c.now() - 3_000_000).toUTCString() });
    expect(before.status).toBe(200);
    expect(before.body).toBe('#1');
    expect(origin.count).toBe(1);
  });

  it('Accept-Language differing only in case selects the same variant; another order is another variant', async () => {
    const { origin, get } = await setup((req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=3600', vary: 'Accept-Language' });
      res.end(`#${n} ${String(req.headers['accept-language'])}`);
    });
    await get({ 'accept-language': 'en, de' });
    expect((await get({ 'accept-language': 'eN, De' })).body).toBe('#1 en, de');
    expect((await get({ 'accept-language': 'de, en' })).body).toBe('#2 de, en');
    expect(origin.count).toBe(2);
  });

  it('If-None-Match is answered from the variant Vary selects, and a stale variant revalidates with its own ETag', async () => {
    const c = testClock();
    const { origin, get } = await setup(
      (req, res, n) => {
        const enc = String(req.headers['accept-encoding']);
        const etag = `"${enc}"`;
        const headers = { 'cache-control': 'max-age=60', vary: 'Accept-Encoding', etag, date: new Date(c.now()).toUTCString() };
        if (req.headers['if-none-match'] === etag) {
          res.writeHead(304, headers);
          res.end();
          return;
        }
        res.writeHead(200, headers);
        res.end(`#${n} ${enc}`);
      },
      { now: c.now },
    );
    await get({ 'accept-encoding': 'gzip' });
    await get({ 'accept-encoding': 'br' });
    expect((await get({ 'accept-encoding': 'gzip', 'if-none-match': '"gzip"' })).status).toBe(304);
    // The br variant does not match the gzip ETag: the full br variant, from cache.
    const other = await get({ 'accept-encoding': 'br', 'if-none-match': '"gzip"' });
    expect(other.status).toBe(200);
    expect(other.body).toBe('#2 br');
    expect(origin.count).toBe(2);
    c.advance(61);
    const stale = await get({ 'accept-encoding': 'br' });
    expect(stale.body).toBe('#2 br');
    expect(origin.requests[2]?.headers['if-none-match']).toBe('"br"');
    expect(origin.count).toBe(3);
  });
});
