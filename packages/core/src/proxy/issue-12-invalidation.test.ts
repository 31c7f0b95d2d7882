import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type http from 'node:http';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';

/**
 * Issue 12, RFC 9111 §4.4: before the fix an unsafe method was passed to the origin and nothing else happened, so a
 * GET after a successful POST/PUT/DELETE still got the object stored before it (the public cache test suite's
 * invalidate-* tests: "Response 3 comes from cache").
 */
const track = useCleanup();

type Reply = (req: http.IncomingMessage) => { status?: number; headers?: http.OutgoingHttpHeaders };

async function setup(reply: Reply) {
  const origin = track(
    await startScriptedOrigin((req, res, n) => {
      req.resume();
      const r = reply(req);
      res.writeHead(r.status ?? 200, { 'cache-control': 'max-age=3600', ...r.headers });
      res.end(`#${n} ${req.method ?? ''} ${req.url ?? ''}`);
    }),
  );
  const px = track(await startProxy(origin.url));
  const send = async (method: string, path: string, host = 'site.test') => {
    const r = await request(`${px.url}${path}`, { method, headers: { host }, ...(method === 'GET' ? {} : { body: 'abc' }) });
    return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']) };
  };
  return { origin, send };
}

describe('issue 12: unsafe methods invalidate (RFC 9111 §4.4)', () => {
  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'M-SEARCH'])('a 2xx answer to %s invalidates the stored GET of its URL', async (method) => {
    const { origin, send } = await setup(() => ({}));
    const a = await send('GET', '/doc');
    expect((await send('GET', '/doc')).body).toBe(a.body);
    expect((await send(method, '/doc')).status).toBe(200);
    const c = await send('GET', '/doc');
    expect(c.body).not.toBe(a.body);
    expect(c.cacheStatus).toMatch(/fwd=uri-miss/);
    expect(origin.count).toBe(3);
  });

  it('a 3xx answer invalidates too; an error answer (4xx, 5xx) does not', async () => {
    const { origin, send } = await setup((req) => ({ status: req.method === 'GET' ? 200 : Number(/\d{3}/.exec(req.url ?? '')?.[0] ?? 200) }));
    for (const status of [500, 404]) {
      const a = await send('GET', `/e${status}`);
      await send('POST', `/e${status}`);
      expect((await send('GET', `/e${status}`)).body).toBe(a.body);
    }
    const b = await send('GET', '/r303');
    await send('POST', '/r303');
    expect((await send('GET', '/r303')).body).not.toBe(b.body);
    expect(origin.count).toBe(7);
  });

  it('invalidates the same-host Location and Content-Location URLs, never another host', async () => {
    const { origin, send } = await setup((req) =>
      req.method === 'POST'
        ? { headers: { location: '/loc?x=1', 'content-location': 'http://site.test/cl', 'cache-control': 'no-store' } }
        : {},
    );
    const loc = await send('GET', '/loc?x=1');
    const cl = await send('GET', '/cl');
    const other = await send('GET', '/cl', 'other.test');
    await send('POST', '/form');
    expect((await send('GET', '/loc?x=1')).body).not.toBe(loc.body);
    expect((await send('GET', '/cl')).body).not.toBe(cl.body);
    expect((await send('GET', '/cl', 'other.test')).body).toBe(other.body);
    expect(origin.count).toBe(6);
  });

  it('a Location on another host invalidates nothing there', async () => {
    const { send } = await setup((req) => (req.method === 'PUT' ? { headers: { location: 'http://other.test/x' } } : {}));
    const x = await send('GET', '/x', 'other.test');
    await send('PUT', '/y');
    expect((await send('GET', '/x', 'other.test')).body).toBe(x.body);
  });
});
