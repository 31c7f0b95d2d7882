import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startScriptedOrigin, twoPartHandler, type ScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, until, useCleanup, type ProxyHarness } from '../test-support/harness.js';

const track = useCleanup();
const BODY = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'); // 36 bytes

async function cachedSetup(drop: readonly string[] = []): Promise<{ origin: ScriptedOrigin; px: ProxyHarness }> {
  const origin = track(
    await startScriptedOrigin((req, res) => {
      const head: Record<string, string> = {
        'cache-control': 'max-age=60',
        'content-type': 'text/plain',
        etag: '"v1"',
        'last-modified': 'Sat, 21 Nov 2026 10:00:00 GMT',
        date: new Date().toUTCString(),
        'content-length': String(BODY.length),
      };
      for (const k of drop) delete head[k];
      // node adds a Date of its own unless told not to.
      res.sendDate = false;
      res.writeHead(200, head);
      res.end(req.method === 'HEAD' ? undefined : BODY);
    }),
  );
  const px = track(await startProxy(origin.url));
  // Warm the cache.
  await (await request(`${px.url}/r`, { headers: { host: 't' } })).body.text();
  return { origin, px };
}

function get(px: ProxyHarness, headers: Record<string, string>, method = 'GET'): Promise<ReturnType<typeof parseRawResponse>> {
  let req = `${method} /r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
  return rawExchange(px.port, `${req}\r\n`).then(parseRawResponse);
}

describe('ranges on a complete cached object (RFC 9110 §14)', () => {
  it.each([
    ['single', 'bytes=0-9', 'bytes 0-9/36', '0123456789'],
    ['open-ended', 'bytes=30-', 'bytes 30-35/36', 'uvwxyz'],
    ['suffix', 'bytes=-4', 'bytes 32-35/36', 'wxyz'],
    ['last-pos past the end', 'bytes=34-100', 'bytes 34-35/36', 'yz'],
  ])('%s range gets 206 with exactly those bytes', async (_n, range, cr, body) => {
    const { px, origin } = await cachedSetup();
    const r = await get(px, { range });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(cr);
    expect(r.headers['content-length']).toBe(String(body.length));
    expect(r.body.toString()).toBe(body);
    expect(r.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin.count).toBe(1);
  });

  it('several ranges get multipart/byteranges with a correct length', async () => {
    const { px } = await cachedSetup();
    const r = await get(px, { range: 'bytes=0-1, 10-11, 1-2' });
    expect(r.status).toBe(206);
    const m = /^multipart\/byteranges; boundary=(.+)$/.exec(r.headers['content-type'] ?? '');
    expect(m).not.toBeNull();
    const b = m?.[1] ?? '';
    expect(r.body.length).toBe(Number(r.headers['content-length']));
    expect(r.body.toString()).toBe(
      `--${b}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-2/36\r\n\r\n012` +
        `\r\n--${b}\r\ncontent-type: text/plain\r\ncontent-range: bytes 10-11/36\r\n\r\nab\r\n--${b}--\r\n`,
    );
  });

  it('an unsatisfiable range gets 416 with bytes */length', async () => {
    const { px } = await cachedSetup();
    const r = await get(px, { range: 'bytes=36-40' });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */36');
    expect(r.body.length).toBe(0);
  });

  it.each([
    ['invalid syntax', { range: 'bytes=9-1' }],
    ['another unit', { range: 'items=0-1' }],
    ['too many ranges', { range: Array.from({ length: 20 }, (_, i) => `${i}-${i}`).join(',').replace(/^/, 'bytes=') }],
    ['If-Range with another etag', { range: 'bytes=0-1', 'if-range': '"v0"' }],
  ])('%s: the Range is ignored and the whole body sent', async (_n, h) => {
    const { px } = await cachedSetup();
    const r = await get(px, h);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe(BODY.toString());
  });

  it('If-Range with the current etag or Last-Modified honours the Range', async () => {
    const { px } = await cachedSetup();
    expect((await get(px, { range: 'bytes=0-1', 'if-range': '"v1"' })).status).toBe(206);
    expect((await get(px, { range: 'bytes=0-1', 'if-range': 'Sat, 21 Nov 2026 10:00:00 GMT' })).status).toBe(206);
  });

  // Mutation run of 2026-12-01 (issue 17). RFC 9110 §13.1.5 and §8.8.2.2: a cache may treat Last-Modified as a
  // strong validator only when its entry has a Date at least a second later; without one, an If-Range date is weak
  // and the whole body is sent (Varnish's vrg_ifrange: "the response needs a Date"). Sluice honoured it before.
  it.each<[string, readonly string[], Record<string, string>]>([
    ['If-Range date on an object without Date', ['date'], { range: 'bytes=0-1', 'if-range': 'Sat, 21 Nov 2026 10:00:00 GMT' }],
    ['If-Range date other than Last-Modified', [], { range: 'bytes=0-1', 'if-range': 'Sat, 21 Nov 2026 10:00:01 GMT' }],
    ['If-Range entity-tag on an object without ETag', ['etag'], { range: 'bytes=0-1', 'if-range': '"v1"' }],
  ])('%s: the Range is ignored and the whole body sent', async (_n, drop, h) => {
    const { px } = await cachedSetup(drop);
    const r = await get(px, h);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe(BODY.toString());
  });

  it('a Range list with empty elements is honoured (RFC 9110 §5.6.1)', async () => {
    const { px } = await cachedSetup();
    const r = await get(px, { range: 'bytes=0-1, ,' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 0-1/36');
    expect(r.body.toString()).toBe('01');
  });

  it('several ranges of an object without Content-Type: the parts name none', async () => {
    const { px } = await cachedSetup(['content-type']);
    const r = await get(px, { range: 'bytes=0-1, 10-11' });
    expect(r.status).toBe(206);
    const b = /boundary=(.+)$/.exec(r.headers['content-type'] ?? '')?.[1] ?? '';
    expect(r.body.toString()).toBe(`--${b}\r\ncontent-range: bytes 0-1/36\r\n\r\n01\r\n--${b}\r\ncontent-range: bytes 10-11/36\r\n\r\nab\r\n--${b}--\r\n`);
    expect(r.body.length).toBe(Number(r.headers['content-length']));
  });

  it('HEAD with a Range gets the 206 head without a body', async () => {
    const { px } = await cachedSetup();
    const r = await get(px, { range: 'bytes=0-9' }, 'HEAD');
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 0-9/36');
    expect(r.headers['content-length']).toBe('10');
    expect(r.body.length).toBe(0);
  });
});

describe('ranges on an object still arriving', () => {
  it('known length: the 206 arrives as soon as the requested bytes did, before the origin finishes', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(twoPartHandler({ 'cache-control': 'max-age=60', 'content-length': '1000' }, Buffer.alloc(500, 97), Buffer.alloc(500, 98), gate.promise)),
    );
    const px = track(await startProxy(origin.url));
    // The object starts streaming (first client), then the range client arrives.
    const first = await request(`${px.url}/big`, { headers: { host: 't' } });
    const r = parseRawResponse(
      await rawExchange(px.port, 'GET /big HTTP/1.1\r\nHost: t\r\nRange: bytes=100-109\r\nConnection: close\r\n\r\n'),
    );
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 100-109/1000');
    expect(r.body.toString()).toBe('aaaaaaaaaa');
    expect(origin.count).toBe(1);
    gate.resolve();
    expect((await first.body.arrayBuffer()).byteLength).toBe(1000);
  });

  it('unknown length: 206 with bytes a-b/* as soon as the bytes arrived', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(twoPartHandler({ 'cache-control': 'max-age=60' }, '0123456789', 'abcdefghij', gate.promise)),
    );
    const px = track(await startProxy(origin.url));
    const first = await request(`${px.url}/c`, { headers: { host: 't' } });
    const r = parseRawResponse(await rawExchange(px.port, 'GET /c HTTP/1.1\r\nHost: t\r\nRange: bytes=2-5\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 2-5/*');
    expect(r.body.toString()).toBe('2345');
    gate.resolve();
    await first.body.text();
  });

  it('unknown length, open-ended: streams from the offset as bytes arrive and ends cleanly with the object', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(twoPartHandler({ 'cache-control': 'max-age=60' }, '0123456789', 'abcdefghij', gate.promise)),
    );
    const px = track(await startProxy(origin.url));
    const first = await request(`${px.url}/o`, { headers: { host: 't' } });
    let sawEarly = false;
    const raw = await rawExchange(px.port, 'GET /o HTTP/1.1\r\nHost: t\r\nRange: bytes=5-\r\nConnection: close\r\n\r\n', (all) => {
      if (!sawEarly && all.includes('56789')) {
        sawEarly = true;
        gate.resolve();
      }
    });
    const r = parseRawResponse(raw);
    expect(sawEarly).toBe(true);
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toMatch(/^bytes 5-\d+\/\*$/);
    expect(r.chunked).toBe(true);
    expect(r.terminated).toBe(true);
    expect(r.body.toString()).toBe('56789abcdefghij');
    await first.body.text();
  });

  it('a range starting past the end of what the object turns out to have gets 416 once the length is known', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(twoPartHandler({ 'cache-control': 'max-age=60' }, '01234', '56789', gate.promise)),
    );
    const px = track(await startProxy(origin.url));
    const first = await request(`${px.url}/s`, { headers: { host: 't' } });
    const pending = rawExchange(px.port, 'GET /s HTTP/1.1\r\nHost: t\r\nRange: bytes=50-60\r\nConnection: close\r\n\r\n');
    await until(() => px.proxy.stats.client_req === 2);
    gate.resolve();
    const r = parseRawResponse(await pending);
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */10');
    await first.body.text();
  });
});

describe('Range on pass', () => {
  it("forwards the client's Range to the origin and relays its 206", async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(206, { 'content-range': 'bytes 0-3/100', 'content-length': '4' });
        res.end(`r=${String(req.headers.range).slice(6, 8)}`);
      }),
    );
    const px = track(await startProxy(origin.url));
    const r = await request(`${px.url}/p`, { headers: { range: 'bytes=0-3', cookie: 'a=1' } });
    expect(r.statusCode).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 0-3/100');
    expect(await r.body.text()).toBe('r=0-');
    expect(origin.requests[0]?.headers.range).toBe('bytes=0-3');
  });
});

describe('conditional requests from clients (RFC 9110 §13, RFC 9111 §4.3.2)', () => {
  it.each([
    ['If-None-Match', { 'if-none-match': '"v1"' }],
    ['If-Modified-Since', { 'if-modified-since': 'Sat, 21 Nov 2026 11:00:00 GMT' }],
  ])('%s matching the cached object gets 304 with validators and no body', async (_n, h) => {
    const { px, origin } = await cachedSetup();
    const r = await get(px, h);
    expect(r.status).toBe(304);
    expect(r.headers['etag']).toBe('"v1"');
    expect(r.headers['content-type']).toBeUndefined();
    expect(r.body.length).toBe(0);
    expect(origin.count).toBe(1);
  });

  it('a condition that does not match gets the full 200', async () => {
    const { px } = await cachedSetup();
    const r = await get(px, { 'if-none-match': '"old"' });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe(BODY.toString());
  });

  it('answers 304 from an object still arriving, and the fetch goes on to fill the cache', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(twoPartHandler({ 'cache-control': 'max-age=60', etag: '"e"' }, 'part;', 'rest', gate.promise)),
    );
    const px = track(await startProxy(origin.url));
    const r = parseRawResponse(await rawExchange(px.port, 'GET /n HTTP/1.1\r\nHost: t\r\nIf-None-Match: "e"\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(304);
    gate.resolve();
    await until(() => px.proxy.stats.s_beresp_bodybytes === 9);
    const full = await request(`${px.url}/n`, { headers: { host: 't' } });
    expect(await full.body.text()).toBe('part;rest');
    expect(full.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin.count).toBe(1);
  });

  it('a 304 answered to a pass request drops the origin connection instead of reading the body', async () => {
    const closed = deferred();
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        req.socket.once('close', () => closed.resolve());
        // This origin ignores conditionals and sends an endless body.
        res.writeHead(200, { etag: '"p"', 'cache-control': 'private' });
        const piece = Buffer.alloc(16 * 1024, 120);
        while (!res.destroyed) if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
      }),
    );
    const px = track(await startProxy(origin.url));
    const r = parseRawResponse(
      await rawExchange(px.port, 'GET /q HTTP/1.1\r\nHost: t\r\nCookie: s=1\r\nIf-None-Match: "p"\r\nConnection: close\r\n\r\n'),
    );
    expect(r.status).toBe(304);
    await closed.promise;
  });
});

describe('transit buffer', () => {
  it('a pass to a stalled client holds at most about transitBytes in the proxy', async () => {
    const origin = track(
      await startScriptedOrigin(async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'private' });
        const piece = Buffer.alloc(64 * 1024, 120);
        while (!res.destroyed) if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
      }),
    );
    const transitBytes = 256 * 1024;
    const px = track(await startProxy(origin.url, { transitBytes }));
    const s = net.connect(px.port, '127.0.0.1');
    s.write('GET /endless HTTP/1.1\r\nHost: t\r\nCookie: s=1\r\n\r\n');
    await new Promise((r) => s.once('data', r));
    s.pause();
    // Fetched minus delivered is what the proxy holds; sample it for many turns of the event loop while the client
    // reads nothing. This origin writes 64 KiB at a time and waits for drain; the bound is the transit buffer plus one
    // such piece (origin reads of up to 256 KiB, from origins that write more at once: s11-attack-reads-flow.test.ts).
    let maxHeld = 0;
    for (let i = 0; i < 3000; i++) {
      await new Promise((r) => setImmediate(r));
      maxHeld = Math.max(maxHeld, px.proxy.stats.s_beresp_bodybytes - px.proxy.stats.s_resp_bodybytes);
    }
    expect(px.proxy.stats.s_beresp_bodybytes).toBeGreaterThan(transitBytes);
    expect(maxHeld).toBeLessThanOrEqual(transitBytes + 64 * 1024);
    s.destroy();
  });
});

describe('a range that has to wait, on an object that is not stored (found by bench/soak)', () => {
  // An 8 MiB chunked body (no Content-Length), uncacheable: the delivery's reader at offset 0 held the fetch to the
  // 1 MiB transit buffer while its plan waited for bytes 5,000,000+ or for the length: no response head, ever.
  it.each([
    ['a range past the transit buffer', 'bytes=5000000-5000099'],
    ['several ranges (need the length)', 'bytes=0-9,100-109'],
    ['a suffix range (needs the length)', 'bytes=-100'],
  ])('%s: the Range is ignored and the whole body is delivered', async (_name, range) => {
    const size = 8 * 1024 * 1024;
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i++) body[i] = i % 251;
    const origin = track(
      await startScriptedOrigin(async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'private' });
        for (let off = 0; off < size && !res.destroyed; off += 64 * 1024) {
          if (!res.write(body.subarray(off, off + 64 * 1024))) await new Promise((r) => res.once('drain', r));
        }
        res.end();
      }),
    );
    const px = track(await startProxy(origin.url));
    const r = await request(`${px.url}/chunked-private`, { headers: { range } });
    expect(r.statusCode).toBe(200);
    const got = Buffer.from(await r.body.arrayBuffer());
    expect(got.length).toBe(size);
    expect(got.equals(body)).toBe(true);
  });
});
