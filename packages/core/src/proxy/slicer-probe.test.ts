import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyOptions } from './proxy.js';

/**
 * The range probe (issue 13, session 5): with `--slice SIZE --slice-min BYTES` and no upstream hooks, a cold miss for
 * a client Range sends one Range GET for the segment the range starts in (nginx's slice module does the same). Its
 * 206 makes the meta object and is kept as that segment; a 200 is the answer as it is; anything else that cannot
 * make the meta object is closed and the object fetched whole. The origin records each request's method and Range.
 */
const track = useCleanup();
const SEG = 4096;
const BODY = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff));

interface Script {
  /** Headers of every answer (default: ETag "v1", max-age=60). */
  headers?: Record<string, string>;
  /** The origin never answers 206: Range ignored. */
  ignoreRange?: boolean;
  /** The Content-Range the first request's 206 carries instead of the right one (a broken origin); '' for none. */
  contentRange?: string;
  /** Bytes of the object (default all of BODY). */
  len?: number;
  /** For the n-th request (1-based): write the head and this many body bytes, then cut the connection. */
  dieAt?: { n: number; after: number };
}

async function origin(script: Script = {}) {
  const seen: string[] = [];
  const bytes = { body: 0 };
  const o = track(
    await startScriptedOrigin((req: http.IncomingMessage, res: http.ServerResponse, n: number) => {
      const body = BODY.subarray(0, script.len ?? BODY.length);
      const range = req.headers.range;
      seen.push(`${req.method ?? ''} ${range ?? 'none'}`);
      const base: Record<string, string> = { 'cache-control': 'max-age=60', etag: '"v1"', ...script.headers };
      for (const [k, v] of Object.entries(base)) if (v === '') delete base[k];
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (m === null || script.ignoreRange === true) {
        res.writeHead(200, { ...base, 'content-length': body.length });
        bytes.body += body.length;
        return void res.end(req.method === 'HEAD' ? undefined : body);
      }
      const start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { ...base, 'content-range': `bytes */${body.length}`, 'content-length': 0 });
        return void res.end();
      }
      const end = Math.min(body.length - 1, Number(m[2]));
      const part = body.subarray(start, end + 1);
      const cr = n === 1 && script.contentRange !== undefined ? script.contentRange : `bytes ${start}-${end}/${body.length}`;
      res.writeHead(206, { ...base, 'content-length': part.length, ...(cr === '' ? {} : { 'content-range': cr }) });
      if (script.dieAt?.n === n) {
        res.write(part.subarray(0, script.dieAt.after));
        bytes.body += script.dieAt.after;
        return void setTimeout(() => res.socket?.destroy(), 20);
      }
      bytes.body += part.length;
      res.end(part);
    }),
  );
  return { url: o.url, seen, bytes };
}

async function proxy(originUrl: string, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  return track(await startProxy(originUrl, { slice: { sizeBytes: SEG, minBytes: 8000 }, ...opts }));
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const b = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: b };
}

