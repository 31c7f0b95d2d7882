import { createHash } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { getMaybeCut, startProxy, until, useCleanup } from '../test-support/harness.js';
import { LEAD_AHEAD_SEGMENTS, LEAD_WAIT_MS } from '../slicer/lead.js';

/**
 * Issue 13, the first run (slicer/lead.ts, `keepBody: true`; off by default): a meta object made from a 200
 * (`--slice --slice-min`, runs on) keeps that 200's body and cuts it into segments 0, 1, ... as a whole read goes on, instead of closing the
 * connection and fetching the segments again with Range requests. The origin records each request's Range ('none'
 * for the 200), whether each 200 was written whole, and whether its connection was closed before that.
 */
const track = useCleanup();
const SEG = 1024;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

interface OriginOpts {
  /** The 200 is written in this many pieces, `gapMs` apart. */
  pieces?: number;
  gapMs?: number;
  /** The first 200 breaks off (connection reset) after this many body bytes. */
  dieAfter?: number;
}

async function origin(body: Buffer, opts: OriginOpts = {}) {
  const seen: string[] = [];
  const whole = { written: 0, finished: 0, cut: 0, closed: 0 };
  const o = track(
    await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const range = req.headers.range;
      seen.push(range ?? 'none');
      const base = { 'cache-control': 'max-age=60', etag: '"v1"' };
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m !== null) {
        const start = Number(m[1]);
        const end = Math.min(body.length - 1, Number(m[2]));
        res.writeHead(206, { ...base, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${body.length}` });
        return void res.end(body.subarray(start, end + 1));
      }
      res.writeHead(200, { ...base, 'content-length': body.length });
      res.on('finish', () => whole.finished++);
      res.on('close', () => {
        whole.closed++;
        if (!res.writableFinished) whole.cut++;
      });
      if (opts.dieAfter !== undefined && whole.closed === 0) {
        res.write(body.subarray(0, opts.dieAfter));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      const n = opts.pieces ?? 1;
      const step = Math.ceil(body.length / n);
      for (let at = 0; at < body.length; at += step) {
        if (at > 0 && opts.gapMs !== undefined) await new Promise((r) => setTimeout(r, opts.gapMs));
        if (res.destroyed) return;
        res.write(body.subarray(at, at + step));
        whole.written += Math.min(step, body.length - at);
      }
      res.end();
    }),
  );
  return { url: o.url, seen, whole };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const b = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: b };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** GET /file on a raw socket that stops reading after its first bytes; readOn() reads the rest and gives the body. */
async function stallingClient(port: number): Promise<{ readOn(): Promise<Buffer> }> {
  const sock = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  let stalled = true;
  sock.on('data', (d: Buffer) => {
    parts.push(d);
    if (stalled) sock.pause();
  });
  sock.write('GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await until(() => parts.length > 0);
  return {
    async readOn() {
      const done = new Promise<void>((resolve) => sock.on('end', resolve));
      stalled = false;
      sock.resume();
      await done;
      const all = Buffer.concat(parts);
      return all.subarray(all.indexOf('\r\n\r\n') + 4);
    },
  };
}

describe('slicer: the first run keeps the 200 body', () => {
  it('a cold whole read costs one origin request: the 200 is cut into every segment, each its own object and subrequest; warm from the cache', async () => {
    const o = await origin(BODY);
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: true } }));
    const r = await get(`${px.url}/file`);
    expect(r.status).toBe(200);
    expect(r.body.equals(BODY)).toBe(true);
    expect(o.seen).toEqual(['none']);
    expect(o.whole.finished).toBe(1);
    // The meta object and ten segments, each a subrequest counted once.
    await until(() => px.proxy.store.objectCount === 11);
    expect(px.proxy.stats.slice_segments).toBe(10);
    const warm = await get(`${px.url}/file`);
    expect(warm.body.equals(BODY)).toBe(true);
    expect(warm.headers['cache-status']).toMatch(/^sluice; hit/);
    const part = await get(`${px.url}/file`, { range: 'bytes=3000-7999' });
    expect(part.status).toBe(206);
    expect(part.body.equals(BODY.subarray(3000, 8000))).toBe(true);
    expect(o.seen).toEqual(['none']);
  });

  it('without keepBody (the default) or with keepBody: false the 200 is closed unread and segment 0 fetched again', async () => {
    for (const keepBody of [undefined, false]) {
      const o = await origin(BODY);
      const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, ...(keepBody === false ? { keepBody } : {}) } }));
      expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
      expect(o.seen.slice(0, 2)).toEqual(['none', 'bytes=0-1023']);
    }
  });

  it('a 200 arriving in pieces, 20 ms apart: still one origin request, the bytes exact', async () => {
    const o = await origin(BODY, { pieces: 7, gapMs: 20 });
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: true } }));
    expect((await get(`${px.url}/file`)).body.equals(BODY)).toBe(true);
    expect(o.seen).toEqual(['none']);
    expect(o.whole.finished).toBe(1);
  });

  it('never for a HEAD, a read with runs off, or under a request hook: the 200 is closed and no segment is kept from it', async () => {
    for (const opts of [{ head: true, runs: undefined, hook: false }, { head: false, runs: false, hook: false }, { head: false, runs: undefined, hook: true }]) {
      const o = await origin(BODY, { pieces: 4, gapMs: 30 });
      const px = track(
        await startProxy(o.url, {
          slice: { sizeBytes: SEG, minBytes: 0, keepBody: true, ...(opts.runs === false ? { runs: false } : {}) },
          ...(opts.hook ? { hooks: { requestFilter: () => undefined } } : {}),
        }),
      );
      const r = await request(`${px.url}/file`, { method: opts.head ? 'HEAD' : 'GET' });
      await r.body.arrayBuffer();
      expect(r.statusCode).toBe(200);
      // The 200's connection was closed before the origin had written it all.
      await until(() => o.whole.cut === 1);
      if (opts.head) expect(px.proxy.store.objectCount).toBe(1);
      else expect(o.seen[1]).toBe('bytes=0-1023');
    }
  });

  it('the origin dying mid-body: the client is cut off, nothing of that 200 is kept (meta object and segments), the next read fetches anew', async () => {
    const o = await origin(BODY, { dieAfter: 3 * SEG + 500 });
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: true } }));
    const r = await getMaybeCut(`${px.url}/file`);
    expect(r.complete).toBe(false);
    expect(r.body.equals(BODY.subarray(0, r.body.length))).toBe(true);
    expect(px.proxy.stats.fetch_failed).toBeGreaterThanOrEqual(1);
    // Segments 0-2 were complete, but the response that made the meta object broke off: all of it goes.
    await until(() => px.proxy.store.objectCount === 0);
    const again = await get(`${px.url}/file`);
    expect(again.body.equals(BODY)).toBe(true);
    expect(o.seen.slice(0, 2)).toEqual(['none', 'none']);
  });

  it('a client leaving early: the first run stops once its claimed segments are in, its connection closed; nothing truncated kept', async () => {
    const big = Buffer.from(Array.from({ length: 64 * SEG }, (_, i) => (i * 13 + (i >> 9)) & 0xff));
    const o = await origin(big, { pieces: 64, gapMs: 5 });
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: true } }));
    const res = await request(`${px.url}/file`);
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    res.body.destroy();
    await until(() => o.whole.cut === 1);
    expect(o.whole.written).toBeLessThan(big.length);
    // At most the segments claimed when the client left: the read-ahead past what it had been sent, not all 64.
    expect(px.proxy.store.objectCount).toBeLessThan(1 + 64);
    const again = await get(`${px.url}/file`);
    expect(sha(again.body)).toBe(sha(big));
  });

  it('a client that stops reading: the 200 waits (the origin is held back), then is closed after LEAD_WAIT_MS; the read resumes exact', async () => {
    const seg = 256 * 1024;
    const big = Buffer.alloc(128 * seg);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    const o = await origin(big);
    const px = track(await startProxy(o.url, { slice: { sizeBytes: seg, minBytes: 0, keepBody: true } }));
    const client = await stallingClient(px.port);
    // Held back: the origin has not written the whole 200, and the store stops growing short of all 128 segments.
    let count = -1;
    await until(() => {
      const now = px.proxy.store.objectCount;
      const stable = now === count;
      count = now;
      return stable;
    });
    expect(count).toBeLessThan(1 + 128);
    expect(o.whole.finished).toBe(0);
    expect(o.seen).toEqual(['none']);
    // The wait is bounded: the proxy lets go of the 200 (its response is over at the origin).
    await until(() => o.whole.closed === 1);
    // The client reads on: the rest comes from segments fetched again (runs), every byte exact.
    const body = await client.readOn();
    expect(body.length).toBe(big.length);
    expect(sha(body)).toBe(sha(big));
    expect(o.seen.length).toBeGreaterThan(1);
  }, 10_000 + LEAD_WAIT_MS);

  it('a lagging client: the first run cuts on at the origin\'s pace up to LEAD_AHEAD_SEGMENTS past its reader (not the read-ahead\'s 4), then holds the origin back', async () => {
    const seg = 256 * 1024;
    const big = Buffer.alloc(128 * seg);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 3) ^ 0x1234567, i);
    const o = await origin(big);
    const px = track(await startProxy(o.url, { slice: { sizeBytes: seg, minBytes: 0, keepBody: true } }));
    const client = await stallingClient(px.port);
    // The meta object and at least the window's segments past the client's (session 9: the read-ahead's 4 past it,
    // the body paused at the client's pace: this waited forever), then held: never all 128, the 200 not read to its end.
    await until(() => px.proxy.store.objectCount >= 1 + LEAD_AHEAD_SEGMENTS);
    let count = -1;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      if (px.proxy.store.objectCount === count) break;
      count = px.proxy.store.objectCount;
    }
    expect(count).toBeLessThan(1 + 128);
    expect(o.whole.finished).toBe(0);
    expect(o.seen).toEqual(['none']);
    expect(sha(await client.readOn())).toBe(sha(big));
  }, 10_000 + LEAD_WAIT_MS);

  it('a purge while the client lags mid first run: the client still gets every byte, nothing of the object stays cached', async () => {
    const seg = 256 * 1024;
    const big = Buffer.alloc(64 * seg);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i ^ 0x5a5a5a5a, i);
    const o = await origin(big);
    const px = track(await startProxy(o.url, { slice: { sizeBytes: seg, minBytes: 0, keepBody: true } }));
    const client = await stallingClient(px.port);
    const claimed = px.proxy.store.objectCount;
    expect(px.proxy.purge('/file', 'x')).toBeGreaterThan(0);
    expect(sha(await client.readOn())).toBe(sha(big));
    // The purge came mid first run (not every segment was cut yet).
    expect(claimed).toBeLessThan(1 + 64);
    await until(() => px.proxy.store.objectCount === 0);
  });

  it('two clients on one cold object: both exact, each segment stored once', async () => {
    const o = await origin(BODY, { pieces: 5, gapMs: 10 });
    const px = track(await startProxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0, keepBody: true } }));
    const [a, b] = await Promise.all([get(`${px.url}/file`), get(`${px.url}/file`)]);
    expect(a.body.equals(BODY)).toBe(true);
    expect(b.body.equals(BODY)).toBe(true);
    await until(() => px.proxy.store.objectCount === 11);
    expect(o.seen[0]).toBe('none');
  });
});
