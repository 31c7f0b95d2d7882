import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startFixtureOrigin, startScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy, type LogLine } from './proxy.js';
import { parseRawResponse, rawExchange, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Regressions for the process exits found by an outside attack (issue 10): each of these requests used to end the
 * whole process with an unhandled 'error' event on the request-body stream ("response finished before the request
 * body was read", "client connection closed", ChunkedFramingError). A relapse shows as a test failing with an
 * uncaught exception, and the proxy no longer answering the follow-up request.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** Sends `bytes`, keeps the socket open for writing, resolves with everything received once the proxy closes. */
function sendAndWaitClose(port: number, bytes: string | Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(Buffer.concat(chunks)));
    sock.write(bytes);
  });
}

/** The proxy still answers a plain request, and nothing escaped as an uncaught exception. */
async function stillServing(url: string): Promise<void> {
  const ok = await request(`${url}/static/10`);
  expect(ok.statusCode).toBe(200);
  expect(await ok.body.text()).toBe('abcdefghij');
  await new Promise((r) => setTimeout(r, 20));
  expect(uncaught).toEqual([]);
}

describe('crash regressions: a request body nobody reads', () => {
  it.each([
    ['GET with Content-Length and no body', 'GET /static/10 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n'],
    ['HEAD with Content-Length', 'HEAD /static/10 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n'],
    ['PURGE with Content-Length', 'PURGE /static/10 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n'],
    ['GET with Expect: 100-continue and no body', 'GET /static/10 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n'],
    ['GET with a chunked body never sent', 'GET /static/10 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ])('%s: answered, the connection closed, the process lives', async (_name, bytes) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url));
    const raw = await sendAndWaitClose(px.port, bytes);
    const r = parseRawResponse(raw);
    expect([200, 405]).toContain(r.status);
    expect(r.headers['connection']).toBe('close');
    await stillServing(px.url);
  });

  it('a client that closes mid-body on a GET miss', async () => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url));
    const sock = net.connect(px.port, '127.0.0.1');
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('GET /rate/100k?bps=20000 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789');
    await new Promise((r) => setTimeout(r, 30));
    sock.destroy();
    await stillServing(px.url);
  });

  it('a POST answered 503 by an unreachable backend before its body was read', async () => {
    const lines: LogLine[] = [];
    const px = track(await startProxy('http://127.0.0.1:1', { onLog: (l) => lines.push(l) }));
    const raw = await sendAndWaitClose(px.port, 'POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nonly-a-little');
    expect(parseRawResponse(raw).status).toBe(503);
    const again = await request(`${px.url}/x`);
    expect(again.statusCode).toBe(503);
    await again.body.text();
    expect(uncaught).toEqual([]);
  });

  it('a POST answered 503 by the backend queue timeout before its body was read', async () => {
    const hold = deferred();
    const slow = track(
      await startScriptedOrigin(async (req, res) => {
        if (req.url === '/hold') await hold.promise;
        res.end('ok');
      }),
    );
    const upstream = createOriginClient({ backends: [{ url: slow.url, maxConnections: 1, queueTimeoutMs: 50 }] });
    const proxy = createProxy({ upstream });
    const { port } = await proxy.listen(0);
    track({
      close: async () => {
        hold.resolve();
        await proxy.close();
        await upstream.destroy();
      },
    });
    const holding = request(`http://127.0.0.1:${port}/hold`);
    await until(() => slow.requests.length === 1);
    const raw = await sendAndWaitClose(port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc');
    expect(parseRawResponse(raw).status).toBe(503);
    hold.resolve();
    expect((await holding).statusCode).toBe(200);
    expect(uncaught).toEqual([]);
  });
});

describe('crash regressions: bad chunked framing in a request body', () => {
  const framings: Array<[string, string]> = [
    ['non-hex size', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['20 hex digits', '00000000000000000005\r\nhello\r\n0\r\n\r\n'],
    ['negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['0x prefix', '0x10\r\nhello\r\n0\r\n\r\n'],
    ['trailing space', '5 \r\nhello\r\n0\r\n\r\n'],
    ['CR inside a chunk extension', '5;a\rb\r\nhello\r\n0\r\n\r\n'],
    ['control character in a chunk extension', '5;a\x01b\r\nhello\r\n0\r\n\r\n'],
    ['no CRLF after chunk data', '5\r\nhelloXX0\r\n\r\n'],
    ['chunk line over 4 KiB', `5;${'e'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`],
  ];

  it.each(framings)('%s, arriving with the head: 400, closed, the process lives', async (_name, body) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url));
    const raw = await sendAndWaitClose(px.port, `POST /static/10 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    const r = parseRawResponse(raw);
    expect(r.status).toBe(400);
    expect(r.headers['connection']).toBe('close');
    await stillServing(px.url);
  });

  it.each(framings)('%s, arriving later in a pass: 400 (head not sent yet), the origin request dropped', async (_name, body) => {
    const seen = deferred();
    const gone = deferred();
    const origin = track(
      await startScriptedOrigin((req, res) => {
        seen.resolve();
        req.on('error', () => undefined);
        req.resume();
        req.on('end', () => res.end('read it all'));
        res.on('close', () => gone.resolve());
      }),
    );
    const px = track(await startProxy(origin.url));
    const sock = net.connect(px.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.write('POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    await seen.promise;
    sock.write(body);
    await closed;
    const r = parseRawResponse(Buffer.concat(chunks));
    expect(r.status).toBe(400);
    await gone.promise;
    const fix = track(await startFixtureOrigin());
    const px2 = track(await startProxy(fix.url));
    await stillServing(px2.url);
    // The first proxy also still serves.
    const again = await rawExchange(px.port, 'GET /again HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    expect(parseRawResponse(again).status).toBe(200);
  });
});

describe('after a refused request the connection stops reading', () => {
  it('a client that keeps sending after its 400 is cut off after the linger time, and others are served meanwhile', async () => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url));
    // Half-open allowed: the client does not close when the proxy ends its side, and goes on sending.
    const sock = net.connect({ port: px.port, host: '127.0.0.1', allowHalfOpen: true });
    sock.on('error', () => undefined);
    let closed = false;
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('close', () => (closed = true));
    sock.write('GARBAGE\r\n\r\n');
    const junk = Buffer.alloc(16 * 1024, 'x');
    const sender = setInterval(() => {
      if (!closed && !sock.destroyed) sock.write(junk);
    }, 10);
    try {
      await stillServing(px.url);
      await until(() => closed);
    } finally {
      clearInterval(sender);
    }
    expect(parseRawResponse(Buffer.concat(chunks)).status).toBe(400);
  });
});
