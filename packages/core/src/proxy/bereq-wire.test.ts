import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { fixtureBody, headerNames, rawHeader, startScriptedOrigin, type OriginHandler } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, useCleanup } from '../test-support/harness.js';

/**
 * What the origin received from Sluice (fetch/bereq.ts), read from the origin's own record of the request: a miss
 * fetches the whole object (no Range, no conditionals from the client), a pass forwards them.
 */
const track = useCleanup();
const BODY = fixtureBody(100);

/** An origin that honours a single Range (206) and If-None-Match (304), as real ones do: so a forwarded one shows. */
const rangeOrigin: OriginHandler = (req, res) => {
  const cc = req.url?.startsWith('/pass') === true ? 'private' : 'max-age=60';
  const head = { 'cache-control': cc, etag: '"b100"', 'accept-ranges': 'bytes' };
  if (req.headers['if-none-match'] === '"b100"') return void res.writeHead(304, head).end();
  const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
  if (m !== null) {
    const [a, b] = [Number(m[1]), Number(m[2])];
    res.writeHead(206, { ...head, 'content-range': `bytes ${a}-${b}/100`, 'content-length': String(b - a + 1) });
    return void res.end(BODY.subarray(a, b + 1));
  }
  res.writeHead(200, { ...head, 'content-length': '100' });
  res.end(BODY);
};

const get = (port: number, path: string, lines: string[]) =>
  rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: t\r\n${lines.map((l) => `${l}\r\n`).join('')}Connection: close\r\n\r\n`).then(parseRawResponse);

describe('the backend request of a miss', () => {
  it("a cacheable miss with Range: the origin is asked for the whole object, the client gets its range from it", async () => {
    const origin = track(await startScriptedOrigin(rangeOrigin));
    const px = track(await startProxy(origin.url));
    const r = await get(px.port, '/obj', ['Range: bytes=10-19', 'X-Keep: 1']);
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 10-19/100');
    expect(r.body).toEqual(BODY.subarray(10, 20));
    expect(origin.count).toBe(1);
    const seen = origin.requests[0]!;
    expect(seen).toMatchObject({ method: 'GET', target: '/obj' });
    expect(rawHeader(seen, 'range')).toEqual([]);
    expect(rawHeader(seen, 'x-keep')).toEqual(['1']);
    // The whole object was stored: a plain GET is a hit with all 100 bytes.
    const full = await request(`${px.url}/obj`, { headers: { host: 't' } });
    expect(full.statusCode).toBe(200);
    expect(Buffer.from(await full.body.arrayBuffer())).toEqual(BODY);
    expect(full.headers['cache-status']).toMatch(/; hit(;|$)/);
    expect(origin.count).toBe(1);
  });

  it('a cacheable miss with conditionals and If-Range: none of them reaches the origin, the client gets its 304', async () => {
    const origin = track(await startScriptedOrigin(rangeOrigin));
    const px = track(await startProxy(origin.url));
    const r = await get(px.port, '/cond', ['If-None-Match: "b100"', 'If-Modified-Since: Sat, 21 Nov 2026 10:00:00 GMT', 'If-Range: "b100"', 'Range: bytes=0-9']);
    expect(r.status).toBe(304);
    const names = headerNames(origin.requests[0]!).map((n) => n.toLowerCase());
    for (const h of ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']) expect(names).not.toContain(h);
    // What was fetched is the whole object: the next request is a hit with the full body.
    const full = await get(px.port, '/cond', []);
    expect(full.status).toBe(200);
    expect(full.body).toEqual(BODY);
    expect(origin.count).toBe(1);
  });

  it("a pass forwards the client's Range as sent, and relays the origin's 206", async () => {
    const origin = track(await startScriptedOrigin(rangeOrigin));
    const px = track(await startProxy(origin.url));
    const r = await get(px.port, '/pass', ['Range: bytes=0-3', 'Cookie: a=1']);
    expect(r.status).toBe(206);
    expect(r.body).toEqual(BODY.subarray(0, 4));
    expect(rawHeader(origin.requests[0]!, 'range')).toEqual(['bytes=0-3']);
  });
});
