import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { testClock } from '../test-support/clock.js';
import { startProxy, useCleanup } from '../test-support/harness.js';
import type { ProxyOptions } from './proxy.js';

/**
 * Issue 12, targeted cache control over real sockets: CDN-Cache-Control (RFC 9213) and Surrogate-Control (W3C Edge
 * Architecture) replace Cache-Control and Expires for this cache, first of the target list present and valid wins.
 * Before the fix both were ignored (Surrogate-Control no-store aside): the suite's surrogate-* failed, among them
 * surrogate-fresh-cc-nostore (stored for us although Cache-Control says no-store) and
 * surrogate-max-age-long-cc-max-age (a short Surrogate-Control max-age must win over a long Cache-Control one).
 */
const track = useCleanup();

async function setup(headers: http.OutgoingHttpHeaders, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  const origin: ScriptedOrigin = track(
    await startScriptedOrigin((_req, res, n) => {
      res.writeHead(200, headers);
      res.end(`#${n}`);
    }),
  );
  // A frozen clock unless the test moves one: ages stay 0, so the ttl in Cache-Status is exact.
  const frozen = Date.parse('2026-12-01T12:00:00Z');
  const px = track(await startProxy(origin.url, { now: () => frozen, ...opts }));
  const get = async () => {
    const r = await request(`${px.url}/t`, { headers: { host: 'site.test' } });
    return { body: await r.body.text(), cacheStatus: String(r.headers['cache-status']), headers: r.headers };
  };
  return { origin, get };
}

describe('issue 12: CDN-Cache-Control (RFC 9213)', () => {
  it('max-age in CDN-Cache-Control stores what Cache-Control forbids, and the field goes on to the client', async () => {
    const { origin, get } = await setup({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' });
    const a = await get();
    expect(a.headers['cdn-cache-control']).toBe('max-age=60');
    expect(a.headers['cache-control']).toBe('no-store');
    const b = await get();
    expect(b.body).toBe('#1');
    expect(b.cacheStatus).toBe('sluice; hit; ttl=60');
    expect(origin.count).toBe(1);
  });

  it('no-store in CDN-Cache-Control wins over a fresh Cache-Control and Expires', async () => {
    const { origin, get } = await setup({ 'cache-control': 'max-age=600', expires: 'Fri, 01 Jan 2038 00:00:00 GMT', 'cdn-cache-control': 'no-store' });
    await get();
    expect((await get()).body).toBe('#2');
    expect(origin.count).toBe(2);
  });

  it('an invalid CDN-Cache-Control (not a structured dictionary) is ignored: Cache-Control applies', async () => {
    const { origin, get } = await setup({ 'cache-control': 'max-age=600', 'cdn-cache-control': 'MAX-AGE=1, no-store' });
    await get();
    expect((await get()).cacheStatus).toMatch(/^sluice; hit; ttl=600/);
    expect(origin.count).toBe(1);
  });

  it('the target list is configurable: an own field first, CDN-Cache-Control ignored when not listed', async () => {
    const headers = { 'cache-control': 'no-store', 'cdn-cache-control': 'no-store', 'sluice-cache-control': 'max-age=30' };
    const own = await setup(headers, { cacheTargets: ['Sluice-Cache-Control'] });
    await own.get();
    expect((await own.get()).cacheStatus).toBe('sluice; hit; ttl=30');
    const none = await setup({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=30' }, { cacheTargets: [] });
    await none.get();
    expect((await none.get()).body).toBe('#2');
  });
});

describe('issue 12: Surrogate-Control', () => {
  it('directives targeted at us replace Cache-Control; the field is not forwarded; the origin hears our token', async () => {
    const { origin, get } = await setup({ 'cache-control': 'no-store', 'surrogate-control': 'max-age=60;sluice' });
    const a = await get();
    expect(a.headers['surrogate-control']).toBeUndefined();
    expect(a.headers['cache-control']).toBe('no-store');
    expect((await get()).cacheStatus).toBe('sluice; hit; ttl=60');
    expect(origin.count).toBe(1);
    expect(origin.requests[0]?.headers['surrogate-capability']).toBe('sluice="Surrogate/1.0"');
  });

  it('a short Surrogate-Control max-age wins over a long Cache-Control one, and Expires is ignored', async () => {
    const c = testClock();
    const { origin, get } = await setup(
      { 'cache-control': 'max-age=3600', 'surrogate-control': 'MaX-aGe=1', expires: 'Fri, 01 Jan 2038 00:00:00 GMT', date: new Date(c.now()).toUTCString() },
      { now: c.now },
    );
    await get();
    c.advance(2);
    expect((await get()).body).toBe('#2');
    expect(origin.count).toBe(2);
  });

  it('directives targeted at another device are ignored, and so is a field with only content="ESI/1.0"', async () => {
    const other = await setup({ 'cache-control': 'max-age=600', 'surrogate-control': 'no-store;other-cdn' });
    await other.get();
    expect((await other.get()).cacheStatus).toMatch(/^sluice; hit/);
    const esi = await setup({ 'cache-control': 'max-age=600', 'surrogate-control': 'content="ESI/1.0"' });
    await esi.get();
    expect((await esi.get()).cacheStatus).toMatch(/^sluice; hit; ttl=600/);
  });

  it('the varnish profile does not target it: max-age there is ignored, no-store still refuses (builtin.vcl)', async () => {
    const maxAge = await setup({ 'cache-control': 'no-store', 'surrogate-control': 'max-age=60' }, { profile: 'varnish' });
    await maxAge.get();
    expect((await maxAge.get()).body).toBe('#2');
    expect(maxAge.origin.requests[0]?.headers['surrogate-capability']).toBeUndefined();
    const noStore = await setup({ 'cache-control': 'max-age=60', 'surrogate-control': 'no-store' }, { profile: 'varnish' });
    expect((await noStore.get()).cacheStatus).toMatch(/detail=surrogate-control/);
  });
});
