import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { directWriteAvailable, directWriteCounts } from '../http1/direct-write.js';
import { testClock } from '../test-support/clock.js';
import { KeepAliveClient, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';
import { lateReader, splitResponses } from '../test-support/raw-responses.js';
import { MemorySink, TxLog } from '../txlog/txlog.js';

/**
 * Session 8 (issue 16, hits): a prepared hit response is written straight to the socket's handle when nothing else is
 * queued on the socket (http1/direct-write.ts), not through the socket's Writable. Every test runs with direct writes
 * on and off (the Writable path, as before): the bytes on the wire, pipelining while earlier responses are still
 * queued, a client that stops reading (bounded bytes held), and a client that resets the connection mid-write.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

/** What the fixture origin sends for /static/<n>: a repeating a-z pattern. */
const pattern = (n: number): string => 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(n / 26)).slice(0, n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const modes = [
  ['direct writes', true],
  ['Writable writes', false],
] as const;

/** Bytes the proxy has handed its client sockets that the kernel has not taken: the Writables' and libuv's queues. */
function heldBytes(px: { proxy: { server: { connections: Iterable<{ socket: net.Socket }> } } }): number {
  let n = 0;
  for (const c of px.proxy.server.connections) {
    const h = (c.socket as unknown as { _handle: { writeQueueSize: number } | null })._handle;
    n += c.socket.writableLength + (h?.writeQueueSize ?? 0);
  }
  return n;
}

describe('s8: whole hit responses written straight to the socket handle', () => {
  it('this Node allows direct writes (else every test below would only test the Writable path twice)', () => {
    expect(directWriteAvailable).toBe(true);
  });

  it('hits are the same bytes with direct writes on and off: joined, head + body chunks, and 1 MiB', async () => {
    const origin = track(await startFixtureOrigin());
    const clock = testClock();
    const on = track(await startProxy(origin.url, { now: clock.now, directWrites: true }));
    const off = track(await startProxy(origin.url, { now: clock.now, directWrites: false }));
    const a = new KeepAliveClient(on.port);
    const b = new KeepAliveClient(off.port);
    // Around the 128 KiB join limit (head + body in one Buffer vs the head and the object's chunks in one writev).
    for (const size of [10, 1000, 20_000, 65_536, 130_000, 131_000, 140_000, 1_048_576]) {
      const path = `/static/${size}`;
      await a.send('GET', path);
      await b.send('GET', path);
      const before = { ...directWriteCounts };
      const hitA = await a.send('GET', path);
      const mid = { ...directWriteCounts };
      const hitB = await b.send('GET', path);
      expect(hitA.headers['cache-status']).toMatch(/; hit/);
      expect(hitA.body.toString('latin1')).toBe(pattern(size));
      // The same bytes, but for the origin's Date field (each proxy fetched the object itself, maybe a second apart).
      const noDate = (b: Buffer): string => b.toString('latin1').replace(/\r\ndate: [^\r]*/i, '\r\ndate: -');
      expect(noDate(hitA.raw)).toBe(noDate(hitB.raw));
      expect(hitA.raw.length).toBe(hitB.raw.length);
      // The direct proxy's hit went straight to the handle; the other's did not.
      expect(mid.whole + mid.queued - before.whole - before.queued).toBe(1);
      expect(directWriteCounts).toEqual(mid);
    }
    await a.close();
    await b.close();
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: pipelined hits, misses and HEADs read late arrive in order, byte for byte', async (_name, directWrites) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url, { directWrites }));
    // 4 MiB hits: more in all than the kernel's socket buffers take (their receive side grows to 32 MiB here), so some
    // direct writes are left queued while the client does not read.
    const sizes = [70_000, 4_194_304, 3000, 200_000, 1_048_576];
    for (const s of sizes) {
      const c = new KeepAliveClient(px.port);
      await c.send('GET', `/static/${s}`);
      await c.close();
    }
    // Hits of every size, HEADs, and misses (new sizes, streamed by the Writable path) between them.
    const reqs: Array<{ method: string; size: number }> = [];
    for (let i = 0; i < 60; i++) {
      const size = i % 7 === 3 ? 50_000 + i : (sizes[i % sizes.length] as number);
      reqs.push({ method: i % 5 === 4 ? 'HEAD' : 'GET', size });
    }
    const wire = reqs.map((r, i) => `${r.method} /static/${r.size} HTTP/1.1\r\nHost: t\r\n${i === reqs.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('');
    const before = { ...directWriteCounts };
    const client = await lateReader(px.port, wire, track);
    // The client reads nothing for a while: the socket buffers fill, later writes wait behind earlier ones.
    await sleep(300);
    const all = await client.read();
    const got = splitResponses(
      all,
      reqs.map((r) => r.method),
    );
    expect(got.length).toBe(reqs.length);
    got.forEach((g, i) => {
      const r = reqs[i] as { method: string; size: number };
      expect(g.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(g.head).toContain(`\r\ncontent-length: ${r.size}`);
      expect(g.body.toString('latin1')).toBe(r.method === 'HEAD' ? '' : pattern(r.size));
    });
    if (directWrites) {
      // Some hits left whole, and some were still being taken when the reads stopped (queued in libuv).
      expect(directWriteCounts.whole).toBeGreaterThan(before.whole);
      expect(directWriteCounts.queued).toBeGreaterThan(before.queued);
    } else {
      expect(directWriteCounts).toEqual(before);
    }
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: hits pipelined between HEAD responses (written through the Writable) arrive in order, read slowly', async (_name, directWrites) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url, { directWrites }));
    const warm = new KeepAliveClient(px.port);
    await warm.send('GET', '/static/10');
    await warm.close();
    // A HEAD's response goes through the Writable; when the socket buffer is full it stays there (under the drain mark,
    // so the next request is answered at once): a hit then must not overtake it.
    const groups = 3000;
    const head = 'HEAD /static/10 HTTP/1.1\r\nHost: t\r\n\r\n'.repeat(5);
    const wire = `${head}GET /static/10 HTTP/1.1\r\nHost: t\r\n\r\n`.repeat(groups - 1) + `${head}GET /static/10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`;
    const before = { ...directWriteCounts };
    const client = await lateReader(px.port, wire, track);
    await sleep(300);
    // Then read slowly: a pause every 64 KiB or so, so the buffer is full again and again.
    const chunks: Buffer[] = [];
    let since = 0;
    client.sock.on('data', (d: Buffer) => {
      chunks.push(d);
      since += d.length;
      if (since > 64 * 1024) {
        since = 0;
        client.sock.pause();
        setTimeout(() => client.sock.resume(), 2);
      }
    });
    const closed = new Promise<void>((r) => client.sock.once('close', () => r()));
    client.sock.resume();
    await closed;
    const methods = Array.from({ length: 6 * groups }, (_, i) => (i % 6 === 5 ? 'GET' : 'HEAD'));
    const got = splitResponses(Buffer.concat(chunks), methods);
    expect(got.length).toBe(6 * groups);
    got.forEach((g, i) => {
      expect(g.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(g.body.toString('latin1')).toBe(i % 6 === 5 ? pattern(10) : '');
    });
    // (Whether a hit found a HEAD's bytes still in the Writable depends on the kernel's buffer sizes: direct-write.test.ts
    // makes that case on purpose.)
    if (directWrites) expect(directWriteCounts.whole).toBeGreaterThan(before.whole);
    else expect(directWriteCounts).toEqual(before);
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: a client that stops reading 1 MiB hits holds a bounded number of bytes in the proxy, then gets them all', async (_name, directWrites) => {
    const origin = track(await startFixtureOrigin());
    const px = track(await startProxy(origin.url, { directWrites }));
    const size = 1_048_576;
    const warm = new KeepAliveClient(px.port);
    await warm.send('GET', `/static/${size}`);
    await warm.close();
    const before = px.proxy.stats.client_req;
    const n = 100;
    const client = await lateReader(px.port, `GET /static/${size} HTTP/1.1\r\nHost: t\r\n\r\n`.repeat(n - 1) + `GET /static/${size} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`, track);
    await until(() => px.proxy.stats.client_req > before);
    // Let it run: without the bound every response would be written, ~100 MiB for a client that reads nothing.
    let served = -1;
    while (served !== px.proxy.stats.client_req) {
      served = px.proxy.stats.client_req;
      await sleep(200);
    }
    expect(served - before).toBeLessThan(20);
    // At most one response's bytes (plus a head) wait in the proxy: in the Writable or (a direct write) in libuv's
    // queue; a Writable's write in flight is counted in both, hence two.
    expect(heldBytes(px)).toBeLessThan(2 * (size + 4096));
    // Another client is served meanwhile.
    const other = new KeepAliveClient(px.port);
    expect((await other.send('GET', `/static/${size}`)).body.length).toBe(size);
    await other.close();
    const got = splitResponses(await client.read(), Array(n).fill('GET'));
    expect(got.length).toBe(n);
    for (const g of got) expect(g.body.toString('latin1')).toBe(pattern(size));
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: a client that resets the connection mid-write: no crash, its session closed and logged once, others served', async (_name, directWrites) => {
    const origin = track(await startFixtureOrigin());
    const sink = new MemorySink();
    const px = track(await startProxy(origin.url, { directWrites, txlog: new TxLog([sink]) }));
    const size = 1_048_576;
    const warm = new KeepAliveClient(px.port);
    await warm.send('GET', `/static/${size}`);
    await warm.close();
    await until(() => sink.sessions.length === 1);
    const before = { ...directWriteCounts };
    const client = await lateReader(px.port, `GET /static/${size} HTTP/1.1\r\nHost: t\r\n\r\n`.repeat(30), track);
    // Wait until the proxy is stuck on a write the client does not take (nothing more is answered).
    let served = -1;
    await until(() => px.proxy.stats.client_req > 1);
    while (served !== px.proxy.stats.client_req) {
      served = px.proxy.stats.client_req;
      await sleep(150);
    }
    if (directWrites) expect(directWriteCounts.queued).toBeGreaterThan(before.queued);
    // Take a little, then reset (RST) while the proxy's write is in flight.
    await new Promise<void>((r) => {
      let got = 0;
      client.sock.on('data', (d: Buffer) => {
        got += d.length;
        if (got > 100_000) {
          client.sock.pause();
          r();
        }
      });
      client.sock.resume();
    });
    client.sock.resetAndDestroy();
    await until(() => sink.sessions.length === 2);
    await sleep(100);
    expect(sink.sessions.length).toBe(2);
    expect(px.proxy.server.connections.size).toBe(0);
    const other = new KeepAliveClient(px.port);
    expect((await other.send('GET', `/static/${size}`)).body.toString('latin1')).toBe(pattern(size));
    await other.close();
    expect(uncaught).toEqual([]);
  });
});
