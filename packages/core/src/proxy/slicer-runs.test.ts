import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { getMaybeCut, startProxy, until, useCleanup } from '../test-support/harness.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyOptions } from './proxy.js';

/**
 * Issue 13, run fetches (`slice.runs`, slicer/run.ts): the read-ahead fetches consecutive missing segments of a sliced
 * object with one origin Range request, cut into the segment objects. A 10,000-byte object in 1 KiB segments (10,
 * the last 784 bytes). The origin records every request's Range and honours any single `bytes=a-b`.
 */
const track = useCleanup();
const SEG = 1024;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
const OTHER = Buffer.from(BODY).reverse();

interface OriginOpts {
  /** The ETag (and body: OTHER for anything but "v1") of the n-th request (0-based). */
  etag?: (n: number) => string;
  /** Delay before each Range answer, ms. */
  delayMs?: number;
  /** Range answers spanning more than one segment wait for this first. */
  runGate?: Promise<void>;
  /** For this Range: send the head and this many body bytes, then reset the connection (once). */
  dieIn?: { range: string; after: number };
  /** Range answers spanning more than one segment: chunked (no Content-Length), with this many bytes past the range. */
  overlong?: number;
  /** Range answers spanning more than one segment: a 200 with the whole body (an origin that caps Range lengths). */
  multiAs200?: boolean;
}

