import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, useCleanup } from '../test-support/harness.js';

/**
 * The slicer only stitches segments of one representation (RFC 9110 §15.3.7.3: parts are combined only if they share
 * a strong validator): segments are checked against the meta object's ETag (or Last-Modified without one) where the
 * first needed segment is read, before the head goes out, and again for every later segment, mid-body.
 */
const track = useCleanup();
const SIZE = 4096;
const V1 = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
const V2 = Buffer.from(V1.map((b) => b ^ 0xff));

/** An origin whose object can be replaced (new bytes, new ETag or Last-Modified) between requests; single ranges. */
async function changingOrigin(validator: 'etag' | 'last-modified') {
  let version = 1;
  const origin = track(
    await startScriptedOrigin((req, res) => {
      const body = version === 1 ? V1 : V2;
      const v = validator === 'etag' ? { etag: `"v${version}"` } : { 'last-modified': `Sat, 21 Nov 2026 1${version}:00:00 GMT` };
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m === null) {
        res.writeHead(200, { 'content-length': body.length, 'cache-control': 'max-age=60', ...v });
        return void res.end(body);
      }
      const start = Number(m[1]);
      const end = Math.min(body.length - 1, Number(m[2]));
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${body.length}`, 'cache-control': 'max-age=60', ...v });
      res.end(body.subarray(start, end + 1));
    }),
  );
  return { origin, change: () => void (version = 2) };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers: { host: 't', ...headers } });
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: Buffer.from(await r.body.arrayBuffer()) };
}

describe('slicer: segments of another representation are never stitched in', () => {
  it.each(['etag', 'last-modified'] as const)('a later segment changed (%s): the client is cut after the first segment, never sent mixed bytes; the next request has the new object', async (validator) => {
    const { origin, change } = await changingOrigin(validator);
    const px = track(await startProxy(origin.url, { slice: { sizeBytes: SIZE } }));
    // Meta object and segment 0 cached at v1.
    expect((await get(`${px.url}/f`, { range: 'bytes=0-9' })).body).toEqual(V1.subarray(0, 10));
    change();
    // The whole object: segment 0 (v1, cached) goes out, segment 1 arrives as v2 mid-body.
    const cut = parseRawResponse(await rawExchange(px.port, 'GET /f HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(cut.status).toBe(200);
    expect(cut.headers['content-length']).toBe('10000');
    expect(cut.body.length).toBeLessThan(10_000);
    expect(cut.body).toEqual(V1.subarray(0, cut.body.length));
    // The meta object and its segments were dropped: the next answer is all v2.
    const after = await get(`${px.url}/f`);
    expect(after.status).toBe(200);
    expect(after.body.equals(V2)).toBe(true);
    if (validator === 'etag') expect(after.headers['etag']).toBe('"v2"');
  });

  it('the first needed segment changed: the request starts over and the head names the new ETag with the new bytes', async () => {
    const { origin, change } = await changingOrigin('etag');
    const px = track(await startProxy(origin.url, { slice: { sizeBytes: SIZE } }));
    expect((await get(`${px.url}/f`, { range: 'bytes=0-9' })).headers['etag']).toBe('"v1"');
    change();
    const r = await get(`${px.url}/f`, { range: 'bytes=5000-5009' });
    expect(r.status).toBe(206);
    expect(r.headers['etag']).toBe('"v2"');
    expect(r.body).toEqual(V2.subarray(5000, 5010));
    // And a range over the first segment now comes from the new object as well.
    const first = await get(`${px.url}/f`, { range: 'bytes=0-9' });
    expect([first.headers['etag'], first.body]).toEqual(['"v2"', V2.subarray(0, 10)]);
  });
});
