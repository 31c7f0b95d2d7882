import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { SlabPool } from '../cache/slab-pool.js';
import { getMaybeCut, startProxy, startRangeOrigin, startRawOrigin, until, useCleanup, type ProxyHarness } from '../test-support/harness.js';
import { testClock } from '../test-support/clock.js';
import { bodyOf, sha } from '../test-support/bodies.js';
import { closeReasons, explain } from '../test-support/slab-diagnose.js';

/**
 * Stored bodies live in reused slabs (cache/slab-pool.ts): a slab must never be filled again while anything can still
 * read it. Every body here is a different pseudo-random stream, so bytes of another object read through a recycled
 * slab change the sha256. The objects are larger than what loopback socket buffers absorb, so a paused client leaves
 * most of its response in the proxy (Writable, libuv or the object's reader) while its object is purged or evicted and
 * other misses take slabs from the pool.
 */
const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
const track = useCleanup();


/**
 * /o/NAME?n=N[&ma=S]: N bytes (Content-Length, max-age S or 60, ETag "NAME"; 304 to a matching If-None-Match);
 * /slow/NAME?n=N: the same in 8 pieces 30 ms apart; /die/NAME?n=N: half the body, then the connection is cut;
 * /chunked/NAME?n=N: chunked, no length announced.
 */
async function origin(): Promise<Awaited<ReturnType<typeof startRawOrigin>>> {
  return startRawOrigin((s, head) => {
    const m = /^GET \/(o|slow|die|chunked)\/([a-z0-9]+)\?n=(\d+)(?:&ma=(\d+))?/.exec(head) as RegExpExecArray;
    const [, kind, name, n, ma] = m as unknown as [string, string, string, string, string | undefined];
    const body = bodyOf(name, Number(n));
    const fields = `cache-control: max-age=${ma ?? 60}\r\netag: "${name}"\r\n`;
    if (new RegExp(`\\r\\nif-none-match: "${name}"`, 'i').test(head)) return void s.write(`HTTP/1.1 304 Not Modified\r\n${fields}\r\n`);
    if (kind === 'chunked') {
      s.write(`HTTP/1.1 200 OK\r\n${fields}transfer-encoding: chunked\r\n\r\n`);
      for (let at = 0; at < body.length; at += MiB) s.write(Buffer.concat([Buffer.from(`${Math.min(MiB, body.length - at).toString(16)}\r\n`), body.subarray(at, at + MiB), Buffer.from('\r\n')]));
      return void s.write('0\r\n\r\n');
    }
    s.write(`HTTP/1.1 200 OK\r\n${fields}content-length: ${body.length}\r\n\r\n`);
    if (kind === 'o') return void s.write(body);
    if (kind === 'die') {
      s.write(body.subarray(0, body.length >> 1));
      return void setTimeout(() => s.destroy(), 30);
    }
    const piece = Math.ceil(body.length / 8);
    for (let i = 0; i < 8; i++) setTimeout(() => s.write(body.subarray(i * piece, (i + 1) * piece)), 30 * i);
  });
}

