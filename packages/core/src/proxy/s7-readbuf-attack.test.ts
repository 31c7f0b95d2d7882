import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';
import { MemorySink, TxLog } from '../txlog/txlog.js';
import { Http1Server } from '../http1/server.js';

/**
 * Session 7 attack on the shared client read buffer (http1/read-buffer.ts): every client socket reads into one 64 KiB
 * buffer valid only during its read callback. Many connections read at once here, each with its own byte pattern, so a
 * view kept past the callback shows up as another connection's bytes: request bodies passed to a slow origin,
 * pipelined requests split at every byte, CONNECT bytes sent while the tunnel is still opening.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A deterministic pseudo-random generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/** Connection `i`'s body: bytes no other connection sends at the same offsets. */
function pattern(i: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let j = 0; j < len; j++) b[j] = (i * 37 + j * 13 + (j >> 8)) & 0xff;
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** An origin that reads each request body slowly (paused, one chunk per turn) and answers its sha256 and length. */
async function slowHashOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  const srv = http.createServer((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
      req.pause();
      setImmediate(() => req.resume());
    });
    req.on('end', () => {
      const body = `${n} ${h.digest('hex')}`;
      res.writeHead(200, { 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      srv.closeAllConnections();
      srv.close(() => r());
    }),
  };
}

/** Sends `parts` one per turn of the event loop on a new socket; resolves with everything read until close. */
function sendInParts(port: number, parts: Buffer[], pauseReadingFor = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(got)));
    void (async () => {
      for (const [k, p] of parts.entries()) {
        if (!sock.write(p)) await new Promise((r) => sock.once('drain', r));
        await tick();
        // A client that stops sending for a while mid-body (others keep reading into the shared buffer meanwhile).
        if (pauseReadingFor > 0 && k === Math.floor(parts.length / 2)) for (let t = 0; t < pauseReadingFor; t++) await tick();
      }
    })();
  });
}

