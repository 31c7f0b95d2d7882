import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startFixtureOrigin, startScriptedOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { parseRawResponse, rawExchange, startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';
import type { LogLine } from './proxy.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';

let origin: FixtureOrigin | undefined;
let px: ProxyHarness | undefined;
const track = useCleanup();

describe('bad input', () => {
  it.each([
    ['garbage request line', 'GARBAGE\r\n\r\n'],
    ['bad header line', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'],
    ['both Content-Length and chunked', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['relative target', 'GET foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
    // An empty line ends a head (RFC 9112 §2.2); with mixed LF/CRLF one could sit inside what the proxy read as the
    // head, and the lines after it (here a Content-Length) were taken as headers instead of body or next request.
    ['an empty line (LF CRLF) inside the head', 'POST /static/10 HTTP/1.1\r\nHost: x\n\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello'],
    ['an empty line (CRLF LF) inside the head', 'GET /static/10 HTTP/1.1\r\nHost: x\r\n\nX-After: 1\r\nConnection: close\r\n\r\n'],
  ])('%s gets 400 and the proxy keeps serving', async (_n, bytes) => {
    origin = await startFixtureOrigin();
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const r = parseRawResponse(await rawExchange(px.port, bytes));
    expect(r.status).toBe(400);
    const ok = await request(`${px.url}/static/10`);
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe('abcdefghij');
  });

  it('HTTP/1.1 without Host gets a synth 400, as the builtin vcl_req_host gives; HTTP/1.0 without Host is served', async () => {
    origin = track(await startFixtureOrigin());
    const sink = new MemorySink();
    px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    const r = parseRawResponse(await rawExchange(px.port, 'GET /static/10 HTTP/1.1\r\nUser-Agent: t\r\n\r\n'));
    expect(r.status).toBe(400);
    expect(r.headers['cache-status']).toBe('sluice; detail=synth');
    expect(r.headers['connection']).toBe('close');
    await until(() => sink.groups.length === 1);
    const recs = (sink.groups[0] as Transaction).records;
    expect(recs.filter((x) => x.tag === 'VCL_call').map((x) => x.value)).toEqual(['RECV', 'SYNTH']);
    expect(recs.find((x) => x.tag === 'RespStatus')?.value).toBe('400');
    const old = parseRawResponse(await rawExchange(px.port, 'GET /static/10 HTTP/1.0\r\n\r\n'));
    expect(old.status).toBe(200);
    expect(origin.hits('/static/10')).toBe(1);
  });

  it('an unreachable backend gets 503 with a clear log line, not a crash', async () => {
    const lines: LogLine[] = [];
    px = await startProxy('http://127.0.0.1:1', { onLog: (l) => lines.push(l) });
    track(px);
    const r = await request(`${px.url}/x`);
    expect(r.statusCode).toBe(503);
    expect(await r.body.text()).toBe('Backend fetch failed\n');
    expect(lines.some((l) => l.event === 'backend-fail' && /ECONNREFUSED/.test(l.message))).toBe(true);
    const again = await request(`${px.url}/x`);
    expect(again.statusCode).toBe(503);
    await again.body.text();
    expect(px.proxy.stats.backend_fail).toBe(2);
  });

  it('an origin that sends no headers in time gets the client a 504, the timeout status kept', async () => {
    const hold = deferred();
    const slow = track(
      await startScriptedOrigin(async (_req, res) => {
        await hold.promise;
        res.end('late');
      }),
    );
    const upstream = createOriginClient({ backends: [{ url: slow.url, firstByteTimeoutMs: 100 }] });
    const proxy = createProxy({ upstream });
    const { port } = await proxy.listen(0);
    track({ close: async () => { await proxy.close(); await upstream.destroy(); } });
    const r = await request(`http://127.0.0.1:${port}/slow`);
    expect(r.statusCode).toBe(504);
    await r.body.text();
    hold.resolve();
  });

  // A client leaving, or the proxy shutting down, used to be logged as `backend fetch failed: cannot reach ...` and
  // counted in backend_fail, sending whoever reads the logs to a healthy origin.
  describe('what is not a backend failure', () => {
    it('a client leaving in the middle of its request body', async () => {
      const lines: LogLine[] = [];
      const sink = new MemorySink();
      const slow = track(await startScriptedOrigin((req, res) => {
        req.resume();
        req.on('end', () => res.end('ok'));
      }));
      px = track(await startProxy(slow.url, { onLog: (l) => lines.push(l), txlog: new TxLog([sink]) }));
      const sock = net.connect(px.port, '127.0.0.1');
      sock.on('error', () => undefined);
      sock.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
      await until(() => slow.count === 1);
      sock.destroy();
      await until(() => sink.groups.length === 1);
      const fetchError = (sink.groups[0] as Transaction).children[0]?.records.find((r) => r.tag === 'FetchError')?.value;
      expect(fetchError).toMatch(/^fetch aborted: /);
      expect(lines.filter((l) => l.event === 'backend-fail')).toEqual([]);
      expect(px.proxy.stats.backend_fail).toBe(0);
    });

    it('a shutdown while the origin has not answered yet', async () => {
      const lines: LogLine[] = [];
      const hold = deferred();
      const slow = track(await startScriptedOrigin(async (_req, res) => {
        await hold.promise;
        res.end('late');
      }));
      const p = await startProxy(slow.url, { onLog: (l) => lines.push(l) });
      const r = request(`${p.url}/slow`).then((x) => x.body.text(), () => undefined);
      await until(() => slow.count === 1);
      await p.close();
      await r;
      hold.resolve();
      expect(lines.filter((l) => l.event === 'backend-fail')).toEqual([]);
      expect(p.proxy.stats.backend_fail).toBe(0);
    });
  });
});
