import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { SlabPool } from '../cache/slab-pool.js';
import type { ProxyHooks } from '../policy/hooks.js';
import { startProxy, startRawOrigin, until, useCleanup, useUncaughtRecorder, type ProxyHarness } from '../test-support/harness.js';
import { testClock } from '../test-support/clock.js';
import { bodyOf, sha } from '../test-support/bodies.js';
import { closeReasons, explain } from '../test-support/slab-diagnose.js';

/**
 * Session 9 review of the slab pool (cache/slab-pool.ts) from outside: paths other than a plain hit or miss that
 * write, read or adopt stored bytes (ESI fragments, multipart ranges, pipelined responses, HEAD, grace with a
 * background revalidation, clients that reset or half-close), each with a small storage so new misses refill slabs
 * that other objects gave back. Bodies are per-object pseudo-random streams checked by sha256.
 */
const MiB = 1024 * 1024;
const SIZE = 12 * MiB;
const track = useCleanup();
const uncaught = useUncaughtRecorder();


/**
 * /o/NAME?n=N[&ma=S][&swr=S][&d=MS]: N bytes, max-age S (60), stale-while-revalidate, ETag "NAME"; a 304 to a matching
 * If-None-Match, after MS ms. /esi/NAME?n=N&f=FRAG: an ESI page (x-esi) around an include of /o/FRAG?n=N.
 */
const generation = new Map<string, number>();
async function origin(): Promise<Awaited<ReturnType<typeof startRawOrigin>>> {
  return startRawOrigin((s, head) => {
    const esi = /^GET \/esi\/([a-z0-9]+)\?n=(\d+)&f=([a-z0-9]+)/.exec(head);
    if (esi !== null) {
      const [, name, n, frag] = esi as unknown as [string, string, string, string];
      const page = Buffer.from(`<p>${name};<esi:include src="/o/${frag}?n=${n}"/>;end</p>`);
      return void s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nx-esi: 1\r\ncontent-length: ${page.length}\r\n\r\n${page.toString()}`);
    }
    const gen = /^GET \/n\/([a-z0-9]+)\?n=(\d+)&ma=(\d+)/.exec(head);
    if (gen !== null) {
      // A new body every fetch (no validators): NAME0, NAME1, ...
      const [, name, n, ma] = gen as unknown as [string, string, string, string];
      const g = generation.get(name) ?? 0;
      generation.set(name, g + 1);
      const body = bodyOf(`${name}${g}`, Number(n));
      s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=${ma}\r\ncontent-length: ${body.length}\r\n\r\n`);
      return void s.write(body);
    }
    const m = /^(?:GET|HEAD) \/o\/([a-z0-9]+)\?n=(\d+)(?:&ma=(\d+))?(?:&swr=(\d+))?(?:&d=(\d+))?/.exec(head) as RegExpExecArray;
    const [, name, n, ma, swr, d] = m as unknown as [string, string, string, string | undefined, string | undefined, string | undefined];
    const body = bodyOf(name, Number(n));
    const fields = `cache-control: max-age=${ma ?? 60}${swr !== undefined ? `, stale-while-revalidate=${swr}` : ''}\r\netag: "${name}"\r\n`;
    if (new RegExp(`\\r\\nif-none-match: "${name}"`, 'i').test(head)) {
      return void setTimeout(() => s.write(`HTTP/1.1 304 Not Modified\r\n${fields}\r\n`), Number(d ?? 0));
    }
    const range = /\r\nrange: bytes=(\d+)-(\d+)/i.exec(head);
    if (range !== null) {
      const a = Number(range[1]);
      const b = Math.min(body.length - 1, Number(range[2]));
      s.write(`HTTP/1.1 206 Partial Content\r\n${fields}content-range: bytes ${a}-${b}/${body.length}\r\ncontent-length: ${b - a + 1}\r\n\r\n`);
      return void s.write(body.subarray(a, b + 1));
    }
    s.write(`HTTP/1.1 200 OK\r\n${fields}surrogate-key: tag-${name}\r\ncontent-length: ${body.length}\r\n\r\n`);
    if (!head.startsWith('HEAD')) s.write(body);
  });
}

/** A raw client: writes `req`, reads the first bytes, then stops reading until `resume`. */
function pausedRaw(port: number, req: string): { paused: Promise<void>; resume(): void; destroy(): void; socket: net.Socket; done: Promise<{ all: Buffer; ended: boolean }> } {
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
  const done = new Promise<{ all: Buffer; ended: boolean }>((resolve) => {
    s.on('close', () => resolve({ all: Buffer.concat(parts), ended }));
  });
  s.write(req);
  return { paused, resume: () => s.resume(), destroy: () => s.destroy(), socket: s, done };
}

