import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { deferred, startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, type ProxyHarness, until, useCleanup } from '../test-support/harness.js';

let origin: ScriptedOrigin | undefined;
let px: ProxyHarness | undefined;
const track = useCleanup();


describe('edge cases', () => {
  it('an origin failure mid-body cuts off every client streaming the object, coalesced ones included', async () => {
    const release = deferred();
    const die = deferred();
    origin = await startScriptedOrigin(async (req, res, n) => {
      if (n > 1) {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('fresh');
        return;
      }
      await release.promise;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('partial;');
      await die.promise;
      req.socket.destroy();
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const seen: string[] = ['', ''];
    const clients = [0, 1].map((i) =>
      rawExchange(px!.port, 'GET /die HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (all) => {
        seen[i] = all.toString('latin1');
      }),
    );
    await until(() => origin!.count === 1 && px!.proxy.stats.busy_sleep === 1);
    release.resolve();
    await until(() => seen.every((s) => s.includes('partial;')));
    die.resolve();
    const results = (await Promise.all(clients)).map(parseRawResponse);
    for (const r of results) {
      expect(r.chunked).toBe(true);
      expect(r.body.toString()).toBe('partial;');
      expect(r.terminated).toBe(false);
    }
    const again = parseRawResponse(await rawExchange(px.port, 'GET /die HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(again.body.toString()).toBe('fresh');
    expect(origin.count).toBe(2);
  });

  it('passes a chunked request body to the origin intact', async () => {
    origin = await startScriptedOrigin(async (req, res) => {
      let body = '';
      for await (const c of req) body += String(c);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`origin got ${body.length}: ${body}`);
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const r = parseRawResponse(
      await rawExchange(
        px.port,
        'POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
      ),
    );
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('origin got 11: hello world');
    expect(r.headers['cache-status']).toMatch(/detail=pass/);
  });

  it('answers Expect: 100-continue when the origin fetch reads the body', async () => {
    origin = await startScriptedOrigin(async (req, res) => {
      let body = '';
      for await (const c of req) body += String(c);
      res.writeHead(201, { 'content-length': String(body.length) });
      res.end(body);
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(px!.port, '127.0.0.1');
      let got = '';
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (got === 'HTTP/1.1 100 Continue\r\n\r\n') s.write('payload');
      });
      s.on('close', () => resolve(got));
      s.write('PUT /doc HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 7\r\nConnection: close\r\n\r\n');
    });
    expect(out.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n')).toBe(true);
    expect(out.endsWith('payload')).toBe(true);
  });

  it('accepts an absolute-form request target and uses its host for the cache key', async () => {
    origin = await startScriptedOrigin((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`${req.url} host=${req.headers.host}`);
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const a = parseRawResponse(await rawExchange(px.port, 'GET http://example.test/abs?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n'));
    expect(a.body.toString()).toBe('/abs?q=1 host=example.test');
    const b = parseRawResponse(await rawExchange(px.port, 'GET /abs?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n'));
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
  });

  it('a client that leaves a pass response mid-body makes the proxy drop the origin connection', async () => {
    const originSocketClosed = deferred();
    origin = await startScriptedOrigin(async (req, res) => {
      req.socket.once('close', () => originSocketClosed.resolve());
      res.writeHead(200, { 'cache-control': 'private' });
      // Endless body: only a dropped connection ends it.
      const piece = Buffer.alloc(16 * 1024, 120);
      while (!res.destroyed) {
        if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
      }
    });
    track(origin);
    px = await startProxy(origin.url);
    track(px);
    const s = net.connect(px.port, '127.0.0.1');
    s.write('GET /stream HTTP/1.1\r\nHost: t\r\nCookie: session=1\r\n\r\n');
    await new Promise((r) => s.once('data', r));
    s.destroy();
    await originSocketClosed.promise;
    expect(px.proxy.stats.s_pass).toBe(1);
  });
});
