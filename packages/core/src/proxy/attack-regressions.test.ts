import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { startScriptedOrigin } from '@sluice/fixtures';
import { KeepAliveClient, parseRawResponse, rawExchange, startProxy, startRawOrigin, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Regressions for faults found by a second outside attack (issue 10, after the crash fixes): clients that never read
 * what they asked for. Each test also checks that nothing escaped as an uncaught exception or unhandled rejection.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** A client that connects, sends `bytes` and never reads a byte of the answer. */
async function nonReadingClient(port: number, bytes: string): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  sock.pause();
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(bytes);
  track({ close: async () => void sock.destroy() });
  return sock;
}

describe('a client that never reads its responses', () => {
  it('pipelining requests for a cached object: the proxy stops answering until the client reads, instead of queueing every response', async () => {
    const body = Buffer.alloc(1024 * 1024, 'x');
    const origin = track(
      await startRawOrigin((s) => {
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(body);
      }),
    );
    const px = track(await startProxy(origin.url));
    const warm = await request(`${px.url}/big`);
    expect((await warm.body.arrayBuffer()).byteLength).toBe(body.length);
    const before = px.proxy.stats.client_req;
    await nonReadingClient(px.port, 'GET /big HTTP/1.1\r\nHost: t\r\n\r\n'.repeat(300));
    await until(() => px.proxy.stats.client_req > before);
    await new Promise((r) => setTimeout(r, 300));
    let queued = 0;
    for (const c of px.proxy.server.connections) queued += c.socket.writableLength;
    // Before the fix: all 300 answered at once, ~300 MiB queued on one socket for a client that reads nothing.
    // A few responses fit in the kernel socket buffers; the rest wait for the client.
    expect(px.proxy.stats.client_req - before).toBeLessThan(20);
    expect(queued).toBeLessThan(3 * body.length);
    // Others are served meanwhile.
    const other = await request(`${px.url}/big`);
    expect((await other.body.arrayBuffer()).byteLength).toBe(body.length);
    expect(uncaught).toEqual([]);
  });

  it('pipelined responses still all arrive, in order, for a client that reads them late', async () => {
    const body = Buffer.alloc(256 * 1024, 'y');
    const origin = track(
      await startRawOrigin((s, head) => {
        const tag = /GET \/(\w+)/.exec(head)?.[1] ?? '';
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Tag: ${tag}\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(body);
      }),
    );
    const px = track(await startProxy(origin.url));
    const sock = await nonReadingClient(px.port, ['a', 'b', 'c', 'd', 'e'].map((p) => `GET /${p} HTTP/1.1\r\nHost: t\r\n${p === 'e' ? 'Connection: close\r\n' : ''}\r\n`).join(''));
    await new Promise((r) => setTimeout(r, 200));
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.resume();
    await new Promise<void>((r) => sock.once('close', () => r()));
    const all = Buffer.concat(chunks);
    const tags = [...all.toString('latin1').matchAll(/\r\nx-tag: (\w+)\r\n/g)].map((m) => m[1]);
    expect(tags).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(all.length).toBeGreaterThan(5 * body.length);
    expect(uncaught).toEqual([]);
  });

  it('a pass response it never reads does not hold an origin connection forever (send timeout)', async () => {
    // The origin streams a large body as fast as the proxy takes it.
    const origin = track(
      await startRawOrigin((s, head) => {
        if (head.startsWith('GET /other')) {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          return;
        }
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n`);
        const chunk = Buffer.alloc(64 * 1024, 'z');
        const pump = (): void => {
          while (!s.destroyed && s.write(chunk)) {
            /* until the kernel buffer is full */
          }
        };
        s.on('drain', pump);
        pump();
      }),
    );
    const upstream = createOriginClient({ backends: [{ url: origin.url, maxConnections: 1, queueTimeoutMs: 4000 }] });
    const proxy = createProxy({ upstream });
    // The idle send timeout (default 60 s, as Varnish's idle_send_timeout), short for the test.
    proxy.server.sendTimeoutMs = 300;
    const { port } = await proxy.listen(0);
    track({
      close: async () => {
        await proxy.close();
        await upstream.destroy();
      },
    });
    const stuck = await nonReadingClient(port, 'POST /pass HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n');
    const stuckClosed = new Promise<void>((r) => stuck.once('close', () => r()));
    await until(() => origin.count === 1);
    // The one origin connection is held by the stuck client's pass; this request waits for it.
    const t0 = Date.now();
    const other = parseRawResponse(await rawExchange(port, 'GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(other.status).toBe(200);
    expect(other.body.toString()).toBe('ok');
    expect(Date.now() - t0).toBeLessThan(3000);
    stuck.resume();
    await stuckClosed;
    expect(uncaught).toEqual([]);
  });
});

describe('header names that are also names of Object.prototype members', () => {
  it.each(['__proto__', 'constructor'])('an origin that varies on "%s": the response is delivered and cached, not cut', async (name) => {
    const origin = track(
      await startRawOrigin((s) => s.write(`HTTP/1.1 200 OK\r\nVary: ${name}\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok`)),
    );
    const px = track(await startProxy(origin.url));
    for (let i = 0; i < 2; i++) {
      const r = parseRawResponse(await rawExchange(px.port, 'GET /v HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('ok');
    }
    expect(origin.count).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('a client header named "constructor" is forwarded as sent (no "function Object()" built from the prototype)', async () => {
    const heads: string[] = [];
    const origin = track(
      await startRawOrigin((s, head) => {
        heads.push(head);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }),
    );
    const px = track(await startProxy(origin.url));
    const r = parseRawResponse(await rawExchange(px.port, 'GET /h HTTP/1.1\r\nHost: t\r\nConstructor: y\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(200);
    expect(heads[0]).toMatch(/\r\nconstructor: y\r\n/i);
    expect(heads[0]).not.toMatch(/function Object/);
    expect(uncaught).toEqual([]);
  });
});

/** Sends `requestBytes`, reads nothing for `pauseMs`, then reads everything until the server closes. */
function lateReader(port: number, requestBytes: string, pauseMs: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('error', () => undefined);
    sock.pause();
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('close', () => resolve(Buffer.concat(chunks)));
    sock.write(requestBytes);
    setTimeout(() => sock.resume(), pauseMs);
  });
}

/** A proxy holding a 24 MiB object at /large (fetched once, through a Connection: close request). */
async function cachedLarge(fill: string) {
  const body = Buffer.alloc(24 * 1024 * 1024, fill);
  const origin = track(
    await startRawOrigin((s) => {
      s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
      s.write(body);
    }),
  );
  const px = track(await startProxy(origin.url));
  const warm = parseRawResponse(await rawExchange(px.port, 'GET /large HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
  expect(warm.body.length).toBe(body.length);
  return { body, px };
}

describe('a client that reads late', () => {
  it('with Connection: close gets the whole of a large cached object though it started reading after the linger time', async () => {
    const { body, px } = await cachedLarge('L');
    // The hit is handed to the socket at once and the response is finished; the client starts reading 2.5 s later
    // (well within the 5 s idle timeout). The connection used to be destroyed 2 s after the response was queued (the
    // linger timer), cutting the body at what the kernel buffers held.
    const raw = await lateReader(px.port, 'GET /large HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', 2500);
    const r = parseRawResponse(raw);
    expect(r.status).toBe(200);
    expect(r.headers['cache-status']).toMatch(/; hit/);
    expect(r.body.length).toBe(body.length);
    expect(uncaught).toEqual([]);
  }, 10_000);
});

describe('a client that keeps sending but never reads a response that ends the connection', () => {
  it('is cut off (its sending does not hold the connection open forever)', async () => {
    const { body, px } = await cachedLarge('J');
    const sock = await nonReadingClient(px.port, 'GET /large HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    let closed = false;
    sock.on('close', () => (closed = true));
    const junk = Buffer.alloc(16 * 1024, 'x');
    const sender = setInterval(() => {
      if (!closed) sock.write(junk);
    }, 20);
    try {
      await until(() => closed);
    } finally {
      clearInterval(sender);
    }
    expect(uncaught).toEqual([]);
  });
});

describe('connection-pinned auth (NTLM) from many client connections', () => {
  it('does not open an origin connection per client connection past the backend limit, and pooled requests still go through', async () => {
    // An origin that challenges every request with NTLM: each client connection that sends an NTLM header gets pinned.
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/plain') {
          res.end('ok');
          return;
        }
        res.writeHead(401, { 'www-authenticate': 'NTLM', 'content-length': '2' });
        res.end('no');
      }),
    );
    const upstream = createOriginClient({ backends: [{ url: origin.url, maxConnections: 2, queueTimeoutMs: 1000 }] });
    const proxy = createProxy({ upstream });
    const { port } = await proxy.listen(0);
    track({
      close: async () => {
        await proxy.close();
        await upstream.destroy();
      },
    });
    const clients = Array.from({ length: 20 }, () => track(new KeepAliveClient(port)));
    for (const c of clients) expect((await c.send('GET', '/x', { authorization: 'NTLM a' })).status).toBe(401);
    for (const c of clients) expect((await c.send('GET', '/x', { authorization: 'NTLM b' })).status).toBe(401);
    // Before the fix: 21 origin connections for a backend limited to 2.
    expect(origin.connections).toBeLessThanOrEqual(2 + 2);
    const plain = parseRawResponse(await rawExchange(port, 'GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(plain.status).toBe(200);
    expect(uncaught).toEqual([]);
  });
});

describe('OPTIONS * (asks about the server itself)', () => {
  it('is answered by the proxy with Allow, never forwarded with the path "*" (undici refused it: 503)', async () => {
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('origin')));
    const px = track(await startProxy(origin.url));
    const r = parseRawResponse(await rawExchange(px.port, 'OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(200);
    expect(r.headers['allow']).toContain('GET');
    expect(origin.count).toBe(0);
  });
});