const reqOf = (path: string, extra = '', close = true, method = 'GET'): string => `${method} ${path} HTTP/1.1\r\nHost: t\r\n${close ? 'Connection: close\r\n' : ''}${extra}\r\n`;

/** One HTTP/1.1 response at `at` of `all`: head, body (Content-Length or chunked), where the next one starts. */
function responseAt(all: Buffer, at: number, bodyless = false): { head: string; body: Buffer; next: number } {
  const h = all.indexOf('\r\n\r\n', at);
  const head = all.subarray(at, h).toString('latin1');
  let p = h + 4;
  if (bodyless) return { head, body: Buffer.alloc(0), next: p };
  const cl = /\r\ncontent-length: (\d+)/i.exec(head);
  if (cl !== null) return { head, body: all.subarray(p, p + Number(cl[1])), next: p + Number(cl[1]) };
  const parts: Buffer[] = [];
  for (;;) {
    const e = all.indexOf('\r\n', p);
    const n = parseInt(all.subarray(p, e).toString('latin1'), 16);
    p = e + 2;
    if (n === 0) return { head, body: Buffer.concat(parts), next: p + 2 };
    parts.push(all.subarray(p, p + n));
    p += n + 2;
  }
}

async function get(px: ProxyHarness, path: string): Promise<Buffer> {
  const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
  return Buffer.from(await r.body.arrayBuffer());
}

async function purge(px: ProxyHarness, path: string): Promise<void> {
  const r = await request(`${px.url}${path}`, { method: 'PURGE', headers: { host: 't' } });
  expect(r.statusCode).toBe(200);
  await r.body.text();
}

/** Misses of SIZE/2, each purged after the next is stored: they fill slabs given back. Asserts the pool reused some. */
async function churn(px: ProxyHarness, pool: SlabPool, tag: string, n = 4): Promise<void> {
  const reused = pool.counts.reused;
  const half = SIZE / 2;
  for (let i = 0; i < n; i++) {
    expect(sha(await get(px, `/o/${tag}${i}?n=${half}`))).toBe(sha(bodyOf(`${tag}${i}`, half)));
    if (i > 0) await purge(px, `/o/${tag}${i - 1}?n=${half}`);
  }
  expect(pool.counts.reused - reused).toBeGreaterThanOrEqual((n - 2) * (half / pool.slabBytes));
}

const esiHooks: ProxyHooks = {
  upstreamResponseFilter(beresp) {
    if (beresp.headers['x-esi'] !== undefined) beresp.doEsi = true;
    return undefined;
  },
};

async function setup(opts: Parameters<typeof startProxy>[1] = {}): Promise<{ px: ProxyHarness; o: Awaited<ReturnType<typeof origin>>; pool: SlabPool }> {
  const o = track(await origin());
  const px = track(await startProxy(o.url, { storageBytes: 2 * SIZE + 4 * MiB, purgeAllow: ['127.0.0.1'], ...opts }));
  return { px, o, pool: px.proxy.store.slabs as SlabPool };
}

