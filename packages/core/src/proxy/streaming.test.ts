import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, rawGet, startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';

let origin: ScriptedOrigin | undefined;
let px: ProxyHarness | undefined;
const track = useCleanup();

describe('streaming a miss', () => {
  it('delivers the first body byte while the origin is still sending (chunked while length unknown)', async () => {
    const gate = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('first-chunk;');
      await gate.promise;
      res.end('second-chunk');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    let sawFirstBeforeEnd = false;
    const raw = await rawExchange(px.port, 'GET /a HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n', (all) => {
      // The origin is blocked on the gate: everything seen so far was streamed before the fetch ended.
      if (!sawFirstBeforeEnd && all.includes('first-chunk;')) {
        sawFirstBeforeEnd = true;
        expect(all.includes('second-chunk')).toBe(false);
        gate.resolve();
      }
    });
    expect(sawFirstBeforeEnd).toBe(true);
    const res = parseRawResponse(raw);
    expect(res.status).toBe(200);
    expect(res.chunked).toBe(true);
    expect(res.headers['content-length']).toBeUndefined();
    expect(res.terminated).toBe(true);
    expect(res.body.toString()).toBe('first-chunk;second-chunk');
    expect(res.headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; stored; ttl=60');
  });

  it('forwards the origin Content-Length while streaming, and a hit on the complete object gets Content-Length', async () => {
    const gate = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '20' });
      res.write('0123456789');
      await gate.promise;
      res.end('abcdefghij');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const raw = await rawExchange(px.port, 'GET /cl HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n', (all) => {
      if (all.includes('0123456789')) gate.resolve();
    });
    const miss = parseRawResponse(raw);
    expect(miss.headers['content-length']).toBe('20');
    expect(miss.headers['transfer-encoding']).toBeUndefined();
    expect(miss.body.toString()).toBe('0123456789abcdefghij');

    const hit = await rawGet(px.port, '/cl');
    expect(hit.headers['content-length']).toBe('20');
    expect(hit.headers['transfer-encoding']).toBeUndefined();
    expect(hit.body.toString()).toBe('0123456789abcdefghij');
    expect(hit.headers['cache-status']).toMatch(/^sluice; hit; ttl=\d+$/);
    expect(origin.count).toBe(1);
  });

  it('a hit on an object fetched chunked gets Content-Length once it is complete', async () => {
    origin = await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('aaa');
      res.end('bbb');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const miss = await rawGet(px.port, '/c');
    expect(miss.body.toString()).toBe('aaabbb');
    const hit = await rawGet(px.port, '/c');
    expect(hit.chunked).toBe(false);
    expect(hit.headers['content-length']).toBe('6');
    expect(hit.body.toString()).toBe('aaabbb');
    expect(px.proxy.stats.cache_hit).toBe(1);
  });

  it('a hit on an object still streaming reads the body as it grows', async () => {
    const gate = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('part1;');
      await gate.promise;
      res.end('part2');
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const first = request(`${px.url}/grow`, { headers: { host: 'test.local' } });
    const firstRes = await first;
    // The object is in the cache and streaming: a second client gets it as a hit and sees part1 right away.
    let secondSawPart1 = false;
    const second = rawExchange(px.port, 'GET /grow HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n', (all) => {
      if (!secondSawPart1 && all.includes('part1;')) {
        secondSawPart1 = true;
        gate.resolve();
      }
    });
    expect(await firstRes.body.text()).toBe('part1;part2');
    const s = parseRawResponse(await second);
    expect(secondSawPart1).toBe(true);
    expect(s.body.toString()).toBe('part1;part2');
    expect(s.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin.count).toBe(1);
  });

  it('with doStream off the body is fetched whole before the client gets headers', async () => {
    const gate = deferred();
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('x'.repeat(100));
      await gate.promise;
      res.end('y'.repeat(100));
    });
    track(origin);
    px = await startProxy(origin.url, {
      hooks: {
        upstreamResponseFilter(beresp) {
          beresp.doStream = false;
          return undefined;
        },
      },
    });
    track(px);
    let bytesBeforeGate = 0;
    const pending = rawExchange(px.port, 'GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', (all) => {
      bytesBeforeGate = all.length;
    });
    // Wait until the origin has been asked and sent its first part; the client must still have nothing.
    while (origin.count === 0 || px.proxy.stats.s_beresp_bodybytes < 100) await new Promise((r) => setImmediate(r));
    expect(bytesBeforeGate).toBe(0);
    gate.resolve();
    const res = parseRawResponse(await pending);
    expect(res.headers['content-length']).toBe('200');
    expect(res.body.length).toBe(200);
  });
});

