import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { deferred, headerNames, rawHeader, startFixtureOrigin, startScriptedOrigin } from '@sluice/fixtures';
import { until, useCleanup } from './harness.js';

/** The test origins record what they received: request line, header lines in order and case, body bytes. */
const track = useCleanup();

function send(port: number, bytes: string): net.Socket {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  s.write(bytes);
  return s;
}

describe('what test origins record', () => {
  it('the scripted origin keeps the request line, header lines as sent and the body', async () => {
    const origin = track(await startScriptedOrigin((req, res) => void req.resume().on('end', () => res.end('ok'))));
    const s = send(origin.port, 'POST /a?b=1 HTTP/1.1\r\nhost: t\r\nX-Mixed-Case: 1\r\nx-dup: a\r\nX-Dup: b\r\nContent-Length: 5\r\n\r\nhello');
    await until(() => origin.count === 1);
    const r = origin.requests[0]!;
    expect(await r.bodyDone).toEqual(Buffer.from('hello'));
    s.destroy();
    expect(r).toMatchObject({ method: 'POST', url: '/a?b=1', target: '/a?b=1', httpVersion: '1.1', bodyBytes: 5 });
    expect(r.rawHeaders).toEqual([['host', 't'], ['X-Mixed-Case', '1'], ['x-dup', 'a'], ['X-Dup', 'b'], ['Content-Length', '5']]);
    expect(headerNames(r)).toEqual(['host', 'X-Mixed-Case', 'x-dup', 'X-Dup', 'Content-Length']);
    expect(rawHeader(r, 'x-dup')).toEqual(['a', 'b']);
    expect(r.body.toString()).toBe('hello');
  });

  it('recording does not read the body for the handler: a paused request keeps its backpressure', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        req.pause();
        await gate.promise;
        req.resume();
        req.on('end', () => res.end('ok'));
      }),
    );
    const big = 8 * 1024 * 1024;
    const s = send(origin.port, `PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: ${big}\r\n\r\n`);
    let flushed = true;
    const piece = Buffer.alloc(256 * 1024, 0x61);
    for (let i = 0; i < big / piece.length; i++) flushed = s.write(piece);
    await until(() => origin.count === 1);
    // The origin is not reading: the client's writes back up, and the origin has not taken the whole body.
    await new Promise((r) => setTimeout(r, 50));
    expect(flushed).toBe(false);
    expect(origin.requests[0]!.bodyBytes).toBeLessThan(big);
    gate.resolve();
    // All of it arrives once the handler reads; the recorder counts it all and keeps its first 1 MiB.
    expect((await origin.requests[0]!.bodyDone).length).toBe(1024 * 1024);
    expect(origin.requests[0]!.bodyBytes).toBe(big);
    s.destroy();
  });

  it('the fixture origin records requests too, and not at all with record: 0', async () => {
    const a = track(await startFixtureOrigin());
    const b = track(await startFixtureOrigin({ record: 0 }));
    for (const o of [a, b]) {
      const s = send(o.port, 'GET /static/10 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n');
      await until(() => o.counters.requests === 1);
      s.destroy();
    }
    expect(a.requests.map((r) => [r.method, r.target, r.rawHeaders])).toEqual([['GET', '/static/10', [['Host', 't'], ['Accept', '*/*']]]]);
    expect(b.requests).toEqual([]);
  });
});