// Paused clients wait for purges and churns that take several seconds each under load (5-7 suites on 2 cores): the
// send timeout (60 s) holds their queued bytes, and the test timeout is set past it rather than the default 20 s.
describe('slab pool, attacked from other delivery paths', { timeout: 90_000 }, () => {
  it('grace: a background 304 after the grace client finished adopts the stale body, and later hits are exact', async () => {
    const clock = testClock();
    const { px, o, pool } = await setup({ now: clock.now, defaultGraceSec: 60, defaultKeepSec: 600 });
    const path = `/o/g?n=${SIZE}&ma=1&d=300`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('g', SIZE)));
    clock.advance(5);
    // In grace: the stale body at once; the conditional refresh answers 304 only after this client has all its bytes.
    expect(sha(await get(px, path))).toBe(sha(bodyOf('g', SIZE)));
    await until(() => px.proxy.stats.fetch_304 === 1 || px.proxy.stats.fetch_failed > 0);
    expect(o.count).toBe(2);
    // (With slabs, the store's insert of the refresh let the stale object go, recycled before the 304 adopted it.)
    expect(px.proxy.stats.fetch_failed).toBe(0);
    expect(px.proxy.stats.fetch_304).toBe(1);
    // The refreshed object is a fresh hit with the same bytes: no third origin fetch.
    expect(sha(await get(px, path))).toBe(sha(bodyOf('g', SIZE)));
    expect(o.count).toBe(2);
    // The churn refills slabs; the revalidated object's bytes stay its own.
    await churn(px, pool, 'gx');
    expect(sha(await get(px, path))).toBe(sha(bodyOf('g', SIZE)));
    expect(uncaught).toEqual([]);
  });

  it('grace: a paused client of the stale object stays exact while a background 200 replaces it and the pool refills', async () => {
    const clock = testClock();
    const { px, pool } = await setup({ now: clock.now, defaultGraceSec: 60 });
    const path = `/n/s?n=${SIZE}&ma=1`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('s0', SIZE)));
    clock.advance(5);
    const stale = pausedRaw(px.port, reqOf(path));
    await stale.paused;
    const why = closeReasons(px);
    // The background fetch stores generation 1, which removes the stale object the paused client still reads.
    await until(() => px.proxy.stats.s_fetch === 2 && px.proxy.stats.s_beresp_bodybytes >= 2 * SIZE);
    await until(() => px.proxy.store.bytes < 2 * SIZE);
    expect(sha(await get(px, path))).toBe(sha(bodyOf('s1', SIZE)));
    await purge(px, path);
    await churn(px, pool, 'sx');
    stale.resume();
    const got = await stale.done;
    const r = responseAt(got.all, 0);
    const hint = explain(r.body, bodyOf('s0', SIZE), { head: r.head, ended: got.ended, closeReasons: why }, pool, px);
    expect(r.head).toMatch(/detail=grace/);
    expect(sha(r.body), hint).toBe(sha(bodyOf('s0', SIZE)));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it.each([false, true])('ESI: a paused client of a page whose large fragment (hit %s) is purged and refilled gets the exact page', async (fragmentHit) => {
    const { px, o, pool } = await setup({ hooks: esiHooks });
    const frag = `/o/fr?n=${SIZE}`;
    if (fragmentHit) expect(sha(await get(px, frag))).toBe(sha(bodyOf('fr', SIZE)));
    const reader = pausedRaw(px.port, reqOf(`/esi/e?n=${SIZE}&f=fr`));
    await reader.paused;
    await until(() => o.count === 2 && pool.inUse >= SIZE / pool.slabBytes);
    if (!fragmentHit) await until(() => px.proxy.stats.s_beresp_bodybytes >= SIZE);
    await purge(px, frag);
    await churn(px, pool, 'ex');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(r.head).toMatch(/^HTTP\/1.1 200/);
    expect(sha(r.body)).toBe(sha(Buffer.concat([Buffer.from('<p>e;'), bodyOf('fr', SIZE), Buffer.from(';end</p>')])));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it('multipart byteranges to a paused client: the exact parts across a purge and refill', async () => {
    const { px, pool } = await setup();
    const path = `/o/mr?n=${SIZE}`;
    const body = bodyOf('mr', SIZE);
    expect(sha(await get(px, path))).toBe(sha(body));
    const reader = pausedRaw(px.port, reqOf(path, `Range: bytes=0-99,4096-${SIZE - 3000},${SIZE - 100}-\r\n`));
    await reader.paused;
    await purge(px, path);
    await churn(px, pool, 'mx');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(r.head).toMatch(/^HTTP\/1.1 206/);
    expect(r.head).toMatch(/multipart\/byteranges/);
    const parts = [body.subarray(0, 100), body.subarray(4096, SIZE - 3000 + 1), body.subarray(SIZE - 100)];
    let at = 0;
    for (const p of parts) {
      const i = r.body.indexOf(p, at);
      expect(i).toBeGreaterThan(at);
      at = i + p.length;
    }
    // Nothing but the three parts and their multipart heads.
    expect(r.body.length - parts.reduce((n, p) => n + p.length, 0)).toBeLessThan(1000);
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it.each([true, false])('pipelined: response 1 (a large hit, queued) and 2 (another object) stay exact when both are purged and the pool refilled while 1 waits (direct writes %s)', async (directWrites) => {
    const { px, pool } = await setup({ directWrites });
    const p1 = `/o/pa?n=${SIZE}`;
    const p2 = `/o/pb?n=${SIZE / 2}`;
    expect(sha(await get(px, p1))).toBe(sha(bodyOf('pa', SIZE)));
    expect(sha(await get(px, p2))).toBe(sha(bodyOf('pb', SIZE / 2)));
    const reader = pausedRaw(px.port, reqOf(p1, '', false) + reqOf(p2));
    await reader.paused;
    // Give the connection every chance to take request 2 (it may wait for response 1 to leave: then nothing to see).
    await new Promise((r) => setTimeout(r, 100));
    await purge(px, p1);
    await purge(px, p2);
    await churn(px, pool, 'px');
    reader.resume();
    const all = (await reader.done).all;
    const r1 = responseAt(all, 0);
    const r2 = responseAt(all, r1.next);
    expect(sha(r1.body)).toBe(sha(bodyOf('pa', SIZE)));
    expect(sha(r2.body)).toBe(sha(bodyOf('pb', SIZE / 2)));
    // The connection takes request 2 once response 1 has left (a miss then, stored again): purged, only the churn's
    // last object keeps slabs.
    await purge(px, p2);
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it.each([true, false])('a paused hit client that resets (direct writes %s) gives its purged object\'s slabs back', async (directWrites) => {
    const { px, pool } = await setup({ directWrites });
    const path = `/o/rs?n=${SIZE}`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('rs', SIZE)));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    await purge(px, path);
    expect(pool.inUse).toBe(SIZE / pool.slabBytes);
    reader.socket.resetAndDestroy();
    await until(() => pool.inUse === 0);
    expect(pool.freeCount).toBe(SIZE / pool.slabBytes);
    expect(pool.inUse + pool.freeCount).toBeLessThanOrEqual(pool.maxSlabs);
    expect(uncaught).toEqual([]);
  });

  it('a paused client that half-closes gets an exact body (or an exact prefix, cut), and the slabs come back', async () => {
    const { px, pool } = await setup();
    const path = `/o/hc?n=${SIZE}`;
    const body = bodyOf('hc', SIZE);
    expect(sha(await get(px, path))).toBe(sha(body));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    reader.socket.end();
    await purge(px, path);
    await churn(px, pool, 'hx');
    reader.resume();
    const all = (await reader.done).all;
    const got = all.subarray(all.indexOf('\r\n\r\n') + 4);
    expect(got.equals(body.subarray(0, got.length))).toBe(true);
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it('HEAD of a large object holds nothing: purged, its slabs come back at once', async () => {
    const { px, pool } = await setup();
    const path = `/o/hd?n=${SIZE}`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('hd', SIZE)));
    const r = pausedRaw(px.port, reqOf(path, '', true, 'HEAD'));
    const res = responseAt((await r.done).all, 0, true);
    expect(res.head).toMatch(new RegExp(`content-length: ${SIZE}`, 'i'));
    await purge(px, path);
    await until(() => pool.inUse === 0);
    expect(pool.freeCount).toBe(SIZE / pool.slabBytes);
  });

  it('a ban applied at lookup refetches the same key into slabs while a paused client reads the banned object; then purged and refilled', async () => {
    const { px, o, pool } = await setup();
    const path = `/o/bn?n=${SIZE}`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('bn', SIZE)));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    px.proxy.store.addBan('req.url ~ ^/o/bn', Date.now());
    // The ban removes the object at this lookup: a miss, stored again in other slabs.
    expect(sha(await get(px, path))).toBe(sha(bodyOf('bn', SIZE)));
    expect(o.count).toBe(2);
    await purge(px, path);
    await churn(px, pool, 'bx');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(sha(r.body)).toBe(sha(bodyOf('bn', SIZE)));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it('a tag invalidation (Surrogate-Key) removing an object under a paused client: exact body, slabs back after', async () => {
    const { px, pool } = await setup();
    const path = `/o/tg?n=${SIZE}`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('tg', SIZE)));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    expect(px.proxy.store.purgeTags(['tag-tg'])).toBe(1);
    await churn(px, pool, 'tx');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(sha(r.body)).toBe(sha(bodyOf('tg', SIZE)));
    await until(() => pool.inUse === SIZE / 2 / pool.slabBytes);
  });

  it.each([false, true])('slicer: a paused client of a sliced object (cold %s) stays exact while its segments are purged and other objects refill the slabs', async (cold) => {
    const o = track(await origin());
    const px = track(await startProxy(o.url, { storageBytes: 2 * SIZE + 4 * MiB, purgeAllow: ['127.0.0.1'], slice: { sizeBytes: 2 * MiB, minBytes: 0 } }));
    const pool = px.proxy.store.slabs as SlabPool;
    const path = `/o/sl?n=${SIZE}`;
    if (!cold) expect(sha(await get(px, path))).toBe(sha(bodyOf('sl', SIZE)));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    // Cold: the segments read ahead are arriving or stored while the client is paused.
    if (cold) await until(() => pool.inUse >= 2 * (2 * MiB) / pool.slabBytes);
    await purge(px, path);
    await churn(px, pool, 'lx');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(r.head).toMatch(/^HTTP\/1.1 200/);
    expect(sha(r.body)).toBe(sha(bodyOf('sl', SIZE)));
  });

  it('a range probe segment (slice minBytes, a cold Range) read by a paused client stays exact across purge and refill', async () => {
    const o = track(await origin());
    const px = track(await startProxy(o.url, { storageBytes: 2 * SIZE + 4 * MiB, purgeAllow: ['127.0.0.1'], slice: { sizeBytes: 2 * MiB, minBytes: MiB } }));
    const pool = px.proxy.store.slabs as SlabPool;
    const path = `/o/pr?n=${SIZE}`;
    const from = 5 * MiB + 123;
    const reader = pausedRaw(px.port, reqOf(path, `Range: bytes=${from}-\r\n`));
    await reader.paused;
    await purge(px, path);
    await churn(px, pool, 'rx');
    reader.resume();
    const r = responseAt((await reader.done).all, 0);
    expect(r.head).toMatch(/^HTTP\/1.1 206/);
    expect(sha(r.body)).toBe(sha(bodyOf('pr', SIZE).subarray(from)));
  });

  it('a revalidation whose client left before the 304 still adopts the stale body (the fetch holds it)', async () => {
    const clock = testClock();
    const { px, o, pool } = await setup({ now: clock.now, defaultKeepSec: 600 });
    const path = `/o/fl?n=${SIZE}&ma=1&d=300`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('fl', SIZE)));
    clock.advance(5);
    // A conditional miss: the client goes before the origin's 304 (its response's hold on the stale object ends).
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(reqOf(path));
    await until(() => o.count === 2);
    s.destroy();
    await until(() => px.proxy.stats.fetch_304 === 1 || px.proxy.stats.fetch_failed > 0);
    // (The 304 is counted before its body is adopted: the next lookup waits on the busy object if it is not done.)
    expect(px.proxy.stats.fetch_failed).toBe(0);
    expect(sha(await get(px, path))).toBe(sha(bodyOf('fl', SIZE)));
    expect(o.count).toBe(2);
    await churn(px, pool, 'fx');
    expect(sha(await get(px, path))).toBe(sha(bodyOf('fl', SIZE)));
    expect(uncaught).toEqual([]);
  });

  it('shutdown with a paused client mid-body: no throw, the client is cut or complete but exact', async () => {
    const { px } = await setup();
    const path = `/o/sd?n=${SIZE}`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('sd', SIZE)));
    const reader = pausedRaw(px.port, reqOf(path));
    await reader.paused;
    const closing = px.close();
    reader.resume();
    const all = (await reader.done).all;
    await closing;
    const got = all.subarray(all.indexOf('\r\n\r\n') + 4);
    expect(got.equals(bodyOf('sd', SIZE).subarray(0, got.length))).toBe(true);
    expect(uncaught).toEqual([]);
  });

  it('a 304-refreshed object is charged its (shared) body: the store and the pool stay within the storage bound', async () => {
    const clock = testClock();
    const { px, o, pool } = await setup({ now: clock.now, defaultKeepSec: 600 });
    const path = `/o/ch?n=${SIZE}&ma=1`;
    expect(sha(await get(px, path))).toBe(sha(bodyOf('ch', SIZE)));
    clock.advance(5);
    expect(sha(await get(px, path))).toBe(sha(bodyOf('ch', SIZE)));
    expect(px.proxy.stats.fetch_304).toBe(1);
    expect(o.count).toBe(2);
    // The refreshed object keeps the stale one's slabs: they count against the storage like any stored body.
    expect(px.proxy.store.bytes).toBeGreaterThanOrEqual(SIZE);
    for (const n of ['c1', 'c2', 'c3']) expect(sha(await get(px, `/o/${n}?n=${SIZE}`))).toBe(sha(bodyOf(n, SIZE)));
    expect(px.proxy.store.bytes).toBeLessThanOrEqual(px.proxy.store.maxBytes);
    await until(() => pool.inUse <= pool.maxSlabs);
    expect(pool.inUse + pool.freeCount).toBeLessThanOrEqual(pool.maxSlabs);
  });
});