describe('the range probe: a cold range with --slice-min costs one origin request', () => {
  it('one Range GET for the segment the range starts in; its 206 is the meta object and that segment', async () => {
    const o = await origin();
    const px = await proxy(o.url);
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 5000-5099/10000');
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(r.headers['cache-status']).toMatch(/fwd=.*detail=slice/);
    expect(o.seen).toEqual(['GET bytes=4096-8191']);
    expect(o.bytes.body).toBe(SEG);
    await until(() => px.proxy.store.objectCount === 2);
    // The same range again: a hit, nothing at the origin.
    const again = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(again.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(again.headers['cache-status']).toMatch(/^sluice; hit; ttl=\d+; detail=slice$/);
    // The whole object: the probe's segment is used, only the two others are fetched, each once.
    const whole = await get(`${px.url}/file`);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe('10000');
    expect(whole.headers['content-range']).toBeUndefined();
    expect(whole.body.equals(BODY)).toBe(true);
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET bytes=0-4095', 'GET bytes=8192-12287']);
    expect(px.proxy.store.objectCount).toBe(4);
    expect((await get(`${px.url}/file`)).headers['cache-status']).toMatch(/^sluice; hit; ttl=\d+; detail=slice$/);
    expect(o.seen).toHaveLength(3);
  });

  it('a range over two segments: the probe is the first, the second a segment fetch; the last segment short', async () => {
    const o = await origin();
    const px = await proxy(o.url);
    const r = await get(`${px.url}/file`, { range: 'bytes=8000-' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(8000))).toBe(true);
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET bytes=8192-12287']);
    expect(o.bytes.body).toBe(SEG + BODY.length - 8192);
  });

  it('a 200 to the probe (Range ignored) is the answer: one request, stored whole when under the minimum', async () => {
    const o = await origin({ ignoreRange: true, len: 7000 });
    const px = await proxy(o.url);
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(r.headers['cache-status']).not.toMatch(/slice/);
    expect(o.seen).toEqual(['GET bytes=4096-8191']);
    const whole = await get(`${px.url}/file`);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(BODY.subarray(0, 7000))).toBe(true);
    expect(whole.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen).toHaveLength(1);
    expect(px.proxy.stats.slice_req).toBe(0);
  });

  it.each<[string, Script, string]>([
    ['under --slice-min', { len: 7000 }, 'under --slice-min'],
    ['without a validator', { headers: { etag: '' } }, 'no-validator'],
    ['with a Content-Encoding', { headers: { 'content-encoding': 'gzip' } }, 'content-encoding'],
  ])('a 206 %s: its body is closed, the object fetched whole (a second request) and stored whole, never as a 206', async (_n, script, why) => {
    const o = await origin(script);
    const sink = new MemorySink();
    const px = await proxy(o.url, { txlog: new TxLog([sink]) });
    const len = script.len ?? BODY.length;
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 5000-5099/${len}`);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(r.headers['cache-status']).not.toMatch(/slice/);
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET none']);
    expect(px.proxy.stats.slice_req).toBe(0);
    // Stored whole, as a 200: a whole GET is a hit with every byte.
    const whole = await get(`${px.url}/file`);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-range']).toBeUndefined();
    expect(whole.body.equals(BODY.subarray(0, len))).toBe(true);
    expect(whole.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(o.seen).toHaveLength(2);
    expect(px.proxy.store.objectCount).toBe(1);
    // The fetch's log says why the probe's answer was not used.
    const be = (sink.groups[0] as Transaction).children.find((c) => c.type !== 'Request') as Transaction;
    const debug = be.records.filter((r) => r.tag === 'Debug').map((r) => r.value);
    expect(debug).toHaveLength(1);
    expect(debug[0]).toMatch(/^slicer range probe bytes=4096-8191: .*; fetched whole$/);
    expect(debug[0]).toContain(why);
  });

  it.each<[string, Script, string]>([
    ['a Content-Range that does not answer the range asked for', { contentRange: 'bytes 0-4095/10000' }, 'Content-Range bytes 0-4095/10000 does not answer'],
    ['no Content-Range (as a multipart answer has)', { contentRange: '', headers: { 'content-type': 'multipart/byteranges; boundary=x' } }, 'Content-Range missing does not answer'],
  ])('a 206 with %s: closed, and the fetch goes on as without the probe (a whole GET, decided as usual: here sliced)', async (_n, script, why) => {
    const o = await origin(script);
    const sink = new MemorySink();
    const px = await proxy(o.url, { txlog: new TxLog([sink]) });
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(r.headers['cache-status']).toMatch(/detail=slice/);
    // The whole GET's body is closed unread once it is sliced; the segment is fetched on its own.
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET none', 'GET bytes=4096-8191']);
    await until(() => sink.groups.length === 1);
    const be = (sink.groups[0] as Transaction).children.find((c) => c.type !== 'Request') as Transaction;
    expect(be.records.filter((r) => r.tag === 'Debug').map((r) => r.value)).toEqual([`slicer range probe bytes=4096-8191: ${why} the range asked for; fetched whole`]);
  });

  it('a qualifying 206 of an object the storage rules do not keep (private): fetched whole, not stored; then hit-for-miss fetches go as before', async () => {
    const o = await origin({ headers: { 'cache-control': 'private, max-age=60' } });
    const px = await proxy(o.url);
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET none']);
    expect(px.proxy.stats.slice_req).toBe(0);
    // The key is hit-for-miss now: its fetch forwards the client's Range, so no probe (the HEAD goes first, as before).
    const again = await get(`${px.url}/file`, { range: 'bytes=5000-5099' });
    expect(again.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(o.seen.slice(2)).toEqual(['HEAD none', 'GET bytes=5000-5099']);
  });

  it('a 416 to the probe (the range starts past the end): fetched whole, the client gets the 416 from the stored object', async () => {
    const o = await origin({ len: 7000 });
    const px = await proxy(o.url, { slice: { sizeBytes: SEG, minBytes: 0 } });
    const r = await get(`${px.url}/file`, { range: 'bytes=9000-9099' });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */7000');
    expect(o.seen).toEqual(['GET bytes=8192-12287', 'GET none']);
  });

  it.each<[string, (px: Awaited<ReturnType<typeof proxy>>) => void]>([
    ['a purge', (px) => void px.proxy.purge('/file', new URL(px.url).host)],
    // A ban removes the meta object when it is next looked up: the segment goes with it only if bound to it.
    ['a ban', (px) => void px.proxy.ban('req.url == /file')],
  ])('%s of the meta object removes the segment the probe stored', async (_n, invalidate) => {
    const o = await origin();
    const px = await proxy(o.url);
    expect((await get(`${px.url}/file`, { range: 'bytes=100-199' })).body.equals(BODY.subarray(100, 200))).toBe(true);
    await until(() => px.proxy.store.objectCount === 2);
    invalidate(px);
    const again = await get(`${px.url}/file`, { range: 'bytes=100-199' });
    expect(again.body.equals(BODY.subarray(100, 200))).toBe(true);
    expect(again.headers['cache-status']).toMatch(/fwd=/);
    expect(o.seen).toEqual(['GET bytes=0-4095', 'GET bytes=0-4095']);
    // The new meta object and its segment only: the old segment went with the old meta.
    expect(px.proxy.store.objectCount).toBe(2);
  });

  it('the origin dies mid-206: the client is cut off (no clean end), no segment is stored, the next request fetches it again', async () => {
    const o = await origin({ dieAt: { n: 1, after: 1000 } });
    const px = await proxy(o.url);
    const res = await request(`${px.url}/file`, { headers: { range: 'bytes=4096-8191' } });
    expect(res.statusCode).toBe(206);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
    // The meta object (headers and length, no body) stays; the truncated segment is not kept.
    await until(() => px.proxy.store.objectCount === 1);
    const again = await get(`${px.url}/file`, { range: 'bytes=4096-8191' });
    expect(again.status).toBe(206);
    expect(again.body.equals(BODY.subarray(4096, 8192))).toBe(true);
    expect(o.seen).toEqual(['GET bytes=4096-8191', 'GET bytes=4096-8191']);
    expect(px.proxy.store.objectCount).toBe(2);
  });

  it.each<[string, Record<string, string>, Omit<ProxyOptions<Record<string, unknown>>, 'upstream'>]>([
    ['an If-Range', { 'if-range': '"v1"' }, {}],
    ['an upstreamResponseFilter hook (it may enable or refuse slicing)', {}, { hooks: { upstreamResponseFilter: () => undefined } }],
  ])('with %s, no probe: a HEAD first, as before', async (_n, headers, opts) => {
    const o = await origin();
    const px = await proxy(o.url, opts);
    const r = await get(`${px.url}/file`, { range: 'bytes=5000-5099', ...headers });
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    expect(o.seen).toEqual(['HEAD none', 'GET bytes=4096-8191']);
  });
});
