import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createOriginClient } from '@sluice/origin-client';
import { Http1Response } from '../http1/response.js';
import { KeepAliveClient, parseRawResponse, rawExchange, startRawOrigin, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';
import { createProxy } from './proxy.js';
import type { Upstream } from '../upstream.js';

/**
 * Session 8, a miss's first byte (issue 16). undici writes a request on a reused keep-alive origin connection from an
 * Immediate (it lets the poll phase see what the idle socket may hold first), so whatever the proxy does in the turn
 * the miss is decided runs before that write. The miss step leaves the delivery's setup (the client's abort signal,
 * the wait for the head) to after the write; the miss is otherwise delivered, stored and coalesced as before.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const signalGetter = Object.getOwnPropertyDescriptor(Http1Response.prototype, 'signal') as PropertyDescriptor;
const watchGetter = Object.getOwnPropertyDescriptor(Http1Response.prototype, 'abortWatch') as PropertyDescriptor;
afterEach(() => {
  Object.defineProperty(Http1Response.prototype, 'signal', signalGetter);
  Object.defineProperty(Http1Response.prototype, 'abortWatch', watchGetter);
});

async function proxyOver(originUrl: string, wrap: (o: Upstream) => Upstream = (o) => o): Promise<{ port: number }> {
  const origin = createOriginClient({ backends: [{ url: originUrl }] });
  const proxy = createProxy({ upstream: wrap(origin) });
  const addr = await proxy.listen(0);
  track({ close: async () => (await proxy.close(), await origin.destroy()) });
  return { port: addr.port };
}

describe('a miss on a reused origin connection (issue 16, first byte)', () => {
  // Session 10: the delivery's waits listen to the response's abortWatch (a FetchAbort); the AbortSignal is never
  // built for a plain miss. Both getters are watched: the watch comes after the write, the signal not at all.
  it("the client's abort signal is made after the origin request's write, not in the turn before it", async () => {
    const origin = track(await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok')));
    const events: string[] = [];
    let measuring = false;
    const px = await proxyOver(origin.url, (o) => ({
      request: (req, opts) => {
        const p = o.request(req, opts);
        if (measuring) {
          events.push('dispatched');
          // Queued after undici's own Immediate (the one that writes the request on a reused connection).
          setImmediate(() => events.push('after the origin write'));
        }
        return p;
      },
    }));
    Object.defineProperty(Http1Response.prototype, 'signal', {
      configurable: true,
      get(this: Http1Response) {
        if (measuring && !events.includes('client signal')) events.push('client signal');
        return signalGetter.get?.call(this) as AbortSignal;
      },
    });
    Object.defineProperty(Http1Response.prototype, 'abortWatch', {
      configurable: true,
      get(this: Http1Response) {
        if (measuring && !events.includes('client abort watch')) events.push('client abort watch');
        return watchGetter.get?.call(this) as unknown;
      },
    });
    const c = new KeepAliveClient(px.port);
    track(c);
    // The first miss opens the origin connection; the second reuses it.
    expect((await c.send('GET', '/a')).body.toString()).toBe('ok');
    measuring = true;
    const r = await c.send('GET', '/b');
    measuring = false;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('ok');
    expect(events).toEqual(['dispatched', 'after the origin write', 'client abort watch']);
    expect(origin.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('a client that hangs up right after its request: the miss is fetched once and kept for the next client', async () => {
    const gate: { answer: (() => void) | undefined } = { answer: undefined };
    const origin = track(
      await startRawOrigin((s) => {
        gate.answer = () => s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello');
      }),
    );
    const px = await proxyOver(origin.url);
    // Warm the origin connection, so the next miss takes the reused-connection path.
    const warm = rawExchange(px.port, 'GET /warm HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await until(() => gate.answer !== undefined);
    gate.answer?.();
    expect(parseRawResponse(await warm).status).toBe(200);
    gate.answer = undefined;
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('GET /gone HTTP/1.1\r\nHost: t\r\n\r\n');
    s.destroy();
    await until(() => gate.answer !== undefined);
    (gate.answer as (() => void) | undefined)?.();
    await until(() => origin.count === 2);
    const again = parseRawResponse(await rawExchange(px.port, 'GET /gone HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(again.status).toBe(200);
    expect(again.body.toString()).toBe('hello');
    expect(origin.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('concurrent misses of one URL on reused connections: one origin request, every client served', async () => {
    let pending: Array<() => void> = [];
    const origin = track(
      await startRawOrigin((s) => {
        pending.push(() => s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nabc'));
      }),
    );
    const px = await proxyOver(origin.url);
    const clients = Array.from({ length: 4 }, () => track(new KeepAliveClient(px.port)));
    const first = clients.map((c, i) => c.send('GET', `/w${i}`));
    await until(() => pending.length === 4);
    for (const p of pending) p();
    pending = [];
    for (const r of await Promise.all(first)) expect(r.status).toBe(200);
    const same = clients.map((c) => c.send('GET', '/same'));
    await until(() => pending.length === 1);
    pending[0]?.();
    for (const r of await Promise.all(same)) expect(r.body.toString()).toBe('abc');
    expect(origin.count).toBe(5);
    expect(uncaught).toEqual([]);
  });

  it('an upstream that answers at once (no Immediate in between) is delivered as before', async () => {
    const { PassThrough } = await import('node:stream');
    const upstream: Upstream = {
      request: () => {
        const body = new PassThrough();
        body.end('now');
        return Promise.resolve({ status: 200, headers: { 'cache-control': 'max-age=60', 'content-length': '3' }, body });
      },
    };
    const proxy = createProxy({ upstream });
    const addr = await proxy.listen(0);
    track({ close: () => proxy.close() });
    const c = track(new KeepAliveClient(addr.port));
    expect((await c.send('GET', '/x')).body.toString()).toBe('now');
    expect((await c.send('GET', '/x')).headers['cache-status']).toMatch(/hit/);
  });
});

describe('origin response heads handed on without a copy', () => {
  it('a field named __proto__ from the origin is dropped; the others reach the client as sent', async () => {
    const origin = track(
      await startRawOrigin((s) => s.write('HTTP/1.1 200 OK\r\n__proto__: x\r\nX-One: 1\r\nX-Two: a\r\nX-Two: b\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok')),
    );
    const oc = createOriginClient({ backends: [{ url: origin.url }] });
    track({ close: () => oc.destroy() });
    const res = await oc.request({ method: 'GET', path: '/p', headers: { host: 't' }, body: null }, { signal: new AbortController().signal });
    await res.body.resume();
    expect(Object.hasOwn(res.headers, '__proto__')).toBe(false);
    expect(Object.getPrototypeOf(res.headers)).toBe(Object.prototype);
    expect(res.headers['x-one']).toBe('1');
    expect(res.headers['x-two']).toEqual(['a', 'b']);
    const px = await proxyOver(origin.url);
    const r = parseRawResponse(await rawExchange(px.port, 'GET /q HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(200);
    expect(r.head).not.toMatch(/__proto__/i);
    expect(r.head).toMatch(/\r\nx-one: 1\r\n/i);
    expect(uncaught).toEqual([]);
  });
});
