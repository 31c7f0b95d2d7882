import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin, startScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { useCleanup } from '../test-support/harness.js';

const track = useCleanup();

async function sluice(backends: Array<{ url: string; name?: string }>, director: 'round-robin' | 'shard' = 'round-robin') {
  const origin = createOriginClient({ backends, director });
  const proxy = createProxy({ upstream: origin });
  const { port } = await proxy.listen(0);
  track({ close: async () => { await proxy.close(); await origin.destroy(); } });
  return { proxy, url: `http://127.0.0.1:${port}` };
}

/** The index of the one peer holding `key` in cache (a HEAD to each: only the owner answers from cache), or -1. */
async function ownerOf(key: string, peers: Array<{ url: string }>): Promise<number> {
  const hits: number[] = [];
  for (const [i, p] of peers.entries()) {
    const r = await request(`${p.url}${key}`, { method: 'HEAD', headers: { host: 'cluster.test' } });
    await r.body.text();
    if (String(r.headers['cache-status']).includes('hit')) hits.push(i);
  }
  return hits.length === 1 ? (hits[0] as number) : -1;
}

describe('peers and connection reuse', () => {
  it('Sluice nodes behind a shard director form one cache: each key is fetched once, by the node that owns it', async () => {
    const origin = track(await startFixtureOrigin());
    const peers = await Promise.all([0, 1, 2].map(() => sluice([{ url: origin.url }])));
    const front = await sluice(peers.map((p, i) => ({ url: p.url, name: `peer${i}` })), 'shard');
    const keys = Array.from({ length: 12 }, (_, i) => `/static/200?k=${i}`);
    for (let round = 0; round < 3; round++) {
      for (const k of keys) {
        const r = await request(`${front.url}${k}`, { method: 'GET', headers: { host: 'cluster.test' } });
        expect(r.statusCode).toBe(200);
        await r.body.text();
      }
    }
    // Round 1 misses everywhere; rounds 2 and 3 are hits in the front. What matters: each key reached the origin
    // once, through the one peer that owns it, and the keys are spread over all peers.
    expect(origin.hits('/static/200')).toBe(12);
    const perPeer = peers.map((p) => p.proxy.stats.cache_miss);
    expect(perPeer.reduce((a, b) => a + b, 0)).toBe(12);
    expect(perPeer.every((n) => n > 0)).toBe(true);
    // Asked directly, a key's owner has it cached and the other peers do not.
    const k0 = keys[0] as string;
    const owner = await ownerOf(k0, peers);
    expect(owner).toBeGreaterThanOrEqual(0);
    const backends = front.proxy.snapshot().backends;
    expect(backends.map((b) => b['name'])).toEqual(['peer0', 'peer1', 'peer2']);
    expect(backends.reduce((a, b) => a + Number(b['requests']), 0)).toBe(12);
  });

  it('a connection the origin marks close is not reused', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { connection: 'close', 'cache-control': 'private', 'content-length': '2' });
        res.end('ok');
      }),
    );
    const px = await sluice([{ url: origin.url }]);
    for (let i = 0; i < 5; i++) await (await request(`${px.url}/c`)).body.text();
    expect(origin.count).toBe(5);
    expect(origin.connections).toBe(5);
  });
});
