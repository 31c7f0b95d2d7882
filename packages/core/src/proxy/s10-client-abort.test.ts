import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, until, useCleanup } from '../test-support/harness.js';

/**
 * Session 10 (issue 16, a miss's first byte): a client's waits (for the fetch's head, on the waiting list, for body
 * bytes) listen to its response's FetchAbort (`abortWatch`) instead of an AbortSignal built per miss. A client that
 * leaves still ends its waits at once, as with the signal.
 */
const track = useCleanup();

describe('a client leaving while it waits (abortWatch)', () => {
  it('a coalesced request whose client leaves before the head is not woken: the one left gets the object, one origin request', async () => {
    const gate = deferred();
    const origin = track(
      await startScriptedOrigin(async (_req, res) => {
        await gate.promise;
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '5' });
        res.end('hello');
      }),
    );
    const px = track(await startProxy(origin.url));
    const first = rawExchange(px.port, 'GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await until(() => origin.count === 1);
    const leaver = net.connect(px.port, '127.0.0.1');
    leaver.on('error', () => undefined);
    leaver.write('GET /slow HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => px.proxy.stats.busy_sleep === 1);
    const closed = new Promise((r) => leaver.once('close', r));
    leaver.destroy();
    await closed;
    // A third client on the waiting list stays there: the leaver's abort ends its own wait only.
    const third = rawExchange(px.port, 'GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await until(() => px.proxy.stats.busy_sleep === 2);
    gate.resolve();
    const [a, c] = (await Promise.all([first, third])).map(parseRawResponse);
    expect([a?.status, a?.body.toString()]).toEqual([200, 'hello']);
    expect([c?.status, c?.body.toString()]).toEqual([200, 'hello']);
    expect(c?.headers['cache-status']).toMatch(/^sluice; hit; ttl=\d+; detail=coalesced$/);
    // Only the third was woken: the leaver's wait ended when its connection closed.
    expect(px.proxy.stats.busy_wakeup).toBe(1);
    expect(origin.count).toBe(1);
  });

  it('a client that leaves while its pass waits for the next body bytes is cut at once: the origin connection is dropped', async () => {
    const originClosed = deferred();
    const origin = track(
      await startScriptedOrigin((req, res) => {
        req.socket.once('close', () => originClosed.resolve());
        res.writeHead(200, { 'cache-control': 'private' });
        // One piece, then nothing: the delivery waits for more with the client's abort as its only way out.
        res.write('first;');
      }),
    );
    const px = track(await startProxy(origin.url));
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('first;')) s.destroy();
    });
    s.write('GET /p HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\n\r\n');
    await originClosed.promise;
    expect(px.proxy.stats.s_pass).toBe(1);
    expect(origin.count).toBe(1);
  });
});
