import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { deferred, startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';

let origin: ScriptedOrigin | undefined;
let px: ProxyHarness | undefined;
let agent: Agent | undefined;
const track = useCleanup();
afterEach(async () => {
  await agent?.close();
  agent = undefined;
});


async function fire(n: number, path: string): Promise<Array<Promise<{ status: number; body: string; cacheStatus: string }>>> {
  agent = new Agent({ connections: n + 10 });
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(
      request(`${px!.url}${path}`, { dispatcher: agent, headers: { host: 'test.local' } }).then(async (r) => ({
        status: r.statusCode,
        body: await r.body.text(),
        cacheStatus: String(r.headers['cache-status']),
      })),
    );
  }
  return out;
}

describe('coalescing (the waiting list)', () => {
  it('100 concurrent clients on a cold URL cause exactly 1 origin request and all get the body', async () => {
    const release = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      await release.promise;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('streamed ');
      res.end('body');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const pending = await fire(100, '/cold');
    // Barrier: the origin has the one fetch and the other 99 are parked on the busy object.
    await until(() => origin!.count === 1 && px!.proxy.stats.busy_sleep === 99);
    release.resolve();
    const results = await Promise.all(pending);
    expect(origin.count).toBe(1);
    expect(results.every((r) => r.status === 200 && r.body === 'streamed body')).toBe(true);
    expect(results.filter((r) => r.cacheStatus.includes('detail=coalesced')).length).toBe(99);
    expect(px.proxy.stats.cache_miss).toBe(1);
    expect(px.proxy.stats.busy_wakeup).toBe(99);
  });

  it('waiters stream the body as it arrives, before the fetch ends', async () => {
    const release = deferred();
    const finish = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      await release.promise;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('head-part;');
      await finish.promise;
      res.end('tail');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const dispatcher = new Agent({ connections: 20 });
    agent = dispatcher;
    const responses = Array.from({ length: 5 }, () =>
      request(`${px!.url}/live`, { dispatcher, headers: { host: 'test.local' } }),
    );
    await until(() => origin!.count === 1 && px!.proxy.stats.busy_sleep === 4);
    release.resolve();
    const all = await Promise.all(responses);
    // Every client reads the first part while the origin is still holding the rest back.
    const firsts = await Promise.all(
      all.map(async (r) => {
        const it = r.body[Symbol.asyncIterator]();
        const first = await it.next();
        return { it, first: String(first.value) };
      }),
    );
    expect(firsts.every((f) => f.first === 'head-part;')).toBe(true);
    finish.resolve();
    for (const f of firsts) {
      let rest = '';
      for (let n = await f.it.next(); n.done !== true; n = await f.it.next()) rest += String(n.value);
      expect(rest).toBe('tail');
    }
    expect(origin.count).toBe(1);
  });

  it('when the response is not shareable the waiters are released to fetch on their own, then hit-for-miss', async () => {
    const release = deferred();
    origin = await startScriptedOrigin(async (_req, res, n) => {
      await release.promise;
      res.writeHead(200, { 'cache-control': 'private' });
      res.end(`private ${n}`);
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const pending = await fire(10, '/priv');
    await until(() => origin!.count === 1 && px!.proxy.stats.busy_sleep === 9);
    release.resolve();
    const results = await Promise.all(pending);
    // Each client got its own response, nobody got another's private body twice.
    expect(origin.count).toBe(10);
    expect(new Set(results.map((r) => r.body)).size).toBe(10);
    expect(px.proxy.stats.cache_hitmiss).toBe(9);
    // Later requests do not queue: hit-for-miss, no busy sleep.
    const sleeps = px.proxy.stats.busy_sleep;
    const later = await Promise.all(await fire(5, '/priv'));
    expect(later.every((r) => r.cacheStatus.includes('detail=hit-for-miss'))).toBe(true);
    expect(px.proxy.stats.busy_sleep).toBe(sleeps);
    expect(origin.count).toBe(15);
  });

  it('a fetch that fails before headers wakes the waiters, and one of them fetches again', async () => {
    const release = deferred();
    origin = await startScriptedOrigin(async (req, res, n) => {
      // The first fetch fails before headers on both of its attempts (the origin client retries a broken
      // connection once), so the fetch fails and its waiters must be woken.
      if (n <= 2) {
        await release.promise;
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('ok');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const pending = await fire(5, '/retry');
    await until(() => origin!.count === 1 && px!.proxy.stats.busy_sleep === 4);
    release.resolve();
    const results = await Promise.all(pending);
    expect(results.filter((r) => r.status === 503).length).toBe(1);
    expect(results.filter((r) => r.status === 200 && r.body === 'ok').length).toBe(4);
    expect(origin.count).toBe(3);
  });
});
