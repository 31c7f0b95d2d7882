import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyOptions } from './proxy.js';

/**
 * Issue 13: the slicer decided with the origin's answer in hand (Varnish Enterprise's model). The `slicer` handle in
 * either upstream hook, and `--slice SIZE --slice-min BYTES` without a policy. The origin records every request
 * (method, Range) and the body bytes it wrote for Range requests.
 */
const track = useCleanup();
const SEG = 4096;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 13 + (i >> 9)) & 0xff));

interface Seen {
  method: string;
  range: string;
}

/** An origin serving BODY (or its `len` first bytes) with `headers`, honouring single Range requests. */
interface OriginOpts {
  headers?: (path: string) => Record<string, string>;
  /** Headers left out of every response (e.g. etag). */
  omit?: string[];
  /** Cache-Control of 206 answers (default: the 200's). */
  segmentCc?: string;
  len?: number;
  delayMs?: number;
  chunked?: boolean;
}

async function origin(opts: OriginOpts = {}) {
  const seen: Seen[] = [];
  const stats = { rangeBytes: 0, wholeBytes: 0, inflight: 0, maxInflight: 0 };
  const o = track(
    await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const body = BODY.subarray(0, opts.len ?? BODY.length);
      const range = req.headers.range;
      seen.push({ method: req.method ?? '', range: range ?? 'none' });
      const base: Record<string, string> = { 'cache-control': 'max-age=60', etag: '"v1"', ...opts.headers?.(req.url ?? '') };
      for (const h of opts.omit ?? []) delete base[h];
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m === null) {
        res.writeHead(200, opts.chunked === true ? base : { ...base, 'content-length': body.length });
        if (req.method !== 'HEAD') stats.wholeBytes += body.length;
        return void res.end(req.method === 'HEAD' ? undefined : body);
      }
      stats.inflight++;
      stats.maxInflight = Math.max(stats.maxInflight, stats.inflight);
      if (opts.delayMs !== undefined) await new Promise((r) => setTimeout(r, opts.delayMs));
      const start = Number(m[1]);
      const end = Math.min(body.length - 1, Number(m[2]));
      if (opts.segmentCc !== undefined) base['cache-control'] = opts.segmentCc;
      res.writeHead(206, { ...base, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${body.length}` });
      stats.rangeBytes += end - start + 1;
      stats.inflight--;
      res.end(body.subarray(start, end + 1));
    }),
  );
  return { url: o.url, seen, stats };
}

async function proxy(originUrl: string, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'>) {
  return track(await startProxy(originUrl, opts));
}

async function get(url: string, headers: Record<string, string> = {}, method = 'GET', body?: string) {
  const r = await request(url, { method, headers, body: body ?? null });
  const b = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: b };
}

const ranges = (seen: Seen[]): string[] => seen.filter((s) => s.range !== 'none').map((s) => s.range);
const ALL = ['bytes=0-4095', 'bytes=4096-8191', 'bytes=8192-12287'];

describe('slicer decided from the response: --slice SIZE --slice-min BYTES', () => {
  it('an object of at least the minimum: its body is never read, segments are fetched, then all hits', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 8000, runs: false } });
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe('10000');
    expect(r.body.equals(BODY)).toBe(true);
    expect(r.headers['cache-status']).toMatch(/fwd=uri-miss.*detail=slice/);
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['GET none', ...ALL.map((x) => `GET ${x}`)]);
    const again = await get(`${px.url}/file`, { range: 'bytes=5000-5009' });
    expect(again.status).toBe(206);
    expect(again.body.equals(BODY.subarray(5000, 5010))).toBe(true);
    expect(again.headers["cache-status"], JSON.stringify(again.headers)).toMatch(/^sluice; hit; ttl=\d+; detail=slice$/);
    expect(o.seen).toHaveLength(4);
    // The meta object and three segments.
    expect(px.proxy.store.objectCount).toBe(4);
  });

  it('a cold Range: one origin request, a Range GET of the segment it is in (no body bytes of the whole object)', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 8000 } });
    const r = await get(`${px.url}/file`, { range: 'bytes=9000-9099' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(9000, 9100))).toBe(true);
    // Session 5 (range probe): no HEAD first any more; the segment's 206 made the meta object and is that segment.
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['GET bytes=8192-12287']);
    expect(o.stats.wholeBytes).toBe(0);
    expect(o.stats.rangeBytes).toBe(BODY.length - 8192);
  });

  it('the log shows the fetch that decided (the range probe), then each segment as a subrequest, later ones with their own backend fetch', async () => {
    const o = await origin();
    const sink = new MemorySink();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0 }, txlog: new TxLog([sink]) });
    expect((await get(`${px.url}/file`, { range: 'bytes=4100-9000' })).status).toBe(206);
    await until(() => sink.groups.length === 1);
    const req = sink.groups[0] as Transaction;
    const links = req.records.filter((r) => r.tag === 'Link').map((r) => r.value.replace(/\d+/, 'N'));
    expect(links).toEqual(['bereq N fetch', 'req N slice', 'req N slice']);
    const rangeOf = (t: Transaction): string | undefined => t.records.find((r) => r.tag === 'BereqHeader' && r.value.startsWith('range:'))?.value;
    // The fetch that decided sent the probe: the Range of the segment the client's range starts in.
    const top = req.children.find((c) => c.type !== 'Request') as Transaction;
    expect(rangeOf(top)).toBe('range: bytes=4096-8191');
    const [first, second] = req.children.filter((c) => c.type === 'Request') as [Transaction, Transaction];
    expect(first.records.find((r) => r.tag === 'Begin')?.value).toBe(`req ${req.vxid} slice`);
    // Segment 1 is the probe's body, stored by that fetch: its subrequest finds it, with no fetch of its own.
    expect(first.records.some((r) => r.tag === 'Hit')).toBe(true);
    expect(first.children).toHaveLength(0);
    expect(rangeOf(second.children[0] as Transaction)).toBe('range: bytes=8192-12287');
    expect(o.seen.map((s) => s.range)).toEqual(['bytes=4096-8191', 'bytes=8192-12287']);
  });

  it('an object under the minimum is fetched and cached whole: no Range request', async () => {
    const o = await origin({ len: 7000 });
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 8000 } });
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5009' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5010))).toBe(true);
    expect(r.headers['cache-status']).not.toMatch(/slice/);
    // The client's Range made the range probe go first; its 206 says 7000 bytes, under the minimum: its body is
    // closed, and the object is fetched whole and stored whole.
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['GET bytes=4096-8191', 'GET none']);
    expect(px.proxy.stats.slice_req).toBe(0);
  });

  it('--slice-url stays a filter: other URLs are never sliced', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false, match: /^\/video\// } });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(ranges(o.seen)).toEqual([]);
    expect((await get(`${px.url}/video/a`)).body.equals(BODY)).toBe(true);
    expect(ranges(o.seen)).toEqual(ALL);
  });

  // Each rule on its own: what does not qualify is fetched and cached as a whole, never half-sliced.
  it.each<[string, OriginOpts]>([
    ['without Content-Length (chunked)', { chunked: true }],
    ['with Content-Encoding', { headers: () => ({ 'content-encoding': 'gzip' }) }],
    ['without a validator (no ETag, no Last-Modified)', { omit: ['etag'] }],
  ])('a response %s is not sliced', async (_name, opts) => {
    const o = await origin(opts);
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0 } });
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    expect(ranges(o.seen)).toEqual([]);
    expect(px.proxy.stats.slice_req).toBe(0);
    // Cached whole: the second request is a hit without the origin.
    expect((await get(`${px.url}/file`)).headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen).toHaveLength(1);
  });

  it('a non-200 status is not sliced', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false } });
    const gone = await startScriptedOrigin((_req, res) => {
      res.writeHead(404, { 'content-length': BODY.length, etag: '"x"', 'cache-control': 'max-age=60' });
      res.end(BODY);
    });
    track(gone);
    const px404 = await proxy(gone.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false } });
    const r = await get(`${px404.url}/missing`);
    expect(r.status).toBe(404);
    expect(r.body.equals(BODY)).toBe(true);
    expect(gone.count).toBe(1);
    expect(px404.proxy.stats.slice_req).toBe(0);
    // The same object as a 200 is sliced (the rule is the status, nothing else).
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(ranges(o.seen)).toEqual(ALL);
  });

  it('a pass is never sliced (nor a request with a body)', async () => {
    const o = await origin();
    const enabled: boolean[] = [];
    const px = await proxy(o.url, {
      slice: { sizeBytes: SEG, minBytes: 0 },
      hooks: {
        upstreamResponseFilter: (_b, _c, slicer) => {
          enabled.push(slicer.enable(SEG));
          return undefined;
        },
      },
    });
    const r = await get(`${px.url}/file`, { authorization: 'x' });
    expect(r.body.equals(BODY)).toBe(true);
    const put = await get(`${px.url}/file`, { 'content-type': 'text/plain' }, 'PUT', 'hello');
    expect(put.status).toBe(200);
    expect(enabled).toEqual([false, false]);
    expect(ranges(o.seen)).toEqual([]);
  });
});

describe('the slicer handle in the upstream hooks', () => {
  it('upstreamResponseFilter: enable() with the headers in hand slices; segments see isSub()', async () => {
    const o = await origin();
    const calls: string[] = [];
    const px = await proxy(o.url, {
      hooks: {
        upstreamResponseFilter: (_beresp, _ctx, slicer) => {
          if (slicer.isSub()) calls.push('sub');
          else calls.push(`top ${String(slicer.isTop())} ${String(slicer.enable(SEG))}`);
          return undefined;
        },
      },
    });
    const r = await get(`${px.url}/file`, { range: 'bytes=9000-9099' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 9000-9099/10000');
    expect(r.body.equals(BODY.subarray(9000, 9100))).toBe(true);
    expect(calls).toEqual(['top true true', 'sub']);
    // The full GET (closed unread), then only the segment the range is in.
    expect(o.seen.map((s) => s.range)).toEqual(['none', 'bytes=8192-12287']);
  });

  it('upstreamResponseFilter: enable() returns false when the object cannot be sliced, and the policy falls back', async () => {
    const o = await origin({ headers: () => ({ 'content-encoding': 'br' }) });
    const results: boolean[] = [];
    const px = await proxy(o.url, {
      hooks: {
        upstreamResponseFilter: (beresp, _ctx, slicer) => {
          const ok = slicer.enable(SEG);
          results.push(ok);
          // The fallback of the issue: a pass with a transit buffer (not stored).
          if (!ok) {
            beresp.uncacheable = true;
            beresp.transitBytes = 64 * 1024;
          }
          return undefined;
        },
      },
    });
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    expect(results).toEqual([false]);
    expect(ranges(o.seen)).toEqual([]);
    expect(px.proxy.stats.slice_req).toBe(0);
  });

  it('upstreamRequestFilter: enable() sends a HEAD first, then only the segments needed (no full GET)', async () => {
    const o = await origin();
    const calls: string[] = [];
    const px = await proxy(o.url, {
      hooks: {
        upstreamRequestFilter: (_bereq, _ctx, slicer) => {
          calls.push(slicer.isSub() ? 'sub' : `top failed=${String(slicer.failed())} ${String(slicer.enable(SEG))}`);
        },
      },
    });
    const r = await get(`${px.url}/file`, { range: 'bytes=100-199' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(100, 200))).toBe(true);
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['HEAD none', 'GET bytes=0-4095']);
    expect(calls).toEqual(['top failed=false true', 'sub']);
    expect(o.stats.rangeBytes).toBe(SEG);
    const whole = await get(`${px.url}/file`);
    expect(whole.body.equals(BODY)).toBe(true);
    expect(o.seen.map((s) => s.range)).toEqual(['none', ...ALL]);
  });

  it('upstreamRequestFilter: a HEAD that does not qualify fails the fetch; the retry has failed() true and fetches whole', async () => {
    const o = await origin({ omit: ['etag'] });
    const calls: string[] = [];
    const px = await proxy(o.url, {
      hooks: {
        upstreamRequestFilter: (_bereq, _ctx, slicer) => {
          const failed = slicer.failed();
          calls.push(`failed=${String(failed)} enable=${String(failed ? 'no' : slicer.enable(SEG))}`);
          if (failed) calls.push(`enable again=${String(slicer.enable(SEG))}`);
        },
      },
    });
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    expect(calls).toEqual(['failed=false enable=true', 'failed=true enable=no', 'enable again=false']);
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['HEAD none', 'GET none']);
    expect(px.proxy.stats.slice_req).toBe(0);
  });

  it('upstreamRequestFilter: a qualifying HEAD whose object the response hook makes uncacheable is fetched whole on the retry', async () => {
    const o = await origin();
    const failed: boolean[] = [];
    const px = await proxy(o.url, {
      hooks: {
        upstreamRequestFilter: (_bereq, _ctx, slicer) => {
          failed.push(slicer.failed());
          if (!slicer.failed()) slicer.enable(SEG);
        },
        upstreamResponseFilter: (beresp) => {
          beresp.uncacheable = true;
          return undefined;
        },
      },
    });
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    expect(failed).toEqual([false, true]);
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['HEAD none', 'GET none']);
  });

  it('enable() refuses segment sizes under 1 KiB and outside the two hooks', async () => {
    const o = await origin();
    const got: boolean[] = [];
    let kept: { enable(n: number): boolean } | undefined;
    const px = await proxy(o.url, {
      hooks: {
        upstreamResponseFilter: (_b, _c, slicer) => {
          got.push(slicer.enable(100));
          kept = slicer;
          return undefined;
        },
      },
    });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(got).toEqual([false]);
    expect(kept?.enable(SEG)).toBe(false);
    expect(ranges(o.seen)).toEqual([]);
  });
});

describe('one lifetime: the meta object governs its segments', () => {
  it('segments live as long as the meta object, not by their own (shorter) freshness', async () => {
    let now = 1_000_000_000_000;
    // Segment responses say max-age=1; the whole object's says max-age=60.
    const o = await origin({ segmentCc: 'max-age=1' });
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false }, now: () => now });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen.length).toBe(4);
    now += 30_000;
    const warm = await get(`${px.url}/file`);
    expect(warm.body.equals(BODY)).toBe(true);
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen.length).toBe(4);
    // Past the meta object's 60 s (no grace, default keep): the object is fetched again, and its segments with it.
    now += 40_000;
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen.length).toBe(8);
  });

  it.each<[string, Omit<ProxyOptions<Record<string, unknown>>, 'upstream' | 'now'>]>([
    ['--slice-min', { slice: { sizeBytes: SEG, minBytes: 0, runs: false } }],
    ['slicer.enable in upstreamRequestFilter', { hooks: { upstreamRequestFilter: (_b, _c, slicer) => void slicer.enable(SEG) } }],
  ])('%s: a 304 revalidating the meta object keeps it sliced, with the same segments (revalidated, not refetched)', async (_name, opts) => {
    let now = 1_000_000_000_000;
    const seen: string[] = [];
    const o = track(
      await startScriptedOrigin((req, res) => {
        const range = req.headers.range;
        seen.push(`${req.headers['if-none-match'] === undefined ? '' : 'cond '}${range ?? 'none'}`);
        const base = { etag: '"v1"', 'cache-control': 'max-age=10' };
        if (req.headers['if-none-match'] === '"v1"') {
          res.writeHead(304, base);
          return void res.end();
        }
        const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
        if (m === null) {
          res.writeHead(200, { ...base, 'content-length': BODY.length });
          return void res.end(BODY);
        }
        const start = Number(m[1]);
        const end = Math.min(BODY.length - 1, Number(m[2]));
        res.writeHead(206, { ...base, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}` });
        res.end(BODY.subarray(start, end + 1));
      }),
    );
    const px = await proxy(o.url, { ...opts, now: () => now });
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    now += 20_000;
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    expect(seen).toEqual(['none', ...ALL, 'cond none', ...ALL.map((x) => `cond ${x}`)]);
    expect(px.proxy.store.objectCount).toBe(4);
    // Fresh again: all hits.
    const warm = await get(`${px.url}/file`);
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(seen).toHaveLength(8);
  });

  it.each<[string, (px: Awaited<ReturnType<typeof proxy>>) => void]>([
    ['a purge', (px) => void px.proxy.purge('/file', new URL(px.url).host)],
    ['a ban', (px) => void px.proxy.ban('req.url == /file')],
    ['a tag invalidation', (px) => void px.proxy.store.purgeTags(['t1'])],
  ])('%s of the object wipes its segments', async (_name, invalidate) => {
    const o = await origin({ headers: (p) => ({ 'surrogate-key': p === '/file' ? 't1' : 't2' }) });
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, runs: false } });
    // A second, unrelated object stays.
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect((await get(`${px.url}/other`, { range: 'bytes=0-9' })).status).toBe(206);
    expect(px.proxy.store.objectCount).toBe(6);
    invalidate(px);
    // The ban applies when the object is next looked up: that lookup removes it, and its segments with it.
    const again = await get(`${px.url}/file`, { range: 'bytes=9000-9009' });
    expect(again.body.equals(BODY.subarray(9000, 9010))).toBe(true);
    expect(again.headers['cache-status']).toMatch(/fwd=/);
    // The new meta object and the one segment fetched, plus /other's meta and segment: no old segment left.
    expect(px.proxy.store.objectCount).toBe(4);
    // Cold ranges are range probes (one Range GET each): /other's, then /file's again after the invalidation.
    expect(o.seen.map((s) => `${s.method} ${s.range}`)).toEqual(['GET none', ...ALL.map((x) => `GET ${x}`), 'GET bytes=0-4095', 'GET bytes=8192-12287']);
  });
});

