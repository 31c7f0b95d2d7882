import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { parseRawResponse, settlesWithin, startProxy, until, useCleanup } from '../test-support/harness.js';

/**
 * Request-body limits (issue 10): a client that stalls or trickles its body, or sends too much, loses its exchange
 * (408 / 413, connection closed) and frees the origin connection it held; time the proxy itself is not reading (the
 * origin applies backpressure) is never blamed on the client.
 */
const track = useCleanup();

/** An origin that reads the whole body before answering with its length; records requests that were cut. */
async function bodyOrigin(opts: { readDelayMs?: number } = {}) {
  const cut: string[] = [];
  const origin = track(
    await startScriptedOrigin(async (req, res) => {
      if (opts.readDelayMs !== undefined) {
        req.pause();
        await new Promise((r) => setTimeout(r, opts.readDelayMs));
        req.resume();
      }
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('error', () => undefined);
      req.on('close', () => {
        if (!req.complete) cut.push(req.url ?? '');
      });
      req.on('end', () => res.end(`got ${n}`));
    }),
  );
  return { origin, cut };
}

function open(port: number): { sock: net.Socket; received: () => Buffer; closed: Promise<void> } {
  const sock = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  return { sock, received: () => Buffer.concat(chunks), closed };
}

describe('request body limits', () => {
  it('a body that stalls gets 408 after the idle timeout, and the origin request is dropped', async () => {
    const { origin, cut } = await bodyOrigin();
    const px = track(await startProxy(origin.url, { requestBody: { idleTimeoutMs: 150, minBytesPerSec: 0 } }));
    const c = open(px.port);
    c.sock.write('POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789');
    await c.closed;
    const r = parseRawResponse(c.received());
    expect(r.status).toBe(408);
    expect(r.headers['connection']).toBe('close');
    await until(() => cut.length === 1);
    expect(cut).toEqual(['/upload']);
  });

  it('a body trickling below the minimum rate gets 408 although bytes keep coming', async () => {
    const { origin, cut } = await bodyOrigin();
    const px = track(await startProxy(origin.url, { requestBody: { idleTimeoutMs: 5_000, minBytesPerSec: 2_000, rateWindowMs: 200 } }));
    const c = open(px.port);
    c.sock.write('POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n');
    // 1 byte every 10 ms: never idle, about 100 B/s.
    const trickle = setInterval(() => {
      if (!c.sock.destroyed) c.sock.write('x');
    }, 10);
    try {
      await c.closed;
    } finally {
      clearInterval(trickle);
    }
    expect(parseRawResponse(c.received()).status).toBe(408);
    await until(() => cut.length === 1);
  });

  it('time the origin is not reading (backpressure) does not count against the client', async () => {
    // The origin waits 600 ms before reading a 4 MiB body; the client is blocked meanwhile. Idle timeout 150 ms.
    const { origin } = await bodyOrigin({ readDelayMs: 600 });
    const px = track(await startProxy(origin.url, { requestBody: { idleTimeoutMs: 150, minBytesPerSec: 1_000, rateWindowMs: 150 } }));
    const body = Buffer.alloc(4 * 1024 * 1024, 'b');
    const r = await request(`${px.url}/big-upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe(`got ${body.length}`);
  });

  it('a Content-Length over the cap gets 413 at once; the origin is never asked', async () => {
    const { origin } = await bodyOrigin();
    const px = track(await startProxy(origin.url, { requestBody: { maxBytes: 1000 } }));
    const c = open(px.port);
    c.sock.write('POST /too-big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n');
    await c.closed;
    const r = parseRawResponse(c.received());
    expect(r.status).toBe(413);
    expect(origin.count).toBe(0);
    const ok = await request(`${px.url}/small`, { method: 'POST', body: 'x'.repeat(1000) });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe('got 1000');
  });

  it('a chunked body growing over the cap gets 413 before the response head, and the origin request is dropped', async () => {
    const { origin, cut } = await bodyOrigin();
    const px = track(await startProxy(origin.url, { requestBody: { maxBytes: 1000 } }));
    const c = open(px.port);
    c.sock.write(`POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n190\r\n${'z'.repeat(400)}\r\n`);
    await until(() => origin.count === 1);
    for (let i = 0; i < 4; i++) c.sock.write(`190\r\n${'z'.repeat(400)}\r\n`);
    await c.closed;
    expect(parseRawResponse(c.received()).status).toBe(413);
    await until(() => cut.length === 1);
  });

  it('slow uploads holding every origin connection are cut, and a cache miss then gets through', async () => {
    const hold = deferred();
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.method === 'POST') {
          req.resume();
          req.on('error', () => undefined);
          req.on('end', () => res.end('posted'));
          return;
        }
        res.setHeader('cache-control', 'max-age=60');
        res.end('fresh');
        hold.resolve();
      }),
    );
    const upstream = createOriginClient({ backends: [{ url: origin.url, maxConnections: 4, queueTimeoutMs: 5_000 }] });
    const proxy = createProxy({ upstream, requestBody: { idleTimeoutMs: 5_000, minBytesPerSec: 1_000, rateWindowMs: 200 } });
    const { port } = await proxy.listen(0);
    track({ close: async () => { await proxy.close(); await upstream.destroy(); } });
    const slow = Array.from({ length: 4 }, (_, i) => {
      const c = open(port);
      c.sock.write(`POST /up${i} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n`);
      const t = setInterval(() => !c.sock.destroyed && c.sock.write('x'), 50);
      return { c, t };
    });
    await until(() => origin.count === 4);
    // Every origin connection is held by a trickling upload; the miss waits in the queue until they are cut.
    const miss = await request(`http://127.0.0.1:${port}/page`);
    expect(miss.statusCode).toBe(200);
    expect(await miss.body.text()).toBe('fresh');
    for (const s of slow) {
      await s.c.closed;
      clearInterval(s.t);
      expect(parseRawResponse(s.c.received()).status).toBe(408);
    }
  });
});

describe('fetches nobody reads', () => {
  it('an origin that never ends is dropped once no client has read it for the orphan timeout; nothing is kept', async () => {
    const gone = deferred();
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        const t = setInterval(() => res.write('tick\n'), 20);
        res.on('close', () => {
          clearInterval(t);
          if (req.url === '/endless') gone.resolve();
        });
      }),
    );
    const px = track(await startProxy(origin.url, { orphanFetchTimeoutMs: 150 }));
    const c = open(px.port);
    c.sock.write('GET /endless HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => c.received().includes('tick'));
    expect(px.proxy.stats.fetch_failed).toBe(0);
    c.sock.destroy();
    // The origin connection is closed by the proxy (generously bounded: the orphan timeout is 150 ms).
    expect(await settlesWithin(gone.promise, 5000)).toBe(true);
    await until(() => px.proxy.stats.fetch_failed >= 1);
    expect(px.proxy.stats.fetch_failed).toBe(1);
    // Nothing truncated was kept: the next request is a miss that fetches again.
    const again = open(px.port);
    again.sock.write('GET /endless HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => origin.count === 2);
    await until(() => again.received().includes('\r\n\r\n'));
    expect(parseRawResponse(again.received()).headers['cache-status']).toMatch(/^sluice; fwd=(uri-)?miss/);
    again.sock.destroy();
  });

  it('a fetch that finishes within the orphan timeout after its client left still fills the cache', async () => {
    const origin = track(
      await startScriptedOrigin(async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '8' });
        res.write('abcd');
        await new Promise((r) => setTimeout(r, 100));
        res.end('efgh');
      }),
    );
    const px = track(await startProxy(origin.url, { orphanFetchTimeoutMs: 2_000 }));
    const c = open(px.port);
    c.sock.write('GET /short HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => c.received().includes('abcd'));
    c.sock.destroy();
    await until(() => px.proxy.store.objectCount === 1 && px.proxy.stats.s_beresp_bodybytes === 8);
    const hit = await request(`${px.url}/short`, { headers: { host: 't' } });
    expect(hit.headers['cache-status']).toMatch(/^sluice; hit;/);
    expect(await hit.body.text()).toBe('abcdefgh');
    expect(origin.count).toBe(1);
  });
});
