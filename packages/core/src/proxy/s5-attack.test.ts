import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { rawExchange, parseRawResponse, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Session 5 attack: the speed changes (data-event pump, transit pause, sendBody queueing, synchronous driver, head
 * search, 16 KiB join, range probe, txlog worker) attacked from outside. Real loopback origins, real sockets.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** An origin on a raw socket that answers every request head with `reply`. */
async function startRawOrigin(reply: (sock: net.Socket, head: string) => void): Promise<{ url: string; readonly count: number; close(): Promise<void> }> {
  let count = 0;
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        count++;
        reply(s, head);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    get count() {
      return count;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('async hooks before the pump listens', () => {
  for (const split of [false, true]) {
    it(`an upstreamResponseFilter that resolves after 50 ms, origin body sent ${split ? 'in two parts' : 'with the head'}: the miss and the later hit are byte-exact`, async () => {
      const body = pattern(200 * 1024);
      const origin = track(
        await startRawOrigin((s) => {
          const head = Buffer.from(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n`);
          if (!split) s.write(Buffer.concat([head, body]));
          else {
            s.write(Buffer.concat([head, body.subarray(0, 1000)]));
            setTimeout(() => s.write(body.subarray(1000)), 10);
          }
        }),
      );
      const px = track(
        await startProxy(origin.url, {
          hooks: {
            upstreamResponseFilter: () => new Promise((r) => setTimeout(() => r(undefined), 50)),
          },
        }),
      );
      const miss = await request(`${px.url}/a`);
      const got = Buffer.from(await miss.body.arrayBuffer());
      expect(miss.statusCode).toBe(200);
      expect(got.length).toBe(body.length);
      expect(got.equals(body)).toBe(true);
      const hit = await request(`${px.url}/a`);
      const got2 = Buffer.from(await hit.body.arrayBuffer());
      expect(got2.equals(body)).toBe(true);
      expect(origin.count).toBe(1);
      expect(uncaught).toEqual([]);
    });
  }
});
