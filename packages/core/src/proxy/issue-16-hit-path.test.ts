import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { KeepAliveClient, rawGet, startProxy, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Issue 16 made the hit path cheaper: a hit runs through the machine without a promise, and a response of up to
 * 16 KiB (head and body) leaves as one joined Buffer instead of a corked writev. These pin down what must not change
 * with it: the bytes on the wire on both sides of the join size, keep-alive framing after either path, and a hook that
 * throws synchronously on the (now synchronous) hit path still becoming a 503 on its own request only.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** What the fixture origin sends for /static/<n>: a repeating a-z pattern. */
const pattern = (n: number): string => 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(n / 26)).slice(0, n);

describe('issue 16: the hit path', () => {
  it('hits on both sides of the one-write size arrive byte for byte on one kept-alive connection, HEAD without a body', async () => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url));
    const client = new KeepAliveClient(px.port);
    const JOIN_MAX = 16 * 1024;
    const sides = new Set<string>();
    // Sizes around 16 KiB minus a head's length, so that whatever the head's exact length, some responses are joined
    // and some are not; plus a small and a large one.
    for (const size of [100, 15_900, 16_000, 16_100, 16_200, 16_300, 16_400, 70_000]) {
      const path = `/static/${size}`;
      const miss = await client.send('GET', path);
      expect(miss.status).toBe(200);
      const hit = await client.send('GET', path);
      expect(hit.status).toBe(200);
      expect(hit.headers['cache-status']).toMatch(/; hit/);
      expect(hit.headers['content-length']).toBe(String(size));
      expect(hit.body.toString('latin1')).toBe(pattern(size));
      expect(hit.body.equals(miss.body)).toBe(true);
      sides.add(hit.raw.length <= JOIN_MAX ? 'joined' : 'writev');
      // rawGet names another Host (its own cache key): one GET stores it, then the HEAD is a hit.
      expect((await rawGet(px.port, path)).body.toString('latin1')).toBe(pattern(size));
      const head = await rawGet(px.port, path, {}, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers['cache-status']).toMatch(/; hit/);
      expect(head.headers['content-length']).toBe(String(size));
      expect(head.body.length).toBe(0);
    }
    expect([...sides].sort()).toEqual(['joined', 'writev']);
    // The connection is still in step after every path: one more hit answers.
    expect((await client.send('GET', '/static/100')).body.toString('latin1')).toBe(pattern(100));
    await client.close();
    expect(uncaught).toEqual([]);
  });

  it.each([
    ['requestFilter', { requestFilter: (req: { url: string }) => (req.url.includes('boom') ? explode() : undefined) }],
    ['cacheKey', { cacheKey: (req: { url: string }) => (req.url.includes('boom') ? explode() : undefined) }],
    // Not on the synth: failToProxy's 503 goes through the same hook.
    ['responseFilter on a hit', { responseFilter: (res: { synthetic: boolean }, req: { url: string }) => (!res.synthetic && req.url.includes('boom') ? explode() : undefined) }],
  ])('a %s hook that throws synchronously: that request gets 503, the connection and the proxy go on', async (name, hooks) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url, { hooks }));
    const client = new KeepAliveClient(px.port);
    // The first request stores the object (its own delivery fails), so in the responseFilter case the second throws
    // on a hit: the path that no longer runs in a promise.
    expect((await client.send('GET', '/static/10?boom')).status).toBe(503);
    expect((await client.send('GET', '/static/10')).status).toBe(200);
    const hitsBefore = px.proxy.stats.cache_hit;
    const again = await client.send('GET', '/static/10?boom');
    expect(again.status).toBe(503);
    if (name === 'responseFilter on a hit') expect(px.proxy.stats.cache_hit).toBe(hitsBefore + 1);
    const after = await client.send('GET', '/static/10');
    expect(after.status).toBe(200);
    expect(after.headers['cache-status']).toMatch(/; hit/);
    expect(after.body.toString('latin1')).toBe('abcdefghij');
    await client.close();
    expect(uncaught).toEqual([]);
  });
});

function explode(): never {
  throw new Error('hook failed');
}
