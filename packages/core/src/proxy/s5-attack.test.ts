import { existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { FileSink } from '../txlog/file-sink.js';
import { TxLog } from '../txlog/txlog.js';
import { rawExchange, parseRawResponse, startProxy, startRawOrigin, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Session 5 attack: the speed changes (data-event pump, transit pause, sendBody queueing, synchronous driver, head
 * search, 16 KiB join, range probe, txlog worker) attacked from outside. Real loopback origins, real sockets.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('async hooks before the pump listens', () => {
  for (const split of [false, true]) {
    it(`an upstreamResponseFilter that resolves after 50 ms, origin body sent ${split ? 'in two parts' : 'with the head'}: the miss and the later hit are byte-exact`, async () => {
      const body = pattern(200 * 1024);
      const origin = track(
        await startRawOrigin((s) => {
          const head = Buffer.from(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
          if (!split) s.write(Buffer.concat([head, body]));
          else {
            s.write(Buffer.concat([head, body.subarray(0, 1000)]));
            setTimeout(() => s.write(body.subarray(1000)), 10);
          }
        }),
      );
      const px = track(
        await startProxy(origin.url, {
          hooks: {
            upstreamResponseFilter: () => new Promise((r) => setTimeout(() => r(undefined), 50)),
          },
        }),
      );
      const miss = await request(`${px.url}/a`);
      const got = Buffer.from(await miss.body.arrayBuffer());
      expect(miss.statusCode).toBe(200);
      expect(got.length).toBe(body.length);
      expect(got.equals(body)).toBe(true);
      const hit = await request(`${px.url}/a`);
      const got2 = Buffer.from(await hit.body.arrayBuffer());
      expect(got2.equals(body)).toBe(true);
      expect(origin.count).toBe(1);
      expect(uncaught).toEqual([]);
    });
  }
});

/** A raw client: sends `req`, paused until `resume()`; collects everything; `done` resolves at close with how it ended. */
function rawClient(port: number, req: string) {
  const sock = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  sock.on('error', () => undefined);
  sock.on('data', (d: Buffer) => chunks.push(d));
  const done = new Promise<Buffer>((r) => sock.once('close', () => r(Buffer.concat(chunks))));
  sock.write(req);
  track({ close: async () => void sock.destroy() });
  return { sock, done, get bytes() { return chunks.reduce((n, c) => n + c.length, 0); } };
}

function headEnd(b: Buffer): number {
  return b.indexOf('\r\n\r\n') + 4;
}

describe('origins that lie about Content-Length on a miss', () => {
  it('longer than sent (the origin closes early): the client is cut, nothing is cached, the next request is fetched again and whole', async () => {
    const body = pattern(100_000);
    const origin = track(
      await startRawOrigin((s) => {
        if (origin.count === 1) {
          s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length + 5000}\r\n\r\n`);
          s.end(body);
        } else {
          s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
          s.write(body);
        }
      }),
    );
    const px = track(await startProxy(origin.url));
    const first = await rawClient(px.port, 'GET /l HTTP/1.1\r\nHost: x\r\n\r\n').done;
    // Framed by the lie: whatever the client got, it is never a complete response of the advertised length.
    const h = first.subarray(0, headEnd(first)).toString('latin1');
    if (/content-length: (\d+)/i.test(h)) expect(first.length - headEnd(first)).toBeLessThan(Number(/content-length: (\d+)/i.exec(h)?.[1]));
    const again = await request(`${px.url}/l`);
    expect(Buffer.from(await again.body.arrayBuffer()).equals(body)).toBe(true);
    expect(origin.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('shorter than sent (extra bytes after the body on a kept-alive connection): the object is the advertised bytes; the next miss on that origin is clean', async () => {
    const body = pattern(50_000);
    const origin = track(
      await startRawOrigin((s, head) => {
        if (head.startsWith('GET /short')) {
          s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 30000\r\n\r\n`);
          s.write(body);
        } else {
          s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello`);
        }
      }),
    );
    const px = track(await startProxy(origin.url));
    const a = await request(`${px.url}/short`);
    expect(Buffer.from(await a.body.arrayBuffer()).equals(body.subarray(0, 30000))).toBe(true);
    const hit = await request(`${px.url}/short`);
    expect(Buffer.from(await hit.body.arrayBuffer()).equals(body.subarray(0, 30000))).toBe(true);
    const other = await request(`${px.url}/other`);
    expect(other.statusCode).toBe(200);
    expect(await other.body.text()).toBe('hello');
    expect(uncaught).toEqual([]);
  });
});

describe('origin dies mid-body while clients wait', () => {
  it('an unstored object, the one client paused (the pump paused on the transit buffer): the client is cut, never a clean end; the proxy serves on', async () => {
    const total = 20 * 1024 * 1024;
    let sent = 0;
    const origin = track(
      await startRawOrigin((s, head) => {
        if (!head.startsWith('GET /die')) return void s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: ${total}\r\n\r\n`);
        const chunk = Buffer.alloc(64 * 1024, 'd');
        const more = (): void => {
          while (sent < 6 * 1024 * 1024) {
            sent += chunk.length;
            if (!s.write(chunk)) return void s.once('drain', more);
          }
          setTimeout(() => s.destroy(), 50);
        };
        more();
      }),
    );
    const px = track(await startProxy(origin.url, { transitBytes: 256 * 1024 }));
    const c = rawClient(px.port, 'GET /die HTTP/1.1\r\nHost: x\r\n\r\n');
    c.sock.pause();
    await until(() => px.proxy.stats.s_beresp_bodybytes > 256 * 1024);
    await new Promise((r) => setTimeout(r, 200));
    c.sock.resume();
    const got = await c.done;
    expect(got.subarray(0, 15).toString()).toBe('HTTP/1.1 200 OK');
    expect(got.length - headEnd(got)).toBeLessThan(total);
    const ok = await request(`${px.url}/fine`);
    expect(await ok.body.text()).toBe('ok');
    expect(uncaught).toEqual([]);
  });

  it('a cacheable object read by two coalesced clients, one paused: both are cut, nothing stays cached, the next request refetches', async () => {
    const body = pattern(3 * 1024 * 1024);
    const origin = track(
      await startRawOrigin((s) => {
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
        if (origin.count === 1) {
          s.write(body.subarray(0, 1024 * 1024));
          setTimeout(() => s.destroy(), 100);
        } else s.write(body);
      }),
    );
    const px = track(await startProxy(origin.url));
    const a = rawClient(px.port, 'GET /co HTTP/1.1\r\nHost: x\r\n\r\n');
    const b = rawClient(px.port, 'GET /co HTTP/1.1\r\nHost: x\r\n\r\n');
    b.sock.pause();
    const ga = await a.done;
    b.sock.resume();
    const gb = await b.done;
    for (const g of [ga, gb]) {
      expect(g.subarray(0, 15).toString()).toBe('HTTP/1.1 200 OK');
      expect(g.length - headEnd(g)).toBeLessThan(body.length);
      expect(g.subarray(headEnd(g)).equals(body.subarray(0, g.length - headEnd(g)))).toBe(true);
    }
    const again = await request(`${px.url}/co`);
    expect(Buffer.from(await again.body.arrayBuffer()).equals(body)).toBe(true);
    expect(origin.count).toBe(2);
    expect(uncaught).toEqual([]);
  });
});

/** An origin streaming `total` bytes as fast as its socket drains; `written` counts bytes the origin wrote. */
async function streamingOrigin(total: number, headers: string) {
  const st = { written: 0, closed: 0 };
  const o = track(
    await startRawOrigin((s) => {
      s.once('close', () => st.closed++);
      s.write(`HTTP/1.1 200 OK\r\n${headers}Content-Length: ${total}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 'z');
      const more = (): void => {
        while (st.written < total && !s.destroyed) {
          st.written += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', more);
        }
      };
      more();
    }),
  );
  return { o, st };
}

describe('clients that stop reading or leave', () => {
  it('a client that stops reading a 50 MiB unstored miss: the origin is read no further than the transit buffer plus socket buffers', async () => {
    const { o, st } = await streamingOrigin(50 * 1024 * 1024, 'Cache-Control: no-store\r\n');
    const px = track(await startProxy(o.url, { transitBytes: 1024 * 1024 }));
    const c = rawClient(px.port, 'GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    c.sock.pause();
    await until(() => px.proxy.stats.s_beresp_bodybytes > 1024 * 1024);
    // Let it settle: whatever the proxy takes, it takes within this time.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 25));
    const taken = px.proxy.stats.s_beresp_bodybytes;
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 25));
    expect(px.proxy.stats.s_beresp_bodybytes).toBe(taken);
    // transit (1 MiB) + the 256 KiB sendBody queue + one chunk + what the loopback's kernel buffers hold on both
    // ends of the client connection (several MiB, not the proxy's memory): bounded, far below 50 MiB.
    expect(taken).toBeLessThan(16 * 1024 * 1024);
    let queued = 0;
    for (const conn of px.proxy.server.connections) queued += conn.socket.writableLength;
    expect(queued).toBeLessThan(1024 * 1024);
    expect(st.written).toBeLessThan(50 * 1024 * 1024);
    c.sock.destroy();
    const ok = await rawClient(px.port, 'GET /big HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n');
    ok.sock.resume();
    expect((await ok.done).toString('latin1')).toMatch(/^HTTP\/1\.1 20[06]/);
    expect(uncaught).toEqual([]);
  });

  it('a client that stops reading a 50 MiB stored miss: the fetch fills the store (not the client socket), a second client gets it whole', async () => {
    const total = 50 * 1024 * 1024;
    const { o } = await streamingOrigin(total, 'Cache-Control: max-age=60\r\n');
    const px = track(await startProxy(o.url));
    // The Host undici sends, so the second client's request has the same cache key.
    const c = rawClient(px.port, `GET /stored HTTP/1.1\r\nHost: 127.0.0.1:${px.port}\r\n\r\n`);
    c.sock.pause();
    await until(() => px.proxy.stats.s_beresp_bodybytes >= total);
    let queued = 0;
    for (const conn of px.proxy.server.connections) queued += conn.socket.writableLength;
    expect(queued).toBeLessThan(1024 * 1024);
    const second = await request(`${px.url}/stored`);
    let n = 0;
    for await (const chunk of second.body) n += (chunk as Buffer).length;
    expect(second.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(n).toBe(total);
    expect(o.count).toBe(1);
    c.sock.destroy();
    expect(uncaught).toEqual([]);
  });

  it('a pass whose client leaves mid-body: the origin connection is dropped', async () => {
    const { o, st } = await streamingOrigin(50 * 1024 * 1024, 'Cache-Control: private\r\n');
    const px = track(await startProxy(o.url));
    const c = rawClient(px.port, 'GET /pass HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => c.bytes > 2 * 1024 * 1024);
    c.sock.destroy();
    await until(() => st.closed === 1);
    expect(st.written).toBeLessThan(50 * 1024 * 1024);
    expect(uncaught).toEqual([]);
  });
});

describe('pipelined hits on both sides of the 16 KiB join, then a malformed request', () => {
  it('every response byte-exact and in order, then a 400, then the connection closes', async () => {
    const small = pattern(10 * 1024);
    const big = pattern(20 * 1024).reverse();
    const origin = track(
      await startRawOrigin((s, head) => {
        const b = head.startsWith('GET /small') ? small : big;
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${b.length}\r\n\r\n`);
        s.write(b);
      }),
    );
    const px = track(await startProxy(origin.url));
    for (const p of ['/small', '/big']) await (await request(`${px.url}${p}`)).body.arrayBuffer();
    const order = ['/small', '/big', '/big', '/small', '/small', '/big'];
    // The Host undici sent with the warm-up requests: the same cache keys.
    const reqs = order.map((p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${px.port}\r\n\r\n`).join('') + 'GET /x HTTP/1.1\r\nHost x\r\n\r\n';
    const raw = await rawExchange(px.port, reqs);
    let at = 0;
    for (const p of order) {
      const he = raw.indexOf('\r\n\r\n', at) + 4;
      const head = raw.subarray(at, he).toString('latin1');
      expect(head).toMatch(/^HTTP\/1\.1 200 /);
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1]);
      const want = p === '/small' ? small : big;
      expect(len).toBe(want.length);
      expect(raw.subarray(he, he + len).equals(want)).toBe(true);
      at = he + len;
    }
    expect(raw.subarray(at).toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
    expect(origin.count).toBe(2);
  });
});

describe('heads at maxHeadBytes with non-ASCII bytes', () => {
  it('a head of exactly maxHeadBytes bytes, UTF-8 in a header value, is served; one byte more is 431', async () => {
    const origin = track(
      await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok')),
    );
    // The proxy's server keeps the default maxHeadBytes, 64 KiB.
    const px = track(await startProxy(origin.url));
    const MAX = 64 * 1024;
    const prefix = Buffer.from('GET /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-U: ', 'latin1');
    const headOf = (end: number): Buffer => {
      const fill = Buffer.alloc(end - prefix.length);
      for (let i = 0; i + 1 < fill.length; i += 2) fill.set([0xc3, 0xa9], i);
      if (fill.length % 2 === 1) fill[fill.length - 1] = 0x79;
      return Buffer.concat([prefix, fill, Buffer.from('\r\n\r\n')]);
    };
    expect(headOf(MAX).indexOf('\r\n\r\n')).toBe(MAX);
    const ok = (await rawExchange(px.port, headOf(MAX))).toString('latin1');
    const over = (await rawExchange(px.port, headOf(MAX + 1))).toString('latin1');
    expect(ok).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nok$/);
    expect(over).toMatch(/^HTTP\/1\.1 431 /);
  });
});

describe('the range probe against lying origins', () => {
  const SEG = 4096;
  const BODY = pattern(10_000);
  /** A raw origin answering Range GETs with 206s; `lie(n, start, end)` may change what request n gets. */
  async function rangeOrigin(lie: (n: number, s: net.Socket, start: number, end: number, method: string) => boolean) {
    const seen: string[] = [];
    const o = track(
      await startRawOrigin((s, head) => {
        const method = head.slice(0, head.indexOf(' '));
        const m = /\r\nrange: bytes=(\d+)-(\d+)/i.exec(head);
        seen.push(`${method} ${m === null ? 'none' : `${m[1]}-${m[2]}`}`);
        const base = 'Cache-Control: max-age=60\r\nETag: "v1"\r\n';
        if (m === null) {
          s.write(`HTTP/1.1 200 OK\r\n${base}Content-Length: ${BODY.length}\r\n\r\n`);
          if (method !== 'HEAD') s.write(BODY);
          return;
        }
        const start = Number(m[1]);
        const end = Math.min(BODY.length - 1, Number(m[2]));
        if (lie(seen.length, s, start, end, method)) return;
        s.write(`HTTP/1.1 206 Partial Content\r\n${base}Content-Range: bytes ${start}-${end}/${BODY.length}\r\nContent-Length: ${end - start + 1}\r\n\r\n`);
        if (method !== 'HEAD') s.write(BODY.subarray(start, end + 1));
      }),
    );
    return { o, seen };
  }
  const slicing = { slice: { sizeBytes: SEG, minBytes: 8000 } };

  /** GET through the proxy; `cut` when the response did not end cleanly. */
  async function get(url: string, headers: Record<string, string> = {}) {
    const r = await request(url, { headers });
    try {
      return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()), cut: false };
    } catch {
      return { status: r.statusCode, headers: r.headers, body: Buffer.alloc(0), cut: true };
    }
  }

  it('a 206 whose Content-Length is longer than what is sent (the origin closes): the client is cut, nothing wrong is kept, later reads are byte-exact', async () => {
    const { o } = await rangeOrigin((n, s, start, end) => {
      if (n !== 1) return false;
      s.write(`HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nETag: "v1"\r\nContent-Range: bytes ${start}-${end}/${BODY.length}\r\nContent-Length: ${end - start + 1}\r\n\r\n`);
      s.end(BODY.subarray(start, start + 1000));
      return true;
    });
    const px = track(await startProxy(o.url, slicing));
    const first = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
    if (!first.cut) expect(first.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    const again = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
    expect(again.cut).toBe(false);
    expect(again.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    const whole = await get(`${px.url}/f`);
    expect(whole.cut).toBe(false);
    expect(whole.body.equals(BODY)).toBe(true);
    expect(uncaught).toEqual([]);
  });

  it.each([1, 2])('a 206 whose Content-Length is shorter than its Content-Range (origin request %i: the probe, a segment fetch): never kept as the segment; later reads are byte-exact or cut, never wrong', async (liar) => {
    const { o, seen: seen2 } = await rangeOrigin((n, s, start, end) => {
      if (n !== liar) return false;
      s.write(`HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nETag: "v1"\r\nContent-Range: bytes ${start}-${end}/${BODY.length}\r\nContent-Length: 100\r\n\r\n`);
      s.write(BODY.subarray(start, start + 100));
      return true;
    });
    // Segment fetches one by one (runs off, the default before session 8): the assertions count them.
    const px = track(await startProxy(o.url, { slice: { ...slicing.slice, runs: false } }));
    const first = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
    if (!first.cut && first.status === 206) expect(first.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    // The whole object: segment 0 is the second origin request.
    const w0 = await get(`${px.url}/f`);
    if (!w0.cut) expect(w0.body.equals(BODY)).toBe(true);
    for (let i = 0; i < 2; i++) {
      const r = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
      if (!r.cut) expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
      const whole = await get(`${px.url}/f`);
      if (!whole.cut) expect(whole.body.equals(BODY)).toBe(true);
    }
    const last = await get(`${px.url}/f`);
    expect(last.cut).toBe(false);
    expect(last.body.equals(BODY)).toBe(true);
    // The lying segment was not kept: it was asked for again.
    const liarRange = liar === 1 ? 'GET 4096-8191' : 'GET 0-4095';
    expect(seen2.filter((x) => x === liarRange).length).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('the Content-Range total changes between segments under the same ETag: never a clean response with wrong bytes', async () => {
    const BIG = Buffer.concat([BODY, pattern(10_000).reverse()]);
    const { o } = await rangeOrigin((n, s, start, end) => {
      if (n === 1) return false;
      // Later segments: the object is now 20000 bytes, same ETag (a broken origin).
      const e = Math.min(BIG.length - 1, start + SEG - 1);
      s.write(`HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=60\r\nETag: "v1"\r\nContent-Range: bytes ${start}-${e}/${BIG.length}\r\nContent-Length: ${e - start + 1}\r\n\r\n`);
      s.write(BIG.subarray(start, e + 1));
      void end;
      return true;
    });
    const px = track(await startProxy(o.url, slicing));
    const first = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
    expect(first.cut).toBe(false);
    expect(first.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    const whole = await get(`${px.url}/f`);
    // A 503 (the segment does not fit the meta object) or a cut are right; a clean 200 must hold one object's bytes.
    if (!whole.cut && whole.status === 200) {
      const len = Number(whole.headers['content-length']);
      expect(whole.body.length).toBe(len);
      expect(whole.body.equals(BODY) || whole.body.equals(BIG)).toBe(true);
    }
    const after = await request(`${px.url}/other-thing`);
    await after.body.arrayBuffer();
    expect(uncaught).toEqual([]);
  });

  it('a cold HEAD with a Range: no probe body to keep; a later GET of the range is byte-exact', async () => {
    const { o, seen } = await rangeOrigin(() => false);
    const px = track(await startProxy(o.url, slicing));
    const h = await request(`${px.url}/f`, { method: 'HEAD', headers: { range: 'bytes=5000-5099' } });
    await h.body.arrayBuffer();
    expect([200, 206]).toContain(h.statusCode);
    const r = await get(`${px.url}/f`, { range: 'bytes=5000-5099' });
    expect(r.cut).toBe(false);
    expect(r.status).toBe(206);
    expect(r.body.equals(BODY.subarray(5000, 5100))).toBe(true);
    const whole = await get(`${px.url}/f`);
    expect(whole.body.equals(BODY)).toBe(true);
    expect(seen.length).toBeGreaterThan(0);
    expect(uncaught).toEqual([]);
  });
});

describe('--log-file, the file going bad mid-run', () => {
  async function serveWithSink(sink: FileSink, n: number): Promise<void> {
    const origin = track(await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok')));
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    for (let i = 0; i < n; i++) {
      const r = await request(`${px.url}/x${i % 3}`);
      expect(r.statusCode).toBe(200);
      expect(await r.body.text()).toBe('ok');
      sink.flush();
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it.runIf(existsSync('/dev/full'))('a full disk (/dev/full: every write ENOSPC): reported once, the proxy serves on', async () => {
    const errors: string[] = [];
    const sink = new FileSink(openSync('/dev/full', 'w'), 'ndjson', 'request', (code) => errors.push(code));
    track({ close: () => sink.close() });
    await serveWithSink(sink, 6);
    await until(() => errors.length > 0);
    expect(errors).toEqual(['ENOSPC']);
    expect(uncaught).toEqual([]);
  });

  it('the log file\'s directory removed mid-run: the proxy serves on and the sink closes', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-attack-log-'));
    const errors: string[] = [];
    const sink = new FileSink(openSync(path.join(dir, 'x.log'), 'a'), 'text', 'request', (code) => errors.push(code));
    await serveWithSink(sink, 2);
    rmSync(dir, { recursive: true, force: true });
    await serveWithSink(sink, 4);
    await sink.close();
    // The open descriptor still names the (unlinked) file: no error to report, nothing thrown.
    expect(errors).toEqual([]);
    expect(uncaught).toEqual([]);
  });
});
