import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, until, useCleanup } from '../test-support/harness.js';
import { formatVarnishlog, MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyOptions } from './proxy.js';

const track = useCleanup();
const SIZE = 4096;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

/** An origin serving BODY with single-range support; `etag` and `mode` can change between requests. */
async function rangedOrigin(opts: { etag?: () => string; ignoreRange?: boolean; dieInRange?: string } = {}) {
  // dieInRange: the first request for that exact Range gets 100 bytes and a dead connection.
  const ranges: string[] = [];
  const origin = track(
    await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const range = req.headers.range;
      ranges.push(range ?? 'none');
      const etag = opts.etag?.() ?? '"v1"';
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m === null || opts.ignoreRange === true) {
        res.writeHead(200, { 'content-length': BODY.length, 'cache-control': 'max-age=60', etag });
        return void res.end(BODY);
      }
      const start = Number(m[1]);
      const end = Math.min(BODY.length - 1, Number(m[2]));
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}`, 'cache-control': 'max-age=60', etag });
      if (range === opts.dieInRange && ranges.filter((r) => r === range).length === 1) {
        // The first fetch of that range dies after 100 bytes; later ones succeed.
        res.write(BODY.subarray(start, start + 100));
        await new Promise((r) => setTimeout(r, 10));
        return void req.socket.destroy();
      }
      res.end(BODY.subarray(start, end + 1));
    }),
  );
  return { origin, ranges };
}

async function sliced(originUrl: string, extra: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  return track(await startProxy(originUrl, { slice: { sizeBytes: SIZE }, ...extra }));
}

async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const r = await request(url, { method, headers });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body };
}

describe('slicer', () => {
  it('a cold GET is fetched as segments with origin Range requests, stitched into one 200; then all hits', async () => {
    const { origin, ranges } = await rangedOrigin();
    const px = await sliced(origin.url);
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe('10000');
    expect(r.headers['content-range']).toBeUndefined();
    expect(r.body.equals(BODY)).toBe(true);
    expect(ranges).toEqual(['bytes=0-4095', 'bytes=4096-8191', 'bytes=8192-12287']);
    expect(px.proxy.stats).toMatchObject({ slice_req: 1, slice_segments: 3, cache_miss: 3, cache_hit: 0 });
    const again = await get(`${px.url}/file`);
    expect(again.body.equals(BODY)).toBe(true);
    expect(again.headers['cache-status']).toMatch(/^sluice; hit; ttl=\d+; detail=slice$/);
    expect(ranges).toHaveLength(3);
    expect(px.proxy.stats).toMatchObject({ slice_req: 2, slice_segments: 6, cache_miss: 3, cache_hit: 3 });
  });

  it('a Range fetches only the segments it covers, the first one first (its Content-Range makes the meta object)', async () => {
    const { origin, ranges } = await rangedOrigin();
    const px = await sliced(origin.url);
    const r = await get(`${px.url}/file`, { range: 'bytes=9000-9099' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 9000-9099/10000');
    expect(r.body.equals(BODY.subarray(9000, 9100))).toBe(true);
    // Issue 13: no segment 0 for the meta object; nothing read ahead a range inside one segment never needs.
    expect(ranges).toEqual(['bytes=8192-12287']);
    // Across a segment boundary, with the meta object cached: only the missing segment is fetched.
    const across = await get(`${px.url}/file`, { range: 'bytes=4000-8200' });
    expect(across.status).toBe(206);
    expect(across.body.equals(BODY.subarray(4000, 8201))).toBe(true);
    expect(ranges).toEqual(['bytes=8192-12287', 'bytes=0-4095', 'bytes=4096-8191']);
    const multi = await get(`${px.url}/file`, { range: 'bytes=0-9,9990-9999' });
    expect(multi.status).toBe(206);
    expect(multi.headers['content-type']).toMatch(/^multipart\/byteranges; boundary=/);
    expect(multi.body.includes(BODY.subarray(9990, 10_000))).toBe(true);
    const past = await get(`${px.url}/file`, { range: 'bytes=20000-' });
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe('bytes */10000');
    expect(ranges).toHaveLength(3);
  });

  it('Cache-Status says hit only when the meta object and every segment needed were cached', async () => {
    const { origin } = await rangedOrigin();
    const px = await sliced(origin.url);
    const cold = await get(`${px.url}/file`, { range: 'bytes=0-9' });
    expect(cold.headers['cache-status']).toMatch(/^sluice; fwd=uri-miss; .*detail=slice$/);
    // Segment 0 and the meta object are cached now, segment 1 is not: not a hit.
    const part = await get(`${px.url}/file`, { range: 'bytes=0-5000' });
    expect(part.body.equals(BODY.subarray(0, 5001))).toBe(true);
    expect(part.headers['cache-status']).toMatch(/^sluice; fwd=miss; .*detail=slice$/);
    const warm = await get(`${px.url}/file`, { range: 'bytes=0-5000' });
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit; .*detail=slice$/);
  });

  it('HEAD and a matching If-None-Match are answered from the meta object', async () => {
    const { origin, ranges } = await rangedOrigin();
    const px = await sliced(origin.url);
    const head = await get(`${px.url}/file`, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('10000');
    expect(head.body.length).toBe(0);
    expect(ranges).toEqual(['bytes=0-4095']);
    const cond = await get(`${px.url}/file`, { 'if-none-match': '"v1"' });
    expect(cond.status).toBe(304);
    expect(ranges).toEqual(['bytes=0-4095']);
  });

  it('concurrent cold requests share each segment fetch', async () => {
    const { origin, ranges } = await rangedOrigin();
    const px = await sliced(origin.url);
    const agent = track(new Agent({ connections: 8 }));
    const bodies = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const r = await request(`${px.url}/file`, { dispatcher: agent });
        return Buffer.from(await r.body.arrayBuffer());
      }),
    );
    for (const b of bodies) expect(b.equals(BODY)).toBe(true);
    expect([...ranges].sort()).toEqual(['bytes=0-4095', 'bytes=4096-8191', 'bytes=8192-12287']);
  });

  it('reads ahead: the next segment is requested while the current one is still being fetched', async () => {
    // The origin holds segment 1 until it has seen the request for segment 2: without read-ahead this never ends.
    const seg2Asked = deferred();
    const seen: string[] = [];
    const origin = track(
      await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
        const range = req.headers.range ?? '';
        seen.push(range);
        if (range === 'bytes=8192-12287') seg2Asked.resolve();
        if (range === 'bytes=4096-8191') await seg2Asked.promise;
        const m = /^bytes=(\d+)-(\d+)$/.exec(range) as RegExpExecArray;
        const start = Number(m[1]);
        const end = Math.min(BODY.length - 1, Number(m[2]));
        res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}`, 'cache-control': 'max-age=60' });
        res.end(BODY.subarray(start, end + 1));
      }),
    );
    const px = await sliced(origin.url);
    const r = await get(`${px.url}/file`);
    expect(r.body.equals(BODY)).toBe(true);
    expect(seen).toEqual(['bytes=0-4095', 'bytes=4096-8191', 'bytes=8192-12287']);
  });

  it('an origin that ignores Range: its whole 200 is delivered and cached as it is', async () => {
    const { origin, ranges } = await rangedOrigin({ ignoreRange: true });
    const px = await sliced(origin.url);
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    const again = await get(`${px.url}/file`, { range: 'bytes=10-19' });
    expect(again.status).toBe(206);
    expect(again.body.equals(BODY.subarray(10, 20))).toBe(true);
    expect(ranges).toHaveLength(1);
  });

  it('an object that changed at the origin: the mismatching segment drops meta and segments, the request starts over', async () => {
    let etag = '"v1"';
    const { origin, ranges } = await rangedOrigin({ etag: () => etag });
    const px = await sliced(origin.url);
    expect((await get(`${px.url}/file`, { range: 'bytes=0-9' })).status).toBe(206);
    etag = '"v2"';
    const r = await get(`${px.url}/file`, { range: 'bytes=9000-9009' });
    expect(r.status).toBe(206);
    expect(r.headers['etag']).toBe('"v2"');
    expect(r.body.equals(BODY.subarray(9000, 9010))).toBe(true);
    // segment 2 (v2, mismatch): meta and segments dropped, then segment 2 again makes a new meta object.
    expect(ranges).toEqual(['bytes=0-4095', 'bytes=8192-12287', 'bytes=8192-12287']);
  });

  it('a segment whose fetch dies mid-body cuts the client (never a clean end) and is not kept', async () => {
    const { origin, ranges } = await rangedOrigin({ dieInRange: 'bytes=4096-8191' });
    const px = await sliced(origin.url);
    const raw = await rawExchange(px.port, 'GET /file HTTP/1.1\r\nHost: t\r\n\r\n');
    const res = parseRawResponse(raw);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('10000');
    expect(res.body.length).toBeLessThan(10_000);
    expect(px.proxy.stats.fetch_failed).toBe(1);
    // Segment 1 is fetched again next time; segment 0 and the meta object were kept.
    const next = parseRawResponse(await rawExchange(px.port, 'GET /file HTTP/1.1\r\nHost: t\r\nRange: bytes=5000-5001\r\nConnection: close\r\n\r\n'));
    expect(next.status).toBe(206);
    expect(next.body.equals(BODY.subarray(5000, 5002))).toBe(true);
    expect(ranges.filter((r) => r === 'bytes=4096-8191')).toHaveLength(2);
    expect(ranges.filter((r) => r === 'bytes=0-4095')).toHaveLength(1);
  });

  it('purging the URL removes the meta object and every segment', async () => {
    const { origin, ranges } = await rangedOrigin();
    const px = await sliced(origin.url);
    await get(`${px.url}/file`);
    const host = new URL(px.url).host;
    expect(px.proxy.purge('/file', host)).toBe(4);
    await get(`${px.url}/file`);
    expect(ranges).toHaveLength(6);
  });

  it('each segment is a full trip through the policy hooks: requestFilter sees req.segment, sliceSize decides per URL', async () => {
    const { origin, ranges } = await rangedOrigin();
    const seen: Array<number | undefined> = [];
    const px = await sliced(origin.url, {
      slice: undefined,
      hooks: {
        sliceSize: (req) => (req.url.startsWith('/big') ? SIZE : 0),
        requestFilter: (req) => {
          seen.push(req.segment?.index);
          return undefined;
        },
      },
    });
    await get(`${px.url}/small`);
    expect(ranges).toEqual(['none']);
    await get(`${px.url}/big`);
    expect(seen).toEqual([undefined, undefined, 0, 1, 2]);
    expect(ranges.slice(1)).toEqual(['bytes=0-4095', 'bytes=4096-8191', 'bytes=8192-12287']);
  });

  it('the log shows each segment as a subrequest with its own hit or miss and backend fetch', async () => {
    const { origin } = await rangedOrigin();
    const sink = new MemorySink();
    const px = await sliced(origin.url, { txlog: new TxLog([sink]) });
    await get(`${px.url}/file`, { range: 'bytes=5000-5009' });
    await get(`${px.url}/file`, { range: 'bytes=5000-5009' });
    await until(() => sink.groups.length === 2);
    const [cold, warm] = sink.groups as [Transaction, Transaction];
    const links = cold.records.filter((r) => r.tag === 'Link').map((r) => r.value);
    expect(links).toEqual(cold.children.map((c) => `req ${c.vxid} slice`));
    // One segment: the one the range is in (no segment 0 for the meta object, no read-ahead).
    expect(cold.children).toHaveLength(1);
    for (const child of cold.children) {
      expect(child.records.find((r) => r.tag === 'Begin')?.value).toBe(`req ${cold.vxid} slice`);
      expect(child.records.some((r) => r.tag === 'VCL_call' && r.value === 'MISS')).toBe(true);
      const be = child.children[0] as Transaction;
      expect(be.type).toBe('BeReq');
      expect(be.records.find((r) => r.tag === 'BereqHeader' && r.value.startsWith('range:'))?.value).toMatch(/^range: bytes=4096-8191$/);
      expect(be.records.find((r) => r.tag === 'BerespStatus')?.value).toBe('206');
    }
    expect(warm.children).toHaveLength(1);
    expect(warm.children[0]?.records.some((r) => r.tag === 'Hit')).toBe(true);
    const text = formatVarnishlog(cold).split('\n');
    expect(text.filter((l) => l.startsWith('*')).map((l) => l.slice(0, 18))).toEqual([
      '*   << Request  >>',
      '**  << Request  >>',
      '*** << BeReq    >>',
    ]);
  });
});