describe('origin dies mid-body', () => {
  it('cuts off a streamed chunked client: no terminating chunk, and nothing is cached', async () => {
    origin = await startScriptedOrigin(async (_req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      if (n === 1) {
        res.write('partial');
        await new Promise((r) => setTimeout(r, 20));
        res.socket?.destroy();
      } else {
        res.end('complete');
      }
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const cut = await rawGet(px.port, '/f');
    expect(cut.status).toBe(200);
    expect(cut.chunked).toBe(true);
    expect(cut.body.toString()).toBe('partial');
    expect(cut.terminated).toBe(false);
    const again = await rawGet(px.port, '/f');
    expect(again.body.toString()).toBe('complete');
    expect(origin.count).toBe(2);
    expect(px.proxy.stats.fetch_failed).toBe(1);
  });

  it('cuts off a Content-Length client before the announced length', async () => {
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '1000' });
      res.write('z'.repeat(300));
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const cut = await rawGet(px.port, '/g');
    expect(cut.headers['content-length']).toBe('1000');
    expect(cut.body.length).toBe(300);
    await rawGet(px.port, '/g');
    expect(origin.count).toBe(2);
  });

  it('answers 503 to a buffered (doStream off) client and stores nothing', async () => {
    origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('partial');
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
    });
    track(origin);
    px = await startProxy(origin.url, {
      hooks: { upstreamResponseFilter: (b) => void (b.doStream = false) },
    });
    track(px);
    const r = await rawGet(px.port, '/h');
    expect(r.status).toBe(503);
    expect(r.body.toString()).not.toContain('partial');
    const r2 = await rawGet(px.port, '/h');
    expect(r2.status).toBe(503);
    expect(origin.count).toBe(2);
  });

  it('a large complete object leaves as one corked writev, with Content-Length or chunked as the policy says', async () => {
    const body = Buffer.alloc(600 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    origin = await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.length) });
      // Several writes: the object is held as several chunks (it is too large to be joined).
      for (let off = 0; off < body.length; off += 100 * 1024) res.write(body.subarray(off, off + 100 * 1024));
      res.end();
    });
    track(origin);
    px = await startProxy(origin.url, {
      hooks: {
        responseFilter(resp, req) {
          if (req.url.endsWith('chunked')) delete resp.headers['content-length'];
        },
      },
    });
    track(px);
    await rawGet(px.port, '/big?chunked');
    const chunked = await rawGet(px.port, '/big?chunked');
    expect(chunked.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(chunked.chunked).toBe(true);
    expect(chunked.terminated).toBe(true);
    expect(chunked.body.equals(body)).toBe(true);
    await rawGet(px.port, '/big?cl');
    const cl = await rawGet(px.port, '/big?cl');
    expect(cl.headers['content-length']).toBe(String(body.length));
    expect(cl.body.equals(body)).toBe(true);
    // A condition that does not match takes the planned delivery path, which sends the same complete chunks.
    const planned = await rawGet(px.port, '/big?cl', { 'if-none-match': '"nope"' });
    expect(planned.status).toBe(200);
    expect(planned.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(planned.body.equals(body)).toBe(true);
  });
});
