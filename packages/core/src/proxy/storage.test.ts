import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';

let origin: FixtureOrigin | undefined;
let px: ProxyHarness | undefined;
const track = useCleanup();

async function get(path: string): Promise<{ cacheStatus: string; length: number }> {
  const r = await request(`${px!.url}${path}`, { headers: { host: 'test.local' } });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { cacheStatus: String(r.headers['cache-status']), length: body.length };
}

describe('memory storage with a byte budget', () => {
  it('evicts the least recently used object when the budget is exceeded', async () => {
    origin = await startFixtureOrigin();
    track(origin);
    // 4 KiB bodies + ~512 B header overhead each: three fit in 16 KiB, a fourth does not.
    px = await startProxy(origin.url, { storageBytes: 16 * 1024 });
    track(px);
    await get('/static/4k?a');
    await get('/static/4k?b');
    await get('/static/4k?c');
    expect(px.proxy.store.objectCount).toBe(3);
    expect((await get('/static/4k?a')).cacheStatus).toMatch(/^sluice; hit/); // a is now most recent; b is LRU
    await get('/static/4k?d');
    expect(px.proxy.stats.n_lru_nuked).toBe(1);
    expect(px.proxy.store.bytes).toBeLessThanOrEqual(16 * 1024);
    expect((await get('/static/4k?a')).cacheStatus).toMatch(/^sluice; hit/);
    expect((await get('/static/4k?c')).cacheStatus).toMatch(/^sluice; hit/);
    expect((await get('/static/4k?d')).cacheStatus).toMatch(/^sluice; hit/);
    expect((await get('/static/4k?b')).cacheStatus).toMatch(/fwd=/);
  });

  it('an object larger than the budget still streams whole to its client but is not stored', async () => {
    origin = await startFixtureOrigin();
    track(origin);
    px = await startProxy(origin.url, { storageBytes: 16 * 1024 });
    track(px);
    const a = await get('/static/256k');
    expect(a.length).toBe(256 * 1024);
    // Its Content-Length is over the budget: decided when the headers arrive, so the head never claims `stored`.
    expect(a.cacheStatus).toBe('sluice; fwd=uri-miss; fwd-status=200; detail=response-too-large');
    const b = await get('/static/256k');
    expect(b.length).toBe(256 * 1024);
    // The key is hit-for-miss: the next request fetches on its own instead of queueing behind a fetch it cannot share.
    expect(b.cacheStatus).toBe('sluice; fwd=uri-miss; fwd-status=200; detail=hit-for-miss');
    expect(origin.hits('/static/256k')).toBe(2);
    expect(px.proxy.store.bytes).toBeLessThanOrEqual(16 * 1024);
  });
});

describe('readers at their own pace', () => {
  it('a stalled client slows neither the fetch nor another client', async () => {
    origin = await startFixtureOrigin();
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const size = 32 * 1024 * 1024;
    // The slow client reads its headers and then stops reading.
    const slow = net.connect(px.port, '127.0.0.1');
    let slowBytes = 0;
    const gotSome = new Promise<void>((resolve) => {
      slow.once('data', () => {
        slow.pause();
        resolve();
      });
      slow.on('data', (d: Buffer) => {
        slowBytes += d.length;
      });
    });
    slow.write('GET /static/32m HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n');
    await gotSome;
    // A second client reads everything, while the first is stalled.
    const fast = await get('/static/32m');
    expect(fast.length).toBe(size);
    // The origin fetch completed (the object is whole in the cache) although the slow client holds back.
    expect(px.proxy.stats.s_beresp_bodybytes).toBe(size);
    expect(slowBytes).toBeLessThan(size);
    expect(origin.hits('/static/32m')).toBe(1);
    // And the slow client still gets everything once it reads again.
    const done = new Promise<void>((resolve) => slow.on('end', () => resolve()));
    slow.resume();
    await done;
    expect(slowBytes).toBeGreaterThan(size);
    slow.destroy();
  });
});
