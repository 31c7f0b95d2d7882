import net from 'node:net';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { createOriginClient, type OriginClient } from '@sluice/origin-client';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { KeepAliveClient, settlesWithin, startProxy, until, useCleanup } from '../test-support/harness.js';
import { createProxy } from './proxy.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyHooks } from '../policy/hooks.js';
import type { Upstream } from '../upstream.js';

/**
 * Issue 16, a miss's first byte: without an upstreamRequestFilter hook the origin request leaves in the turn the
 * miss is decided (no promise hop before it), and without an async upstreamResponseFilter the response is committed
 * in the turn it arrived. The hooks, when there are, still run in order and are awaited; the miss is still logged
 * whole; a client that leaves still aborts the origin request.
 */
const track = useCleanup();

async function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(`${url}${path}`, { headers: { host: 't', ...headers } });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

/** The real origin client, recording for each request whether a microtask queued in the recv hook had run by then. */
function recordingUpstream(origin: OriginClient, turn: { ended: boolean }, seen: boolean[]): Upstream {
  return {
    request: (req, opts) => {
      seen.push(turn.ended);
      return origin.request(req, opts);
    },
  };
}

async function proxyWith(originUrl: string, hooks: ProxyHooks, seen: boolean[], extra: { txlog?: TxLog } = {}): Promise<string> {
  const origin = createOriginClient({ backends: [{ url: originUrl }] });
  const turn = { ended: false };
  const all: ProxyHooks = {
    ...hooks,
    requestFilter(req, ctx) {
      turn.ended = false;
      queueMicrotask(() => (turn.ended = true));
      return hooks.requestFilter?.(req, ctx);
    },
  };
  const proxy = createProxy({ upstream: recordingUpstream(origin, turn, seen), hooks: all, ...extra });
  const addr = await proxy.listen(0);
  track({ close: async () => (await proxy.close(), await origin.destroy()) });
  return `http://127.0.0.1:${addr.port}`;
}

/** The records of a logged 1-chunk miss, each tag in order of first appearance (as varnishlog shows a miss). */
const TAGS_REQ = ['Begin', 'Timestamp', 'ReqStart', 'ReqMethod', 'ReqURL', 'ReqProtocol', 'ReqHeader', 'VCL_call', 'VCL_return', 'Link', 'RespProtocol', 'RespStatus', 'RespReason', 'RespHeader', 'ReqAcct', 'End'];
const TAGS_BE = ['Begin', 'Timestamp', 'BereqMethod', 'BereqURL', 'BereqProtocol', 'BereqHeader', 'VCL_call', 'VCL_return', 'BerespProtocol', 'BerespStatus', 'BerespReason', 'BerespHeader', 'TTL', 'Storage', 'Length', 'BereqAcct', 'End'];
const TIMESTAMPS_REQ = ['Start', 'Req', 'Fetch', 'Process', 'Resp'];
const TIMESTAMPS_BE = ['Start', 'Fetch', 'Bereq', 'Beresp', 'Process', 'BerespBody'];

