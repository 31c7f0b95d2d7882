import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';

const track = useCleanup();
const BODY = Buffer.alloc(300_000, 'x');

/**
 * `transit_bodybytes`: body bytes sent from unstored objects, dropped once sent; `sluice proxy --young-gc` runs a
 * young-generation GC per so many of them (issue 16, pass memory). Stored bodies must not count: their buffers live on.
 */
describe('transit_bodybytes', () => {
  it('counts (and tells onTransitBytes) every body byte of a pass, and none of a stored miss or its hit', async () => {
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        res.writeHead(200, { 'cache-control': req.url?.startsWith('/pass') === true ? 'private' : 'max-age=60', 'content-length': String(BODY.length) });
        // Several writes, so the body reaches the proxy in several reads.
        for (let i = 0; i < BODY.length; i += 64 * 1024) res.write(BODY.subarray(i, i + 64 * 1024));
        res.end();
      }),
    );
    let noted = 0;
    const px = track(await startProxy(origin.url, { onTransitBytes: (n) => (noted += n) }));
    const get = async (p: string): Promise<number> => (await (await request(`${px.url}${p}`)).body.arrayBuffer()).byteLength;

    expect(await get('/stored')).toBe(BODY.length);
    expect(await get('/stored')).toBe(BODY.length);
    expect(px.proxy.stats.s_resp_bodybytes).toBe(2 * BODY.length);
    expect(px.proxy.stats.transit_bodybytes).toBe(0);

    expect(await get('/pass')).toBe(BODY.length);
    expect(px.proxy.stats.transit_bodybytes).toBe(BODY.length);
    expect(await get('/pass')).toBe(BODY.length);
    expect(px.proxy.stats.transit_bodybytes).toBe(2 * BODY.length);
    // onTransitBytes (what `sluice proxy` runs its young GC from) heard exactly the bytes counted.
    expect(noted).toBe(2 * BODY.length);
    expect(origin.count).toBe(3);
  });
});
