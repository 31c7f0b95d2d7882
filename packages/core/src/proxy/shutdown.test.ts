import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, startProxy, until, useCleanup } from '../test-support/harness.js';

/**
 * Graceful shutdown (issue 10): SIGTERM used to cut responses in flight after ~85 ms. Now: stop accepting, close idle
 * keep-alive connections at once, let responses in flight end cleanly up to a deadline, then cut what is left.
 */
const track = useCleanup();

/** An origin that streams `parts` chunks `gapMs` apart (chunked, uncacheable so each request fetches). */
async function slowOrigin(parts: number, gapMs: number) {
  return track(
    await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'no-store' });
      for (let i = 0; i < parts; i++) {
        res.write(`part${i};`);
        await new Promise((r) => setTimeout(r, gapMs));
      }
      res.end();
    }),
  );
}

function client(port: number) {
  const sock = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('error', () => undefined);
  sock.on('close', () => (closed = true));
  const connected = new Promise<void>((r) => sock.once('connect', () => r()));
  return { sock, connected, received: () => Buffer.concat(chunks), isClosed: () => closed };
}

describe('graceful shutdown', () => {
  it('idle keep-alive connections close at once, a response in flight ends cleanly, new connections are refused', async () => {
    const origin = await slowOrigin(5, 60);
    const px = await startProxy(origin.url);
    const idle = client(px.port);
    await idle.connected;
    const busy = client(px.port);
    busy.sock.write('GET /stream HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => busy.received().includes('part0'));
    const done = px.proxy.shutdown(5_000);
    await until(() => idle.isClosed());
    expect(busy.isClosed()).toBe(false);
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(px.port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    expect(await done).toEqual({ cut: 0 });
    await until(() => busy.isClosed());
    const r = parseRawResponse(busy.received());
    expect(r.status).toBe(200);
    expect(r.terminated).toBe(true);
    expect(r.body.toString()).toBe('part0;part1;part2;part3;part4;');
    await px.origin.destroy();
  });

  it('a response still running at the deadline is cut (no clean end), and shutdown says so', async () => {
    const origin = await slowOrigin(50, 50);
    const px = await startProxy(origin.url);
    const busy = client(px.port);
    busy.sock.write('GET /long HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => busy.received().includes('part0'));
    expect(await px.proxy.shutdown(150)).toEqual({ cut: 1 });
    await until(() => busy.isClosed());
    const r = parseRawResponse(busy.received());
    expect(r.terminated).toBe(false);
    await px.origin.destroy();
  });
});
