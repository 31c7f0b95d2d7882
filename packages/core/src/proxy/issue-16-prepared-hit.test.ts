import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { JOINED_HELD_MAX_BYTES, joinedHitBytesHeld } from '../deliver/head.js';
import { testClock } from '../test-support/clock.js';
import { KeepAliveClient, parseRawResponse, rawExchange, startProxy, startRawOrigin, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Issue 16: a stored object's hit response is prepared once (head, and the body after it for small objects) and
 * reused by the hits that follow. Derived state must never outlive what it was derived from: Age and the Cache-Status
 * ttl as the clock moves, the object's headers after a 304 merge or a purge, a reload that adds a hook editing headers
 * per request, the connection lines of each client; and the body copies it keeps are bounded.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** A raw origin for /r/*: 200 with `x-rev` and an ETag (max-age=10), or a 304 with the current `x-rev` when revalidated. */
async function revOrigin(): Promise<{ url: string; readonly count: number; rev: number; close(): Promise<void> }> {
  const state = { rev: 1 };
  const o = await startRawOrigin((sock, head) => {
    const path = /^GET (\S+)/.exec(head)?.[1] ?? '/';
    if (/\r\nif-none-match: "v1"/i.test(head)) {
      sock.write(`HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncache-control: max-age=10\r\nx-rev: ${state.rev}\r\n\r\n`);
      return;
    }
    const body = `body of ${path}`;
    sock.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\ncache-control: max-age=10\r\netag: "v1"\r\nx-rev: ${state.rev}\r\n\r\n${body}`);
  });
  return {
    url: o.url,
    get count() {
      return o.count;
    },
    get rev() {
      return state.rev;
    },
    set rev(v: number) {
      state.rev = v;
    },
    close: () => o.close(),
  };
}

describe('issue 16: the prepared hit response', () => {
  it('Age and the Cache-Status ttl follow the clock; within one second the hits are the same bytes', async () => {
    const origin = track(await revOrigin());
    const clock = testClock();
    const px = track(await startProxy(origin.url, { now: clock.now }));
    const client = new KeepAliveClient(px.port);
    expect((await client.send('GET', '/r/age')).headers['cache-status']).toMatch(/; fwd=uri-miss/);
    const a = await client.send('GET', '/r/age');
    const b = await client.send('GET', '/r/age');
    expect(a.headers['age']).toBe('0');
    expect(a.headers['cache-status']).toBe('sluice; hit; ttl=10');
    expect(b.raw.equals(a.raw)).toBe(true);
    clock.advance(2.5);
    const c = await client.send('GET', '/r/age');
    expect(c.headers['age']).toBe('2');
    expect(c.headers['cache-status']).toBe('sluice; hit; ttl=8');
    expect(c.body.toString()).toBe('body of /r/age');
    clock.advance(1);
    const d = await client.send('GET', '/r/age');
    expect(d.headers['age']).toBe('3');
    expect(d.headers['cache-status']).toBe('sluice; hit; ttl=7');
    expect(origin.count).toBe(1);
    await client.close();
    expect(uncaught).toEqual([]);
  });

  it('a 304 that changes a header: the hits after the revalidation carry the merged header', async () => {
    const origin = track(await revOrigin());
    const clock = testClock();
    const px = track(await startProxy(origin.url, { now: clock.now }));
    const client = new KeepAliveClient(px.port);
    await client.send('GET', '/r/304');
    expect((await client.send('GET', '/r/304')).headers['x-rev']).toBe('1');
    origin.rev = 2;
    clock.advance(11);
    const revalidated = await client.send('GET', '/r/304');
    expect(origin.count).toBe(2);
    expect(revalidated.headers['x-rev']).toBe('2');
    const hit = await client.send('GET', '/r/304');
    expect(hit.headers['cache-status']).toBe('sluice; hit; ttl=10');
    expect(hit.headers['x-rev']).toBe('2');
    expect(hit.body.toString()).toBe('body of /r/304');
    expect(origin.count).toBe(2);
    await client.close();
  });

  it('a purge: the next object is fetched and its own headers served, never the purged one\'s prepared head', async () => {
    const origin = track(await revOrigin());
    const px = track(await startProxy(origin.url, { purgeAllow: ['127.0.0.1'] }));
    const client = new KeepAliveClient(px.port);
    await client.send('GET', '/r/purge');
    expect((await client.send('GET', '/r/purge')).headers['x-rev']).toBe('1');
    origin.rev = 3;
    expect((await client.send('PURGE', '/r/purge')).status).toBe(200);
    expect((await client.send('GET', '/r/purge')).headers['x-rev']).toBe('3');
    const hit = await client.send('GET', '/r/purge');
    expect(hit.headers['cache-status']).toMatch(/; hit/);
    expect(hit.headers['x-rev']).toBe('3');
    expect(origin.count).toBe(2);
    await client.close();
  });

  it('a reload that adds a hook editing headers per request: every hit is the hook\'s; removed again, the hits are plain', async () => {
    const origin = track(await revOrigin());
    const px = track(await startProxy(origin.url));
    const client = new KeepAliveClient(px.port);
    await client.send('GET', '/r/hook');
    const plain = await client.send('GET', '/r/hook');
    expect(plain.headers['x-n']).toBeUndefined();
    let n = 0;
    px.proxy.reconfigure({
      hooks: {
        responseFilter: (res) => {
          res.headers['x-n'] = String(++n);
          res.headers['x-rev'] = 'edited';
          return undefined;
        },
      },
    });
    const one = await client.send('GET', '/r/hook');
    const two = await client.send('GET', '/r/hook');
    expect([one.headers['x-n'], two.headers['x-n']]).toEqual(['1', '2']);
    expect([one.headers['x-rev'], two.headers['x-rev']]).toEqual(['edited', 'edited']);
    expect(two.headers['cache-status']).toMatch(/; hit/);
    px.proxy.reconfigure({ hooks: {} });
    const after = await client.send('GET', '/r/hook');
    expect(after.headers['x-n']).toBeUndefined();
    expect(after.headers['x-rev']).toBe('1');
    expect(after.raw.equals(plain.raw)).toBe(true);
    expect(origin.count).toBe(1);
    await client.close();
  });

  it('each client gets its own connection lines: close, HTTP/1.0 with and without keep-alive, then kept-alive hits again', async () => {
    const origin = track(await revOrigin());
    const px = track(await startProxy(origin.url));
    const client = new KeepAliveClient(px.port);
    await client.send('GET', '/r/conn');
    const kept = await client.send('GET', '/r/conn');
    expect(kept.headers['connection']).toBeUndefined();
    const closed = parseRawResponse(await rawExchange(px.port, 'GET /r/conn HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(closed.headers['connection']).toBe('close');
    expect(closed.headers['cache-status']).toMatch(/; hit/);
    expect(closed.body.toString()).toBe('body of /r/conn');
    const http10 = parseRawResponse(await rawExchange(px.port, 'GET /r/conn HTTP/1.0\r\nHost: t\r\n\r\n'));
    expect(http10.headers['connection']).toBe('close');
    expect(http10.body.toString()).toBe('body of /r/conn');
    // HTTP/1.0 asking for keep-alive: told so, and the connection answers a second request.
    const sock = net.connect(px.port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const answers = (count: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (got.toString('latin1').split('body of /r/conn').length - 1 >= count) {
            sock.off('data', onData);
            resolve();
          }
        };
        const onData = (d: Buffer): void => {
          got = Buffer.concat([got, d]);
          check();
        };
        sock.on('data', onData);
        check();
      });
    sock.write('GET /r/conn HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n');
    await answers(1);
    expect(got.toString('latin1')).toMatch(/\r\nconnection: keep-alive\r\n/);
    sock.write('GET /r/conn HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n');
    await answers(2);
    sock.destroy();
    const again = await client.send('GET', '/r/conn');
    expect(again.headers['connection']).toBeUndefined();
    expect(again.body.toString()).toBe('body of /r/conn');
    expect(client.closed).toBe(false);
    expect(origin.count).toBe(1);
    await client.close();
    expect(uncaught).toEqual([]);
  });

  it('the body copies held for joined hit responses stay within their budget, and go when the second changes', async () => {
    const origin = track(await startFixtureOrigin());
    // A second no other test's clock is in (before the origin's Date, so Age 0): the first prepared response starts the
    // count afresh.
    const clock = testClock(Date.parse('2026-12-01T11:00:00Z'));
    const px = track(await startProxy(origin.url, { now: clock.now }));
    const client = new KeepAliveClient(px.port);
    const size = 100_000;
    const expected = 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(size / 26)).slice(0, size);
    // 100 objects of 100 kB, each hit once in the same second: more than the budget of copies.
    const count = Math.ceil((JOINED_HELD_MAX_BYTES * 1.2) / size);
    for (let i = 0; i < count; i++) {
      await client.send('GET', `/static/${size}?i=${i}`);
      const hit = await client.send('GET', `/static/${size}?i=${i}`);
      expect(hit.headers['cache-status']).toMatch(/; hit/);
      expect(hit.body.toString('latin1')).toBe(expected);
      expect(joinedHitBytesHeld()).toBeLessThanOrEqual(JOINED_HELD_MAX_BYTES);
    }
    expect(joinedHitBytesHeld()).toBeGreaterThan(JOINED_HELD_MAX_BYTES - 2 * size);
    clock.advance(1);
    const next = await client.send('GET', `/static/${size}?i=0`);
    expect(next.body.toString('latin1')).toBe(expected);
    expect(joinedHitBytesHeld()).toBe(next.raw.length);
    await client.close();
  });
});