describe('a miss without waiting hooks (issue 16)', () => {
  it('sends its origin request in the turn the miss was decided, before any queued microtask runs', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('x');
      }),
    );
    const seen: boolean[] = [];
    const url = await proxyWith(origin.url, {}, seen);
    expect((await get(url, '/a')).body).toBe('x');
    expect((await get(url, '/b')).body).toBe('x');
    expect(seen).toEqual([false, false]);
    expect(origin.count).toBe(2);
  });

  it('an upstreamRequestFilter hook still runs first, and an async one is awaited: what it sets reaches the origin', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('x');
      }),
    );
    const order: string[] = [];
    const seen: boolean[] = [];
    const hooks: ProxyHooks = {
      async upstreamRequestFilter(bereq) {
        order.push('upstreamRequestFilter');
        await new Promise((r) => setTimeout(r, 5));
        bereq.headers['x-late'] = 'set after an await';
      },
      upstreamResponseFilter(beresp) {
        order.push(`upstreamResponseFilter ${beresp.bereq.headers['x-late'] as string}`);
        return undefined;
      },
      responseFilter() {
        order.push('responseFilter');
      },
    };
    const url = await proxyWith(origin.url, hooks, seen);
    expect((await get(url, '/a')).status).toBe(200);
    expect(origin.requests[0]?.headers['x-late']).toBe('set after an await');
    expect(order).toEqual(['upstreamRequestFilter', 'upstreamResponseFilter set after an await', 'responseFilter']);
    // With the hook the request waits for it: the microtask queued in recv ran first.
    expect(seen).toEqual([true]);
  });

  it('upstreamResponseFilter: its synchronous change applies, a thenable is awaited, a throw fails the fetch with nothing kept', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('x');
      }),
    );
    const hooks: ProxyHooks = {
      upstreamResponseFilter(beresp) {
        const url = beresp.bereq.url;
        if (url === '/sync') beresp.ttlSec = 7;
        if (url === '/throws') throw new Error('policy bug');
        if (url === '/thenable') {
          // Not a native Promise: taken as `await` would take it.
          return { then: (ok: (v: undefined) => void) => setTimeout(() => ((beresp.ttlSec = 9), ok(undefined)), 5) } as unknown as Promise<undefined>;
        }
        return undefined;
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    expect((await get(px.url, '/sync')).headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; stored; ttl=7');
    expect((await get(px.url, '/thenable')).headers['cache-status']).toBe('sluice; fwd=uri-miss; fwd-status=200; stored; ttl=9');
    expect((await get(px.url, '/throws')).status).toBe(503);
    const before = origin.count;
    expect((await get(px.url, '/throws')).status).toBe(503);
    expect(origin.count).toBe(before + 1);
    expect(px.proxy.store.objectCount).toBe(2);
  });

  it('the miss is logged whole: the client transaction and its backend transaction with every record', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '5' });
        res.end('hello');
      }),
    );
    const sink = new MemorySink();
    const seen: boolean[] = [];
    const url = await proxyWith(origin.url, {}, seen, { txlog: new TxLog([sink]) });
    expect((await get(url, '/logged')).body).toBe('hello');
    await until(() => sink.groups.length === 1);
    const req = sink.groups[0] as Transaction;
    const be = req.children[0] as Transaction;
    const tags = (t: Transaction): string[] => [...new Set(t.records.map((r) => r.tag))];
    expect(tags(req)).toEqual(TAGS_REQ);
    expect(tags(be)).toEqual(TAGS_BE);
    expect(req.records.filter((r) => r.tag === 'Timestamp').map((r) => r.value.split(':')[0])).toEqual(TIMESTAMPS_REQ);
    expect(be.records.filter((r) => r.tag === 'Timestamp').map((r) => r.value.split(':')[0])).toEqual(TIMESTAMPS_BE);
    expect(be.records.find((r) => r.tag === 'BereqURL')?.value).toBe('/logged');
    expect(be.records.find((r) => r.tag === 'BereqAcct')?.value.split(' ')[4]).toBe('5');
    expect(seen).toEqual([false]);
  });

  it('a client that leaves a miss of an unstored body aborts the origin request (its connection is closed)', async () => {
    const originClosed = deferred<void>();
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'no-store' });
        res.write('first;');
        res.on('close', () => originClosed.resolve());
      }),
    );
    const seen: boolean[] = [];
    const url = await proxyWith(origin.url, {}, seen);
    const port = Number(new URL(url).port);
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => undefined);
    let got = '';
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('first;')) sock.destroy();
    });
    sock.write('GET /left HTTP/1.1\r\nHost: t\r\n\r\n');
    await originClosed.promise;
    expect(origin.count).toBe(1);
    expect(seen).toEqual([false]);
  });

  it('a Content-Length body that came whole with its head finishes the object at once: the connection is not held until the stream ends', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/short') {
          // Announces 10 bytes, sends 4 and dies: never complete, never kept.
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '10' });
          res.write('abcd');
          setTimeout(() => res.destroy(), 20);
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '5' });
        res.end('hello');
      }),
    );
    // The real origin's body, its end held back until the gate opens (the stream's end comes after its bytes).
    const gate = deferred<void>();
    const real = createOriginClient({ backends: [{ url: origin.url }] });
    const upstream: Upstream = {
      request: async (req, opts) => {
        const res = await real.request(req, opts);
        if (req.path === '/short') return res;
        // Every byte in hand when the head is handed over (as when they came in one read), the end held back.
        const held = new PassThrough();
        const read = new Promise<void>((resolve) => res.body.once('end', resolve));
        res.body.on('data', (c: Buffer) => held.write(c));
        res.body.resume();
        await read;
        void gate.promise.then(() => held.end());
        return { ...res, body: held };
      },
    };
    const proxy = createProxy({ upstream });
    const addr = await proxy.listen(0);
    track({ close: async () => (await proxy.close(), await real.destroy()) });
    const c = new KeepAliveClient(addr.port);
    track(c);
    const first = await c.send('GET', '/whole');
    expect([first.status, first.body.toString()]).toEqual([200, 'hello']);
    // The response ended with its bytes: the next request on the connection is answered, from the cache, while
    // the origin stream has not ended yet.
    const second = c.send('GET', '/whole');
    expect(await settlesWithin(second, 2000)).toBe(true);
    const hit = await second;
    expect(hit.body.toString()).toBe('hello');
    expect(hit.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin.count).toBe(1);
    gate.resolve();
    // A body short of its Content-Length is never finished early: the client is cut, nothing is kept.
    const cut = new KeepAliveClient(addr.port);
    track(cut);
    await expect(cut.send('GET', '/short')).rejects.toThrow(/connection closed/);
    await until(() => proxy.store.objectCount === 1);
    expect(origin.count).toBe(2);
  });

  // Session 11: a response's cache directives are worked out once and shared by the freshness, storing and builtin
  // rules while its fields stay the same strings; a hook that edits the fields on the same headers object must still
  // be obeyed by everything after it (the builtin rules, the stored object's stale-if-error), as before.
  it('an upstreamResponseFilter editing Cache-Control in place is obeyed by the builtin rules after it', async () => {
    let hits = 0;
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        hits++;
        res.writeHead(200, { 'cache-control': 'max-age=3600', 'content-length': '2' });
        res.end('ok');
      }),
    );
    const hooks: ProxyHooks = {
      upstreamResponseFilter(beresp) {
        if (beresp.bereq.url.startsWith('/private')) beresp.headers['cache-control'] = 'private';
        if (beresp.bereq.url.startsWith('/nostore')) beresp.headers['cache-control'] = ['max-age=3600', 'no-store'];
        return undefined;
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    for (const path of ['/private', '/nostore', '/kept']) for (let i = 0; i < 2; i++) expect((await get(px.url, path)).body).toBe('ok');
    // Two origin requests each for the edited ones (never stored), one for the kept one (the second was a hit).
    expect(hits).toBe(5);
    expect((await get(px.url, '/kept')).headers['cache-status']).toMatch(/; hit/);
  });
});