describe('read-ahead', () => {
  it('a range inside one segment fetches that segment only, whatever the read-ahead', async () => {
    const o = await origin();
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, readAhead: 8 } });
    const r = await get(`${px.url}/file`, { range: 'bytes=4100-4199' });
    expect(r.body.equals(BODY.subarray(4100, 4200))).toBe(true);
    expect(ranges(o.seen)).toEqual(['bytes=4096-8191']);
    expect(o.stats.rangeBytes).toBe(SEG);
  });

  it.each([0, 1, 3, undefined])('read-ahead %s: at most 1 + N (default 4) segment fetches at the origin at once, each needed one once', async (n) => {
    const o = await origin({ delayMs: 15 });
    // A 10,000-byte object in 1 KiB segments: 10 segments.
    const px = await proxy(o.url, { slice: { sizeBytes: 1024, minBytes: 0, runs: false, readAhead: n } });
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    const got = ranges(o.seen);
    expect(got).toHaveLength(10);
    expect(new Set(got).size).toBe(10);
    expect(o.stats.maxInflight).toBeLessThanOrEqual(1 + (n ?? 4));
    if (n !== 0) expect(o.stats.maxInflight).toBeGreaterThan(1);
    expect(o.stats.rangeBytes).toBe(BODY.length);
  });

  it('a partly cached object: cached segments (sent in batches) and fetched ones leave in order, each fetched once', async () => {
    const o = await origin();
    // No read-ahead: a segment not cached is still being fetched when its turn comes, so the cached ones gathered
    // before it must go out first.
    const px = await proxy(o.url, { slice: { sizeBytes: 1024, minBytes: 0, readAhead: 0 } });
    expect((await get(`${px.url}/file`, { range: 'bytes=2048-4095' })).body.equals(BODY.subarray(2048, 4096))).toBe(true);
    expect((await get(`${px.url}/file`, { range: 'bytes=5120-5200' })).body.equals(BODY.subarray(5120, 5201))).toBe(true);
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    const got = ranges(o.seen);
    expect(got).toHaveLength(10);
    expect(new Set(got).size).toBe(10);
    expect(o.stats.rangeBytes).toBe(BODY.length);
    // Warm: every segment from the cache, nothing more at the origin, the same bytes.
    const seen = o.seen.length;
    const warm = await get(`${px.url}/file`);
    expect(warm.body.equals(BODY)).toBe(true);
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit/);
    const part = await get(`${px.url}/file`, { range: 'bytes=1000-9000' });
    expect(part.status).toBe(206);
    expect(part.body.equals(BODY.subarray(1000, 9001))).toBe(true);
    expect(o.seen.length).toBe(seen);
  });

  it('the nginx model (--slice-size) reads ahead the same way, bounded, and never segment 0 for a range', async () => {
    const o = await origin({ delayMs: 10 });
    const px = await proxy(o.url, { slice: { sizeBytes: 1024, readAhead: 2 } });
    const r = await get(`${px.url}/file`, { range: 'bytes=3000-' });
    expect(r.body.equals(BODY.subarray(3000))).toBe(true);
    const got = ranges(o.seen);
    expect(got[0]).toBe('bytes=2048-3071');
    expect(got).toHaveLength(8);
    expect(o.stats.maxInflight).toBeLessThanOrEqual(3);
  });
});
