import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseRawResponse, rawExchange, settlesWithin, startProxy, startRawOrigin, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Session 11, the request path attacked from outside (raw sockets), for what the s5-s10 attack tests did not cover:
 * - a Host whose value is not a host (RFC 9112 §3.2: "MUST respond with 400 ... to any request message that contains
 *   ... a Host header field with an invalid field value"): it was forwarded and named the object in the cache key.
 * - an endless trailer section after a chunked request body: trailer lines were read and dropped without bound, so a
 *   client holding its body open at a few hundred bytes a second held the request (and its origin request) for good.
 * - a request line longer than the head limit: 431 (fields too large); RFC 9112 §3 says 414 for a request-target
 *   longer than the server parses (nginx answers 414).
 * - origins that lie to a background fetch (grace), which the s7 lies did not reach: covered, nothing changed.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const statusOf = (raw: Buffer): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw.toString('latin1'))?.[1] ?? 0);

describe('Host values that are not a host', () => {
  it.each([
    ['a space', 't u'],
    ['a slash', 't/../x'],
    ['userinfo', 'user@t'],
    ['a backslash', 't\\x'],
    ['a quote', 't"x'],
    ['angle brackets', '<t>'],
    ['a port that is not digits', 't:8a'],
    ['an unclosed IP literal', '[::1'],
  ])('%s (%s): 400, never forwarded, the connection closed; the next client is served', async (_name, host) => {
    const o = track(await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nok')));
    const px = track(await startProxy(o.url));
    const raw = await rawExchange(px.port, `GET /h HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    expect(statusOf(raw)).toBe(400);
    expect(o.count).toBe(0);
    expect(statusOf(await rawExchange(px.port, 'GET /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'))).toBe(200);
    expect(uncaught).toEqual([]);
  });

  it.each([
    ['a name', 'example.com'],
    ['a name and port, mixed case', 'Example.COM:8080'],
    ['an IPv4 address', '127.0.0.1:80'],
    ['an IPv6 literal', '[::1]:8080'],
    ['an underscore and pct-encoding', 'a_b%2Dc'],
    ['an empty value', ''],
  ])('%s (%s) is served', async (_name, host) => {
    const o = track(await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nok')));
    const px = track(await startProxy(o.url));
    const raw = await rawExchange(px.port, `GET /h HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(raw)).toBe(200);
    expect(o.count).toBe(1);
  });
});

describe('a request line over the head limit', () => {
  it('a 100 KiB request line, whole or arriving in pieces: 414, never forwarded; a long head of short lines stays 431', async () => {
    const o = track(await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')));
    const px = track(await startProxy(o.url));
    const line = `GET /${'a'.repeat(100 * 1024)} HTTP/1.1\r\nHost: t\r\n\r\n`;
    expect(statusOf(await rawExchange(px.port, line))).toBe(414);
    // Without its end: the limit is passed before any LF came.
    expect(statusOf(await rawExchange(px.port, line.slice(0, 80 * 1024)))).toBe(414);
    const fields = `GET /f HTTP/1.1\r\nHost: t\r\n${'x-f: aaaaaaaaaaaaaaaaaaaa\r\n'.repeat(3000)}\r\n`;
    expect(statusOf(await rawExchange(px.port, fields))).toBe(431);
    expect(o.count).toBe(0);
    expect(statusOf(await rawExchange(px.port, 'GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'))).toBe(200);
    expect(uncaught).toEqual([]);
  });
});

describe('an endless trailer section', () => {
  it('a chunked POST whose trailer lines never end: 400 once past the head limit, the origin request dropped; others served', async () => {
    // An origin that answers once it has read the whole request body (as most do).
    let answered = 0;
    let aborted = 0;
    const origin = http.createServer((req, res) => {
      req.on('aborted', () => aborted++);
      req.on('error', () => undefined);
      req.resume();
      req.on('end', () => {
        answered++;
        res.end('ok');
      });
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => (origin.closeAllConnections(), origin.close(() => r()))) });
    const px = track(await startProxy(`http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`));
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.write('POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n');
    // 4.3 KB of trailer lines every 10 ms (well above the body clock's minimum rate), for at most 3 s.
    const line = `x-trailer: ${'a'.repeat(40)}\r\n`.repeat(100);
    const feed = setInterval(() => {
      if (!s.destroyed) s.write(line);
    }, 10);
    const ended = await settlesWithin(closed, 3000);
    clearInterval(feed);
    s.destroy();
    expect(ended).toBe(true);
    expect(got).toMatch(/^HTTP\/1\.1 400 /);
    expect(answered).toBe(0);
    expect(statusOf(await rawExchange(px.port, 'GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'))).toBe(200);
    expect(uncaught).toEqual([]);
  });

  it('a trailer section of a few fields is still read and the request answered', async () => {
    const origin = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(`got ${n}`));
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => (origin.closeAllConnections(), origin.close(() => r()))) });
    const px = track(await startProxy(`http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`));
    const raw = await rawExchange(px.port, `POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nx-a: 1\r\nx-b: ${'b'.repeat(3000)}\r\n\r\n`);
    expect(statusOf(raw)).toBe(200);
    expect(raw.toString('latin1')).toMatch(/got 5$/);
  });
});