async function origin(opts: OriginOpts = {}) {
  const seen: string[] = [];
  const stats = { rangeBytes: 0 };
  let died = false;
  const o = track(
    await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const n = seen.length;
      const range = req.headers.range;
      seen.push(range ?? 'none');
      const etag = opts.etag?.(n) ?? '"v1"';
      const body = etag === '"v1"' ? BODY : OTHER;
      const base = { 'cache-control': 'max-age=60', etag };
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m === null) {
        res.writeHead(200, { ...base, 'content-length': body.length });
        return void res.end(body);
      }
      if (opts.delayMs !== undefined) await new Promise((r) => setTimeout(r, opts.delayMs));
      const start = Number(m[1]);
      const end = Math.min(body.length - 1, Number(m[2]));
      if (opts.runGate !== undefined && end - start + 1 > SEG) await opts.runGate;
      if (opts.multiAs200 === true && end - start + 1 > SEG) {
        res.writeHead(200, { ...base, 'content-length': body.length });
        return void res.end(body);
      }
      if (opts.overlong !== undefined && end - start + 1 > SEG) {
        res.writeHead(206, { ...base, 'content-range': `bytes ${start}-${end}/${body.length}` });
        stats.rangeBytes += end - start + 1;
        return void res.end(Buffer.concat([body.subarray(start, end + 1), Buffer.alloc(opts.overlong, 0xee)]));
      }
      res.writeHead(206, { ...base, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${body.length}` });
      if (opts.dieIn !== undefined && opts.dieIn.range === range && !died) {
        died = true;
        res.write(body.subarray(start, start + opts.dieIn.after));
        stats.rangeBytes += opts.dieIn.after;
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      stats.rangeBytes += end - start + 1;
      res.end(body.subarray(start, end + 1));
    }),
  );
  return { url: o.url, seen, stats };
}

async function proxy(originUrl: string, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'>) {
  return track(await startProxy(originUrl, opts));
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const b = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: b };
}

// keepBody: false: these assert the runs that follow segment 0 fetched alone (the first run, lead.ts, has its own file).
const SLICE = { sizeBytes: SEG, minBytes: 0, runs: true, keepBody: false };

describe('slicer runs: one origin Range request for consecutive missing segments', () => {
  it('a cold whole read: segment 0 alone, then runs of read-ahead - 1 segments; each segment its own object; warm: no origin request', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: SLICE });
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    // Read-ahead 4 (default): segments 1-4 as one run while 0 is sent, 5-7 when only one is left ahead, then 8-9
    // (the end of the response).
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
    // The origin sent each byte once, no more.
    expect(o.stats.rangeBytes).toBe(BODY.length);
    // The meta object and ten segments; every segment a subrequest.
    await until(() => px.proxy.store.objectCount === 11);
    expect(px.proxy.stats.slice_segments).toBe(10);
    const warm = await get(`${px.url}/file`);
    expect(warm.body.equals(BODY)).toBe(true);
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit/);
    // A range inside a run-fetched segment, and one across two runs: from the cache.
    const one = await get(`${px.url}/file`, { range: 'bytes=6000-6099' });
    expect(one.status).toBe(206);
    expect(one.body.equals(BODY.subarray(6000, 6100))).toBe(true);
    const across = await get(`${px.url}/file`, { range: 'bytes=4000-8500' });
    expect(across.body.equals(BODY.subarray(4000, 8501))).toBe(true);
    expect(o.seen).toHaveLength(5);
  });

  it('runs never span more than the read-ahead: read-ahead 2 fetches pairs', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { ...SLICE, readAhead: 2 } });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    // The last segment, alone at the end, is fetched alone (its own segment Range).
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-3071', 'bytes=3072-5119', 'bytes=5120-7167', 'bytes=7168-9215', 'bytes=9216-10239']);
    expect(o.stats.rangeBytes).toBe(BODY.length);
  });

  it('read-ahead 0 or 1: no runs, one Range request per segment as without runs', async () => {
    for (const readAhead of [0, 1]) {
      const o = await origin();
      const px = await proxy(o.url, { slice: { ...SLICE, readAhead } });
      expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
      expect(o.seen).toHaveLength(11);
      // Each segment's own Range, each once (with read-ahead 1 two are in flight at once: order left open).
      expect([...o.seen.slice(1)].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `bytes=${i * SEG}-${i * SEG + SEG - 1}`).sort());
      expect(o.stats.rangeBytes).toBe(BODY.length);
    }
  });

  it('a run starts at the first missing segment: cached ones before it are not fetched again', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: SLICE });
    // Segments 0-2 cached by a range (the probe, then a run of 1-2).
    expect((await get(`${px.url}/file`, { range: 'bytes=0-3000' })).body.equals(BODY.subarray(0, 3001))).toBe(true);
    expect(o.seen).toEqual(['bytes=0-1023', 'bytes=1024-3071']);
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    expect(o.seen.slice(2)).toEqual(['bytes=3072-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
    expect(o.stats.rangeBytes).toBe(BODY.length);
  });

  it('a client leaving after its first bytes: the origin is asked for no more than 1 + read-ahead segments', async () => {
    // The run is held until the client has gone (and the proxy had 200 ms to see it), so a loaded machine cannot
    // let the run's segments reach the reader first and move its read-ahead on.
    let openGate = (): void => {};
    const runGate = new Promise<void>((res) => (openGate = res));
    const o = await origin({ delayMs: 40, runGate });
    const px = await proxy(o.url, { slice: { ...SLICE, readAhead: 4 } });
    const r = await request(`${px.url}/file`);
    for await (const chunk of r.body) {
      expect((chunk as Buffer).length).toBeGreaterThan(0);
      break;
    }
    setTimeout(openGate, 200);
    // The run already asked for is left to end (it fills the cache), nothing after it is asked for.
    await until(() => o.stats.rangeBytes === 5 * SEG);
    await new Promise((res) => setTimeout(res, 150));
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119']);
    expect(o.stats.rangeBytes).toBe(5 * SEG);
  });

  it('the log: each segment a subrequest of its own, and one backend fetch per run', async () => {
    const o = await origin();
    const sink = new MemorySink();
    const px = await proxy(o.url, { slice: SLICE, txlog: new TxLog([sink]) });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    await until(() => sink.groups.length === 1);
    const req = sink.groups[0] as Transaction;
    const subs = req.children.filter((c) => c.type === 'Request');
    expect(subs).toHaveLength(10);
    const rangeOf = (t: Transaction): string | undefined => t.records.find((r) => r.tag === 'BereqHeader' && r.value.startsWith('range:'))?.value;
    const fetches = req.children.filter((c) => c.type !== 'Request').map(rangeOf);
    // The fetch that decided (no Range), then the runs.
    expect(fetches).toEqual([undefined, 'range: bytes=1024-5119', 'range: bytes=5120-8191', 'range: bytes=8192-9999']);
    // Segment 0 has its own backend fetch; a run's segments find the run's object (no fetch of their own).
    expect(subs[0]?.children).toHaveLength(1);
    expect(subs.slice(1).every((s) => s.children.length === 0 && s.records.some((r) => r.tag === 'Hit'))).toBe(true);
  });

  it('a changed validator in the run: the run is dropped, never spliced; its segments fetched alone find the change and the client is cut off', async () => {
    // The whole GET and segment 0 are v1; from the run on the origin has v2 (other bytes).
    const o = await origin({ etag: (n) => (n < 2 ? '"v1"' : '"v2"') });
    const px = await proxy(o.url, { slice: SLICE });
    const r = await getMaybeCut(`${px.url}/file`);
    expect(r.complete).toBe(false);
    // Whatever arrived is the v1 object's start, never a byte of v2 after it.
    expect(r.body.equals(BODY.subarray(0, r.body.length))).toBe(true);
    expect(r.body.length).toBeLessThanOrEqual(SEG);
    expect(o.seen.slice(0, 3)).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119']);
    // The run's segments were left to their own subrequests: at least segment 1 alone.
    expect(o.seen.slice(3)).toContain('bytes=1024-2047');
    // The mismatch dropped the meta object: a new request gets v2 whole and consistent.
    await until(() => px.proxy.store.objectCount <= 4);
    const again = await get(`${px.url}/file`);
    expect(again.body.equals(OTHER)).toBe(true);
  });

  it('the origin dying mid-run: the client is cut off, no truncated segment is kept, the complete ones are', async () => {
    // Run 1-4 breaks after 1.5 segments: segment 1 complete, segment 2 half.
    const o = await origin({ dieIn: { range: 'bytes=1024-5119', after: SEG + 512 } });
    const px = await proxy(o.url, { slice: SLICE });
    const r = await getMaybeCut(`${px.url}/file`);
    expect(r.complete).toBe(false);
    expect(r.body.equals(BODY.subarray(0, r.body.length))).toBe(true);
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119']);
    // Next read: segments 0 and 1 from the cache, the rest fetched (from segment 2, in runs), the same bytes.
    const again = await get(`${px.url}/file`);
    expect(again.body.equals(BODY)).toBe(true);
    expect(o.seen.slice(3)).toEqual(['bytes=2048-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
  });

  it('a run answered with bytes past its Content-Range: each segment keeps exactly its bytes, the rest is not kept', async () => {
    const o = await origin({ overlong: 3000 });
    const px = await proxy(o.url, { slice: SLICE });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
    // From the cache: every segment's bytes as the object's, the last one ending at the object's end.
    const warm = await get(`${px.url}/file`);
    expect(warm.body.equals(BODY)).toBe(true);
    const tail = await get(`${px.url}/file`, { range: 'bytes=9000-' });
    expect(tail.body.equals(BODY.subarray(9000))).toBe(true);
    expect(o.seen).toHaveLength(5);
  });

  it('runs are the default with --slice-min (no runs option): a cold whole read goes as runs, each segment still counted once', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: false } });
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    // The same origin requests as with runs: true (the first test): 5 instead of 11.
    expect(o.seen).toEqual(['none', 'bytes=0-1023', 'bytes=1024-5119', 'bytes=5120-8191', 'bytes=8192-9999']);
    expect(o.stats.rangeBytes).toBe(BODY.length);
    await until(() => px.proxy.store.objectCount === 11);
    expect(px.proxy.stats.slice_segments).toBe(10);
    // The backend fetches are the origin requests: one per run, not one per segment.
    expect(px.proxy.stats.s_fetch).toBe(5);
    expect((await get(`${px.url}/file`)).headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen).toHaveLength(5);
  });

  it('runs: false turns the default off: one Range request per segment', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false } });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen).toHaveLength(11);
    expect([...o.seen.slice(1)].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `bytes=${i * SEG}-${i * SEG + SEG - 1}`).sort());
    expect(o.stats.rangeBytes).toBe(BODY.length);
  });

  it('the nginx model (sliced as the request arrives, no meta object from a response): never runs, by default or asked', async () => {
    for (const runs of [undefined, true]) {
      const o = await origin();
      const px = await proxy(o.url, { slice: { sizeBytes: SEG, runs } });
      expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
      // Segment 0 first (it makes the meta object), then each segment with its own Range.
      expect(o.seen).toHaveLength(10);
      expect(o.seen[0]).toBe('bytes=0-1023');
      expect(o.stats.rangeBytes).toBe(BODY.length);
    }
  });

  it('an origin that answers a run with a 200 (it will not serve a Range over several segments): one run tried per object, then each segment alone', async () => {
    const o = await origin({ multiAs200: true });
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: false } });
    const r = await getMaybeCut(`${px.url}/file`);
    // The client is never sent wrong bytes; the read is whole or cut.
    if (r.complete) expect(r.body.equals(BODY)).toBe(true);
    else expect(BODY.subarray(0, r.body.length).equals(r.body)).toBe(true);
    const runs = (): string[] => o.seen.filter((x) => x !== 'none' && Number(x.split('-')[1]) - Number(x.slice(6).split('-')[0]) + 1 > SEG);
    expect(runs()).toEqual(['bytes=1024-5119']);
    // A second read (whatever the first left): no run either, every segment exact.
    const again = await getMaybeCut(`${px.url}/file`);
    expect(again.complete).toBe(true);
    expect(again.body.equals(BODY)).toBe(true);
    expect(runs()).toHaveLength(1);
    // Each segment from the origin at most once after the run: 'none', segment 0, the run, then segments 1-9 alone.
    expect(o.seen.filter((x) => x !== 'none' && !runs().includes(x)).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `bytes=${i * SEG}-${i * SEG + SEG - 1}`).sort());
  });

  it('with an upstream hook (it shapes each segment request): no runs', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: SLICE, hooks: { upstreamRequestFilter: () => undefined } });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen).toHaveLength(11);
    expect(o.stats.rangeBytes).toBe(BODY.length);
  });
});