/** A client that reads the head and first bytes, then stops reading until `resume`. */
function pausedClient(port: number, path: string, extra = ''): { paused: Promise<void>; resume(): void; destroy(): void; done: Promise<{ body: Buffer; head: string; ended: boolean }> } {
  const s = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  const paused = new Promise<void>((resolve) => {
    s.once('data', () => {
      s.pause();
      resolve();
    });
  });
  s.on('data', (d: Buffer) => parts.push(d));
  s.on('error', () => undefined);
  let ended = false;
  s.on('end', () => (ended = true));
  const done = new Promise<{ body: Buffer; head: string; ended: boolean }>((resolve) => {
    s.on('close', () => {
      const all = Buffer.concat(parts);
      const at = all.indexOf('\r\n\r\n');
      resolve({ head: all.subarray(0, at).toString('latin1'), body: all.subarray(at + 4), ended });
    });
  });
  s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${extra}\r\n`);
  return { paused, resume: () => s.resume(), destroy: () => s.destroy(), done };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function get(px: ProxyHarness, path: string): Promise<Buffer> {
  const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
  return Buffer.from(await r.body.arrayBuffer());
}

async function purge(px: ProxyHarness, path: string): Promise<void> {
  const r = await request(`${px.url}${path}`, { method: 'PURGE', headers: { host: 't' } });
  expect(r.statusCode).toBe(200);
  await r.body.text();
}

/** Misses that evict one another (storage of two objects), their slabs recycled through the pool. */
async function evicting(px: ProxyHarness, tag: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect(sha(await get(px, `/o/${tag}${i}?n=${SIZE}`))).toBe(sha(bodyOf(`${tag}${i}`, SIZE)));
}

/**
 * Half-size misses, each purged after the next one is stored: beside a held object of SIZE, at most two of them live,
 * within the pool's bound, so each new one fills slabs the purged one gave back. Asserts that it did.
 */
async function churn(px: ProxyHarness, pool: SlabPool, tag: string, n = 4): Promise<void> {
  const reused = pool.counts.reused;
  const half = SIZE / 2;
  for (let i = 0; i < n; i++) {
    expect(sha(await get(px, `/o/${tag}${i}?n=${half}`))).toBe(sha(bodyOf(`${tag}${i}`, half)));
    if (i > 0) await purge(px, `/o/${tag}${i - 1}?n=${half}`);
  }
  expect(pool.counts.reused - reused).toBeGreaterThanOrEqual((n - 2) * (half / pool.slabBytes));
}

async function setup(opts: { directWrites?: boolean; now?: () => number; defaultKeepSec?: number } = {}): Promise<{ px: ProxyHarness; o: Awaited<ReturnType<typeof origin>>; pool: SlabPool }> {
  const o = track(await origin());
  const px = track(await startProxy(o.url, { storageBytes: 2 * SIZE + 4 * MiB, purgeAllow: ['127.0.0.1'], ...opts }));
  return { px, o, pool: px.proxy.store.slabs as SlabPool };
}

// Paused clients wait for purges and churns that take several seconds each under load (5-7 suites on 2 cores): the
// send timeout (60 s) holds their queued bytes, and the test timeout is set past it rather than the default 20 s.
describe('slab reuse never changes bytes a client still reads', { timeout: 90_000 }, () => {
  it.each([true, false])('a paused client of a hit (direct writes %s) gets the exact body while its object is purged and the pool refilled', async (directWrites) => {
    const { px, pool } = await setup({ directWrites });
    expect(sha(await get(px, `/o/a?n=${SIZE}`))).toBe(sha(bodyOf('a', SIZE)));
    // A complete object's hit hands every chunk to the socket at once (no reader): only the response's hold keeps the
    // slabs that libuv or the Writable still has to send.
    const hitReader = pausedClient(px.port, `/o/a?n=${SIZE}`);
    await hitReader.paused;
    const why = closeReasons(px);
    const aSlabs = SIZE / pool.slabBytes;
    expect(pool.inUse).toBe(aSlabs);
    await purge(px, `/o/a?n=${SIZE}`);
    await churn(px, pool, 'x');
    const inUseDuring = pool.inUse;
    hitReader.resume();
    const h = await hitReader.done;
    const hint = explain(h.body, bodyOf('a', SIZE), { head: h.head, ended: h.ended, closeReasons: why }, pool, px);
    expect(h.ended, hint).toBe(true);
    expect(sha(h.body), hint).toBe(sha(bodyOf('a', SIZE)));
    // The purged object's slabs stayed with it while the churn reused others.
    expect(inUseDuring).toBeGreaterThanOrEqual(aSlabs);
    // Once it has its bytes, the purged object's slabs go back (the churn's last object stays).
    await until(() => pool.inUse === aSlabs / 2);
  });

  /**
   * Session 10 (slabflake): the rare sha mismatches of the test above under load were cut bodies, every byte right
   * (4,157,790 of 25,165,824: what the loopback socket buffers held), ended with a clean FIN. The hit is one whole
   * write, so its response was finished while most of it was still queued for the paused client, and the idle clock
   * applied the keep-alive timeout (5 s) to it while the purge and churn ran longer. Queued response bytes are now the
   * send timeout's (http1/connection.ts idleCheck); here the keep-alive timeout is cut to 200 ms to force the case.
   */
  it.each([true, false])('a paused client of a hit outlasts the keep-alive timeout once its whole response is queued (direct writes %s)', async (directWrites) => {
    const { px, pool } = await setup({ directWrites });
    expect(sha(await get(px, `/o/k?n=${SIZE}`))).toBe(sha(bodyOf('k', SIZE)));
    (px.proxy.server as unknown as { keepAliveTimeoutMs: number }).keepAliveTimeoutMs = 200;
    const reader = pausedClient(px.port, `/o/k?n=${SIZE}`);
    await reader.paused;
    const why = closeReasons(px);
    // Ten keep-alive timeouts without reading, the object purged meanwhile: its slabs stay held.
    await sleep(2000);
    await purge(px, `/o/k?n=${SIZE}`);
    expect(pool.inUse).toBe(SIZE / pool.slabBytes);
    reader.resume();
    const r = await reader.done;
    const hint = explain(r.body, bodyOf('k', SIZE), { head: r.head, ended: r.ended, closeReasons: why }, pool, px);
    expect(r.head, hint).toMatch(/cache-status: sluice; hit/);
    expect(r.ended, hint).toBe(true);
    expect(sha(r.body), hint).toBe(sha(bodyOf('k', SIZE)));
    await until(() => pool.inUse === 0);
  });

  it('a paused client of a miss gets the exact body while its object is purged and the pool refilled', async () => {
    const { px, pool } = await setup();
    const missReader = pausedClient(px.port, `/o/m?n=${SIZE}`);
    await missReader.paused;
    await until(() => px.proxy.stats.s_beresp_bodybytes >= SIZE);
    await purge(px, `/o/m?n=${SIZE}`);
    await churn(px, pool, 'w');
    missReader.resume();
    const m = await missReader.done;
    expect(m.ended).toBe(true);
    expect(sha(m.body)).toBe(sha(bodyOf('m', SIZE)));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it('a paused Range reader of a stored object gets exactly its range across a purge and refill', async () => {
    const { px, pool } = await setup();
    expect(sha(await get(px, `/o/r?n=${SIZE}`))).toBe(sha(bodyOf('r', SIZE)));
    const reader = pausedClient(px.port, `/o/r?n=${SIZE}`, `Range: bytes=1000-${SIZE - 5000}\r\n`);
    await reader.paused;
    await purge(px, `/o/r?n=${SIZE}`);
    await churn(px, pool, 'y');
    reader.resume();
    const r = await reader.done;
    expect(r.head).toMatch(/^HTTP\/1.1 206/);
    expect(sha(r.body)).toBe(sha(bodyOf('r', SIZE).subarray(1000, SIZE - 5000 + 1)));
  });

  it('a 304-revalidated object shares the stale body: a paused reader of it stays exact after both are gone', async () => {
    const clock = testClock();
    const { px, o, pool } = await setup({ now: clock.now, defaultKeepSec: 600 });
    expect(sha(await get(px, `/o/v?n=${SIZE}&ma=1`))).toBe(sha(bodyOf('v', SIZE)));
    clock.advance(5);
    const reader = pausedClient(px.port, `/o/v?n=${SIZE}&ma=1`);
    await reader.paused;
    const why = closeReasons(px);
    expect(o.count).toBe(2);
    expect(px.proxy.stats.fetch_304).toBe(1);
    await purge(px, `/o/v?n=${SIZE}&ma=1`);
    await churn(px, pool, 'z');
    reader.resume();
    const r = await reader.done;
    const hint = explain(r.body, bodyOf('v', SIZE), { head: r.head, ended: r.ended, closeReasons: why }, pool, px);
    expect(r.head).toMatch(/^HTTP\/1.1 200/);
    expect(sha(r.body), hint).toBe(sha(bodyOf('v', SIZE)));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it('a paused client of a sliced object (stitched from cached segments) stays exact across a purge and refill', async () => {
    const body = bodyOf('s', SIZE);
    const o = track(await startRangeOrigin(body));
    const px = track(await startProxy(o.url, { storageBytes: 4 * SIZE + 4 * MiB, purgeAllow: ['127.0.0.1'], slice: { sizeBytes: 2 * MiB, minBytes: 0 } }));
    const pool = px.proxy.store.slabs as SlabPool;
    expect(sha(await get(px, '/s0'))).toBe(sha(body));
    const reader = pausedClient(px.port, '/s0');
    await reader.paused;
    await purge(px, '/s0');
    // Other URLs, the same bytes at other offsets of other slabs: a reused slab under the reader would show.
    const reused = pool.counts.reused;
    for (let i = 1; i <= 4; i++) {
      expect(sha(await get(px, `/s${i}`))).toBe(sha(body));
      if (i > 1) await purge(px, `/s${i - 1}`);
    }
    expect(pool.counts.reused - reused).toBeGreaterThanOrEqual(SIZE / pool.slabBytes);
    reader.resume();
    const r = await reader.done;
    expect(r.ended).toBe(true);
    expect(sha(r.body)).toBe(sha(body));
  });

  it('a client that leaves mid-body lets its purged object give every slab back', async () => {
    const { px, pool } = await setup();
    const reader = pausedClient(px.port, `/o/l?n=${SIZE}`);
    await reader.paused;
    await until(() => px.proxy.stats.s_beresp_bodybytes >= SIZE);
    await purge(px, `/o/l?n=${SIZE}`);
    const returned = pool.counts.returned;
    expect(pool.inUse).toBe(SIZE / pool.slabBytes);
    reader.destroy();
    await until(() => pool.inUse === 0);
    expect(pool.counts.returned - returned).toBe(SIZE / pool.slabBytes);
    expect(pool.freeCount).toBe(SIZE / pool.slabBytes);
  });

  it('an origin that dies mid-body: the client is cut, nothing is cached, the failed object gives its slabs back', async () => {
    const { px, o, pool } = await setup();
    const r = await getMaybeCut(`${px.url}/die/d?n=${SIZE}`);
    expect(r.complete).toBe(false);
    expect(r.body.length).toBeLessThan(SIZE);
    expect(sha(r.body)).toBe(sha(bodyOf('d', SIZE).subarray(0, r.body.length)));
    await until(() => pool.inUse === 0);
    expect(pool.counts.allocated).toBeGreaterThan(0);
    expect(px.proxy.store.objectCount).toBe(0);
    const again = await getMaybeCut(`${px.url}/die/d?n=${SIZE}`);
    expect(again.complete).toBe(false);
    expect(o.count).toBe(2);
    // The second fetch filled slabs the first one gave back.
    expect(pool.counts.reused).toBeGreaterThan(0);
  });

  it('an object that outgrows the storage mid-fetch leaves its slabs to the GC and streams on exactly', async () => {
    const { px, pool } = await setup();
    const big = 3 * SIZE;
    const body = await get(px, `/chunked/c?n=${big}`);
    expect(sha(body)).toBe(sha(bodyOf('c', big)));
    expect(px.proxy.store.objectCount).toBe(0);
    // Copied into slabs until it was unstored (response-too-large), then those were disowned, not pinned to its end.
    expect(pool.counts.disowned).toBeGreaterThanOrEqual(SIZE / pool.slabBytes);
    expect(pool.inUse).toBe(0);
  });

  it('coalesced readers of one growing object each get it exactly, from one origin fetch', async () => {
    const { px, o, pool } = await setup();
    const bodiesRead = await Promise.all([0, 1, 2].map(() => get(px, `/slow/g?n=${SIZE}`)));
    for (const b of bodiesRead) expect(sha(b)).toBe(sha(bodyOf('g', SIZE)));
    expect(o.count).toBe(1);
    expect(pool.inUse).toBe(SIZE / pool.slabBytes);
  });

  it('the storage limit still evicts by bytes; the pool keeps at most the storage size of slabs and reuses them', async () => {
    const { px, pool } = await setup();
    await evicting(px, 'b', 6);
    const store = px.proxy.store;
    expect(px.proxy.stats.n_lru_nuked).toBe(4);
    expect(store.objectCount).toBe(2);
    expect(store.bytes).toBeLessThanOrEqual(store.maxBytes);
    await until(() => pool.inUse === (2 * SIZE) / pool.slabBytes);
    expect(pool.inUse + pool.freeCount).toBeLessThanOrEqual(pool.maxSlabs);
    // Six objects of 24 slabs: the last four mostly on reused slabs.
    expect(pool.counts.reused).toBeGreaterThanOrEqual(3 * (SIZE / pool.slabBytes));
    expect(pool.counts.allocated).toBeLessThanOrEqual(pool.maxSlabs + SIZE / pool.slabBytes);
  });
});