/** `b` cut into pieces of 1..max bytes (seeded). */
function cut(b: Buffer, r: () => number, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; ) {
    const n = 1 + Math.floor(r() * max);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

function chunked(body: Buffer, r: () => number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; ) {
    const n = 1 + Math.floor(r() * 5000);
    const c = body.subarray(i, i + n);
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
    i += n;
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

describe('s7 shared read buffer: request bodies', () => {
  for (const framing of ['content-length', 'chunked', 'expect-100'] as const) {
    it(`24 concurrent POST bodies (${framing}) reach a slow origin byte-exact`, async () => {
      const origin = track(await slowHashOrigin());
      const p = track(await startProxy(origin.url));
      const N = 24;
      const runs = [];
      for (let i = 0; i < N; i++) {
        const r = rng(1000 + i);
        const body = pattern(i, 40_000 + i * 3_001);
        const framed = framing === 'chunked' ? chunked(body, r) : body;
        const head = Buffer.from(
          `POST /post/${i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n` +
            (framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${body.length}\r\n`) +
            (framing === 'expect-100' ? 'Expect: 100-continue\r\n' : '') +
            '\r\n',
        );
        // The head's end and the body's start share reads (except with Expect, where the head goes alone).
        const all = framing === 'expect-100' ? [head, ...cut(framed, r, 9000)] : cut(Buffer.concat([head, framed]), r, 9000);
        runs.push(sendInParts(p.port, all, i % 3 === 0 ? 20 : 0).then((raw) => ({ i, body, raw })));
      }
      for (const { i, body, raw } of await Promise.all(runs)) {
        const text = raw.toString('latin1');
        const last = text.slice(text.lastIndexOf('\r\n\r\n') + 4);
        expect(last, `connection ${i}`).toBe(`${body.length} ${sha(body)}`);
      }
      expect(uncaught).toEqual([]);
    });
  }
});

describe('s7 shared read buffer: pipelined requests', () => {
  it('two pipelined GETs split at every byte, 8 connections interleaved, each gets its own answers in order', async () => {
    const srv = http.createServer((req, res) => {
      const body = `you asked ${req.url}`;
      res.writeHead(200, { 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(body);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }) });
    const p = track(await startProxy(`http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`));
    const conns = 8;
    const work = [];
    for (let c = 0; c < conns; c++) {
      work.push((async () => {
        const sock = net.connect(p.port, '127.0.0.1');
        sock.on('error', () => undefined);
        let buf = Buffer.alloc(0);
        let wake: (() => void) | undefined;
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          wake?.();
        });
        const bodies: string[] = [];
        const readOne = async (): Promise<string> => {
          for (;;) {
            const sep = buf.indexOf('\r\n\r\n');
            if (sep >= 0) {
              const len = Number(/content-length: (\d+)/i.exec(buf.subarray(0, sep).toString('latin1'))?.[1] ?? 0);
              if (buf.length >= sep + 4 + len) {
                const b = buf.subarray(sep + 4, sep + 4 + len).toString('latin1');
                buf = buf.subarray(sep + 4 + len);
                return b;
              }
            }
            await new Promise<void>((r) => (wake = r));
          }
        };
        const two = (k: number): Buffer => Buffer.from(`GET /c${c}/a${k} HTTP/1.1\r\nHost: t\r\nX-Conn: ${'c'.repeat(c + 1)}\r\n\r\nGET /c${c}/b${k} HTTP/1.1\r\nHost: t\r\n\r\n`);
        const len = two(0).length;
        for (let at = 1; at < len; at++) {
          const s = two(at);
          sock.write(s.subarray(0, at));
          await tick();
          await tick();
          sock.write(s.subarray(at));
          bodies.push(await readOne(), await readOne());
        }
        sock.destroy();
        return { c, len, bodies };
      })());
    }
    for (const { c, len, bodies } of await Promise.all(work)) {
      const want: string[] = [];
      for (let at = 1; at < len; at++) want.push(`you asked /c${c}/a${at}`, `you asked /c${c}/b${at}`);
      expect(bodies).toEqual(want);
    }
    expect(uncaught).toEqual([]);
  });
});

/** A TCP server recording every byte each connection sends (and echoing nothing). */
async function recordingServer(slow = false): Promise<{ port: number; got: Buffer[]; close(): Promise<void> }> {
  const got: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    const idx = got.length;
    got.push(Buffer.alloc(0));
    socks.add(s);
    s.on('data', (d: Buffer) => {
      got[idx] = Buffer.concat([got[idx] as Buffer, d]);
      if (slow) {
        s.pause();
        setImmediate(() => s.resume());
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    got,
    close: () => new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('s7 shared read buffer: CONNECT', () => {
  for (const after of ['a fresh connection', 'a kept-alive connection after a GET'] as const) {
    it(`CONNECT on ${after}: bytes sent while the tunnel is still opening all reach the destination`, async () => {
      const dest = track(await recordingServer());
      const web = track(await slowHashOrigin());
      const origin = createOriginClient({ backends: [{ url: web.url }], connectAllow: [`127.0.0.1:${dest.port}`] });
      let open: (() => void) | undefined;
      const gate = new Promise<void>((r) => (open = r));
      let asked = 0;
      // The tunnel opens only when the test says so: the client's later bytes arrive before it.
      const upstream = Object.assign(Object.create(origin) as typeof origin, {
        tunnel: async (host: string, port: number, o: { signal: AbortSignal }) => {
          asked++;
          await gate;
          return origin.tunnel(host, port, o);
        },
      });
      const proxy = createProxy({ upstream });
      const { port } = await proxy.listen(0);
      track({ close: async () => { await proxy.close(); await origin.destroy(); } });
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => undefined);
      let got = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      if (after !== 'a fresh connection') {
        // A GET answered on the connection, which stays open (its socket was resumed for the next request).
        sock.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
        while (!/\r\n\r\n/.test(got.toString('latin1'))) await tick();
        const len = Number(/content-length: (\d+)/i.exec(got.toString('latin1'))?.[1] ?? -1);
        while (got.length < got.indexOf('\r\n\r\n') + 4 + len) await tick();
        expect(got.toString('latin1')).toMatch(/^HTTP\/1.1 200 /);
        expect(got.toString('latin1')).not.toMatch(/connection: close/i);
        got = Buffer.alloc(0);
      }
      const early = pattern(7, 3000);
      sock.write(Buffer.concat([Buffer.from(`CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: x\r\n\r\n`), early.subarray(0, 100)]));
      while (asked === 0) await tick();
      // Other connections read meanwhile (overwriting the shared buffer), then the client's next bytes.
      const noise = [];
      for (let i = 0; i < 4; i++) noise.push(sendInParts(port, [Buffer.from('GET /n HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')]));
      await Promise.all(noise);
      sock.write(early.subarray(100, 1500));
      for (let t = 0; t < 20; t++) await tick();
      sock.write(early.subarray(1500));
      for (let t = 0; t < 20; t++) await tick();
      open?.();
      while (!got.toString('latin1').includes('200 Connection Established')) {
        if (sock.destroyed) throw new Error(`closed: ${got.toString('latin1')}`);
        await tick();
      }
      // Bounded: the destination gets the bytes or the loop ends by count.
      for (let t = 0; t < 2000 && (dest.got[0]?.length ?? 0) < early.length; t++) await new Promise((r) => setTimeout(r, 1));
      expect(dest.got[0]?.length).toBe(early.length);
      expect((dest.got[0] as Buffer).equals(early)).toBe(true);
      sock.destroy();
      expect(uncaught).toEqual([]);
    });
  }
});

describe('s7 shared read buffer: the transaction log', () => {
  it("16 connections' request headers and refused bytes (HttpGarbage) are logged as each connection sent them", async () => {
    const origin = track(await slowHashOrigin());
    const sink = new MemorySink();
    const p = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    const N = 16;
    const idOf = (i: number): string => `${String.fromCharCode(65 + i).repeat(40)}-${i}`;
    const runs = [];
    for (let i = 0; i < N; i++) {
      const r = rng(77 + i);
      // A good request (its head split across reads), then a refused one on the same connection (pipelined).
      const good = `GET /t/${i} HTTP/1.1\r\nHost: t\r\nX-Id: ${idOf(i)}\r\n\r\n`;
      const bad = `BAD\u0001REQUEST /g/${i} ${idOf(i)}\r\n\r\n`;
      runs.push(sendInParts(p.port, cut(Buffer.from(good + bad, 'latin1'), r, 12)));
    }
    await Promise.all(runs);
    await until(() => sink.groups.filter((g) => g.records.some((x) => x.tag === 'HttpGarbage')).length === N);
    await until(() => sink.groups.filter((g) => g.records.some((x) => x.tag === 'ReqURL' && x.value.startsWith('/t/'))).length === N);
    for (let i = 0; i < N; i++) {
      const g = sink.groups.find((x) => x.records.some((y) => y.tag === 'ReqURL' && y.value === `/t/${i}`));
      expect(g?.records.find((x) => x.tag === 'ReqHeader' && /^x-id:/i.test(x.value))?.value).toBe(`x-id: ${idOf(i)}`);
      const garbage = sink.groups.map((x) => x.records.find((y) => y.tag === 'HttpGarbage')?.value).filter((v) => v?.includes(`/g/${i} `));
      expect(garbage).toEqual([`"BAD%01REQUEST /g/${i} ${idOf(i)}%0d%0a%0d%0a"`]);
    }
    expect(uncaught).toEqual([]);
  });
});

describe('s7 shared read buffer: a GET body on a cacheable miss, then a pipelined request', () => {
  it('the body is consumed as framed and the next request on each of 12 connections is its own', async () => {
    const srv = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        const body = `${req.url} body=${n}`;
        res.writeHead(200, { 'content-length': Buffer.byteLength(body), 'cache-control': 'max-age=60' });
        res.end(body);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }) });
    const p = track(await startProxy(`http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`));
    const runs = [];
    for (let i = 0; i < 12; i++) {
      const r = rng(500 + i);
      const body = pattern(i, 20_000 + i * 777);
      // The body's bytes look like a request line to a parser that loses its place.
      body.write(`GET /wrong/${i} HTTP/1.1\r\nHost: t\r\n\r\n`, 1000, 'latin1');
      const all = Buffer.concat([
        Buffer.from(`GET /miss/${i} HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n`),
        body,
        Buffer.from(`GET /next/${i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`),
      ]);
      runs.push(sendInParts(p.port, cut(all, r, 7000)).then((raw) => ({ i, raw: raw.toString('latin1') })));
    }
    for (const { i, raw } of await Promise.all(runs)) {
      const statuses = raw.match(/HTTP\/1\.1 \d+/g) ?? [];
      // Either both answered (the second being /next/i), or the proxy refused the GET body; never another request.
      expect(raw).not.toMatch(/\/wrong\//);
      if (statuses.length === 2) expect(raw.endsWith(`/next/${i} body=0`)).toBe(true);
      else expect(statuses.length).toBe(1);
    }
    expect(uncaught).toEqual([]);
  });
});

describe('s7 shared read buffer: a tunnel upload', () => {
  it('2 MiB through CONNECT to a slow reader while 8 other connections send, byte-exact', async () => {
    const dest = track(await recordingServer(true));
    const origin = createOriginClient({ backends: [{ url: 'http://127.0.0.1:9' }], connectAllow: [`127.0.0.1:${dest.port}`] });
    const proxy = createProxy({ upstream: origin });
    const { port } = await proxy.listen(0);
    track({ close: async () => { await proxy.close(); await origin.destroy(); } });
    const up = pattern(3, 2 * 1024 * 1024);
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => undefined);
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.write(`CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
    while (!got.includes('200 Connection Established')) await tick();
    const noise = [];
    for (let i = 0; i < 8; i++) {
      const b = pattern(100 + i, 100_000);
      noise.push(sendInParts(port, cut(Buffer.concat([Buffer.from(`POST /n/${i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: ${b.length}\r\n\r\n`), b]), rng(9 + i), 9000)));
    }
    for (let i = 0; i < up.length; i += 50_000) {
      if (!sock.write(up.subarray(i, i + 50_000))) await new Promise((r) => sock.once('drain', r));
    }
    await Promise.all(noise);
    for (let t = 0; t < 5000 && (dest.got[0]?.length ?? 0) < up.length; t++) await new Promise((r) => setTimeout(r, 1));
    expect(dest.got[0]?.length).toBe(up.length);
    expect((dest.got[0] as Buffer).equals(up)).toBe(true);
    sock.destroy();
    expect(uncaught).toEqual([]);
  });
});

describe('s7 shared read buffer: a refused CONNECT with bytes after it', () => {
  for (const after of ['a fresh connection', 'a kept-alive connection after a GET'] as const) {
    it(`on ${after}: the client gets its 403, and once it hangs up the proxy lets the connection go`, async () => {
      const web = track(await slowHashOrigin());
      const origin = createOriginClient({ backends: [{ url: web.url }], connectAllow: [] });
      const proxy = createProxy({ upstream: origin });
      const { port } = await proxy.listen(0);
      track({ close: async () => { await proxy.close(); await origin.destroy(); } });
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => undefined);
      let got = '';
      let closed = false;
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.on('close', () => (closed = true));
      if (after !== 'a fresh connection') {
        sock.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
        while (!/\r\n\r\n.*body=0|\r\n\r\n0 /.test(got)) await tick();
        got = '';
      }
      sock.write(`CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n${'early'.repeat(100)}`);
      await tick();
      sock.write('more bytes after the head');
      for (let t = 0; t < 2000 && !closed; t++) await new Promise((r) => setTimeout(r, 1));
      expect(got).toMatch(/^HTTP\/1\.1 403 /);
      expect(closed).toBe(true);
      // The client closed (it ended when the proxy did): the proxy's side must be gone too.
      for (let t = 0; t < 2000 && proxy.server.connections.size > 0; t++) await new Promise((r) => setTimeout(r, 1));
      expect(proxy.server.connections.size).toBe(0);
      expect(uncaught).toEqual([]);
    });
  }
});

describe('s7 shared read buffer: CONNECT at the HTTP/1 server, both read modes', () => {
  for (const shared of [true, false]) {
    for (const keptAlive of [false, true]) {
      it(`${shared ? 'shared buffer' : "'data' reads"}, ${keptAlive ? 'after a GET' : 'fresh'}: a handler that listens late gets every byte after the head`, async () => {
        let open: (() => void) | undefined;
        const gate = new Promise<void>((r) => (open = r));
        let seen = Buffer.alloc(0);
        let connects = 0;
        const server = new Http1Server(
          (_req, res) => {
            res.writeHead(200, { 'content-length': '2' });
            res.end(Buffer.from('ok'));
          },
          {
            sharedReadBuffer: shared,
            onConnect: (_req, socket, head) => {
              connects++;
              seen = Buffer.from(head);
              // As connectTunnel does: the destination opens first, then the socket is listened to.
              void gate.then(() => socket.on('data', (d: Buffer) => (seen = Buffer.concat([seen, d]))));
            },
          },
        );
        const { port } = await server.listen(0, '127.0.0.1');
        track({ close: () => server.close(true) });
        const sock = net.connect(port, '127.0.0.1');
        sock.on('error', () => undefined);
        let got = '';
        sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
        if (keptAlive) {
          sock.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
          while (!got.endsWith('\r\n\r\nok')) await tick();
        }
        const early = pattern(5, 5000);
        sock.write(Buffer.concat([Buffer.from('CONNECT h:1 HTTP/1.1\r\nHost: h\r\n\r\n'), early.subarray(0, 10)]));
        while (connects === 0) await tick();
        sock.write(early.subarray(10, 2000));
        for (let t = 0; t < 20; t++) await tick();
        sock.write(early.subarray(2000));
        for (let t = 0; t < 20; t++) await tick();
        open?.();
        for (let t = 0; t < 2000 && seen.length < early.length; t++) await new Promise((r) => setTimeout(r, 1));
        expect(seen.length).toBe(early.length);
        expect(seen.equals(early)).toBe(true);
        sock.destroy();
      });
    }
  }
});
