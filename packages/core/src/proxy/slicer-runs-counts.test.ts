import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import type { Stats } from '../stats.js';

/**
 * Issue 13, session-7 review of run fetches (`--slice-runs`, slicer/run.ts):
 * - a segment cut from a run's one 206 is stored (or not) as that segment fetched alone would be: the run's caching
 *   headers go through the same rules (a 206 the builtin rules refuse is not stored from a run either);
 * - stats: every segment subrequest counts once, as its own hit or miss, with runs as without; backend fetches are
 *   the origin requests made.
 * A 10,000-byte object in 1 KiB segments (10, the last 784 bytes); the origin records every request's Range.
 */
const track = useCleanup();
const SEG = 1024;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 13 + (i >> 9)) & 0xff));

async function origin(rangeHeaders: Record<string, string> = {}) {
  const seen: string[] = [];
  const o = track(
    await startScriptedOrigin((req: http.IncomingMessage, res: http.ServerResponse) => {
      const range = req.headers.range;
      seen.push(range ?? 'none');
      const base = { 'cache-control': 'max-age=60', etag: '"v1"' };
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m === null) {
        res.writeHead(200, { ...base, 'content-length': BODY.length });
        return void res.end(BODY);
      }
      const start = Number(m[1]);
      const end = Math.min(BODY.length - 1, Number(m[2]));
      res.writeHead(206, { ...base, ...rangeHeaders, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}` });
      res.end(BODY.subarray(start, end + 1));
    }),
  );
  return { url: o.url, seen };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const b = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: b };
}

const COUNTED = ['cache_hit', 'cache_miss', 'cache_hitmiss', 'slice_req', 'slice_segments', 's_fetch', 'fetch_failed'] as const;
type Counted = Record<(typeof COUNTED)[number], number>;

function counts(s: Stats): Counted {
  return Object.fromEntries(COUNTED.map((k) => [k, s[k]])) as Counted;
}

function diff(after: Counted, before: Counted): Counted {
  return Object.fromEntries(COUNTED.map((k) => [k, after[k] - before[k]])) as Counted;
}

/** Segment Ranges of one segment each (a single-segment fetch), from the origin's log. */
const singles = (seen: string[]): string[] => seen.filter((r) => /^bytes=(\d+)-(\d+)$/.test(r) && Number(r.split('-')[1]) - Number(r.slice(6).split('-')[0]) < SEG);

describe('slicer runs: each segment stored and counted as if fetched alone', () => {
  for (const [name, h, profile] of [
    ['no-store', { 'cache-control': 'no-store' }, 'rfc'],
    ['private', { 'cache-control': 'private, max-age=60' }, 'rfc'],
    // builtin.vcl: the varnish profile refuses Set-Cookie responses.
    ['Set-Cookie (varnish profile)', { 'set-cookie': 'a=b' }, 'varnish'],
  ] as const) {
    it(`206s with ${name} (the 200 cacheable): run segments are not stored, as single-segment fetches are not`, async () => {
      const stored: Record<string, { objects: number; secondSeen: string[] }> = {};
      for (const runs of [false, true]) {
        const o = await origin(h);
        const px = track(await startProxy(o.url, { profile, slice: { sizeBytes: SEG, minBytes: 0, runs, keepBody: false } }));
        expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
        const first = o.seen.length;
        const again = await get(`${px.url}/file`);
        expect(again.body.equals(BODY)).toBe(true);
        stored[String(runs)] = { objects: px.proxy.store.objectCount, secondSeen: o.seen.slice(first) };
        if (runs) {
          // The first run's answer was refused (not stored) and its segments fetched alone; no run after it.
          expect(o.seen.slice(0, 3)).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119']);
          expect(o.seen.slice(3).filter((r) => !singles([r]).length)).toEqual([]);
          expect(px.proxy.stats.fetch_failed).toBe(0);
        }
      }
      // Without runs: nothing of a segment kept, the second read fetches every segment again, alone.
      expect(stored['false']?.secondSeen).toHaveLength(10);
      // With runs: the same objects in the store, the same origin requests on the second read.
      expect(stored['true']?.objects).toBe(stored['false']?.objects);
      expect([...(stored['true']?.secondSeen ?? [])].sort()).toEqual([...(stored['false']?.secondSeen ?? [])].sort());
    });
  }

  it('206s whose own caching headers are storable (a shorter max-age, tags): run segments stored, with the meta lifetime and the 206 tags', async () => {
    const o = await origin({ 'cache-control': 'max-age=1', 'surrogate-key': 'seg-tag' });
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: true, keepBody: false } }));
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
    await until(() => px.proxy.store.objectCount === 11);
    // After the 206s' own max-age=1 but within the meta's 60 s: every segment still a hit (one lifetime).
    await new Promise((r) => setTimeout(r, 1100));
    expect((await get(`${px.url}/file`)).headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen).toHaveLength(5);
  });

  for (const runs of [false, true]) {
    it(`stats of a cold and a warm whole read ${runs ? 'with' : 'without'} runs: each segment once, as its own hit or miss`, async () => {
      const o = await origin();
      const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs, keepBody: false } }));
      const s = px.proxy.stats;
      const c0 = counts(s);
      expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
      await until(() => px.proxy.store.objectCount === 11);
      const cold = diff(counts(s), c0);
      // One client request (the meta object's lookup) and ten segment subrequests: eleven lookups, each counted once.
      expect(cold.slice_req).toBe(1);
      expect(cold.slice_segments).toBe(10);
      expect(cold.cache_hit + cold.cache_miss + cold.cache_hitmiss).toBe(11);
      // Backend fetches: exactly the origin requests made (the whole GET, then segments alone or runs).
      expect(cold.s_fetch).toBe(o.seen.length);
      expect(cold.fetch_failed).toBe(0);
      if (runs) {
        // The meta and segment 0 missed; the run segments found their run's object (coalesced, as on a waiting list).
        expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
        expect(cold.cache_miss).toBe(2);
        expect(cold.cache_hit).toBe(9);
      } else {
        expect(o.seen).toHaveLength(11);
        expect(cold.cache_miss).toBe(11);
        expect(cold.cache_hit).toBe(0);
      }
      const c1 = counts(s);
      expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
      const warm = diff(counts(s), c1);
      expect(warm).toEqual({ cache_hit: 11, cache_miss: 0, cache_hitmiss: 0, slice_req: 1, slice_segments: 10, s_fetch: 0, fetch_failed: 0 });
      // A range inside segment 5, warm: the meta and that one segment.
      const c2 = counts(s);
      expect((await get(`${px.url}/file`, { range: 'bytes=5200-5299' })).body.equals(BODY.subarray(5200, 5300))).toBe(true);
      expect(diff(counts(s), c2)).toEqual({ cache_hit: 2, cache_miss: 0, cache_hitmiss: 0, slice_req: 1, slice_segments: 1, s_fetch: 0, fetch_failed: 0 });
    });
  }

  it('stats of a cold range with runs (probe, then a run for the rest of the range): each segment once', async () => {
    const o = await origin();
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: true, keepBody: false } }));
    const s = px.proxy.stats;
    const c0 = counts(s);
    expect((await get(`${px.url}/file`, { range: 'bytes=100-3100' })).body.equals(BODY.subarray(100, 3101))).toBe(true);
    await until(() => px.proxy.store.objectCount === 5);
    const cold = diff(counts(s), c0);
    expect(o.seen).toEqual(['bytes=0-1023', 'bytes=1024-4095']);
    expect(cold.s_fetch).toBe(2);
    expect(cold.slice_segments).toBe(4);
    // The client request (its probe made the meta and segment 0) and four segment subrequests.
    expect(cold.cache_hit + cold.cache_miss).toBe(5);
  });

  it('a cold range at a segment start is answered from the probe 206 as it arrives: the client has its bytes while the origin still holds the rest of the segment', async () => {
    // The segment (1 KiB) is sent as its first 200 bytes, then nothing until the test releases the rest.
    let release: (() => void) | undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const seen: string[] = [];
    const o = track(
      await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
        const range = req.headers.range ?? 'none';
        seen.push(range);
        const m = /^bytes=(\d+)-(\d+)$/.exec(range);
        const start = Number(m?.[1] ?? 0);
        const end = Math.min(BODY.length - 1, Number(m?.[2] ?? BODY.length - 1));
        res.writeHead(206, { 'cache-control': 'max-age=60', etag: '"v1"', 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}` });
        res.write(BODY.subarray(start, start + 200));
        await held;
        res.end(BODY.subarray(start + 200, end + 1));
      }),
    );
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: false } }));
    const r = await get(`${px.url}/file`, { range: `bytes=${5 * SEG}-${5 * SEG + 99}` });
    // Complete before the origin sent more than the first 200 bytes of the segment.
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5 * SEG, 5 * SEG + 100))).toBe(true);
    expect(seen).toEqual([`bytes=${5 * SEG}-${6 * SEG - 1}`]);
    expect(px.proxy.store.objectCount).toBe(2);
    release?.();
    // The segment completes and is kept: the same range again is a hit, no origin request.
    await until(() => px.proxy.stats.s_beresp_bodybytes >= SEG);
    const again = await get(`${px.url}/file`, { range: `bytes=${5 * SEG + 500}-${5 * SEG + 599}` });
    expect(again.body.equals(BODY.subarray(5 * SEG + 500, 5 * SEG + 600))).toBe(true);
    expect(again.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(seen).toHaveLength(1);
  });
});