describe('an origin that lies to a background fetch (grace)', () => {
  const GOOD = '0123456789';
  const LIES: Record<string, (s: net.Socket) => void> = {
    'Content-Length longer than the body, then close': (s) => s.end('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 10\r\n\r\nshort'),
    'chunked with a size larger than what follows, then close': (s) => s.end('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\nfff\r\nhello'),
    'chunked with a size that is not hex': (s) => s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n'),
    'a body that never ends': (s) => s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 10\r\n\r\nhello'),
  };
  it.each(Object.keys(LIES))('%s: the grace hit is whole, no client ever gets a clean answer with wrong bytes, the truth is served once the origin is honest', async (name) => {
    const lie = LIES[name] as (s: net.Socket) => void;
    const state = { n: 0, honest: false };
    const o = track(
      await startRawOrigin((s) => {
        if (++state.n > 1 && !state.honest) return lie(s);
        s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=1, stale-while-revalidate=60\r\ncontent-length: ${GOOD.length}\r\n\r\n${GOOD}`);
      }),
    );
    let nowMs = Date.now();
    const px = track(await startProxy(o.url, { now: () => nowMs }, { betweenBytesTimeoutMs: 300 }));
    const get = async (): Promise<{ status: number; body: string; whole: boolean }> => {
      const raw = await rawExchange(px.port, 'GET /g HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
      if (raw.indexOf('\r\n\r\n') < 0) return { status: 0, body: '', whole: false };
      const r = parseRawResponse(raw);
      const cl = r.headers['content-length'];
      return { status: r.status, body: r.body.toString('latin1'), whole: r.chunked ? r.terminated : cl === undefined || r.body.length === Number(cl) };
    };
    expect(await get()).toEqual({ status: 200, body: GOOD, whole: true });
    nowMs += 5000;
    // Served from the stale object at once, whole; its background fetch meets the lie.
    expect(await get()).toEqual({ status: 200, body: GOOD, whole: true });
    await until(() => px.proxy.stats.fetch_failed >= 1);
    // While the origin lies: the stale object or a detectable cut, never a clean answer with wrong bytes.
    for (let i = 0; i < 2; i++) {
      const r = await get();
      if (r.whole && r.status === 200) expect(r.body).toBe(GOOD);
    }
    state.honest = true;
    nowMs += 120_000;
    expect(await get()).toEqual({ status: 200, body: GOOD, whole: true });
    expect(await get()).toEqual({ status: 200, body: GOOD, whole: true });
    expect(uncaught).toEqual([]);
  });
});
