import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { directWriteAvailable, directWriteCounts, writeDirect } from './direct-write.js';

/**
 * writeDirect on a real loopback socket pair. One write syscall is taken up to the socket's send buffer (4 MiB at most,
 * tcp_wmem's maximum), so a write of 16 MiB to a client that does not read is certain to be left partly queued: that
 * makes the cases where bytes are still queued (in the Writable, or in libuv from a direct write) happen on purpose.
 */
const BIG = 16 * 1024 * 1024;
const open: net.Socket[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((srv) => new Promise((r) => srv.close(r))));
});

/** A connected pair: `server` as the HTTP server sees it, `client` paused (reads nothing until resumed). */
async function pair(): Promise<{ server: net.Socket; client: net.Socket }> {
  let accepted!: (s: net.Socket) => void;
  const got = new Promise<net.Socket>((r) => (accepted = r));
  const srv = net.createServer((s) => accepted(s));
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  client.pause();
  const server = await got;
  await new Promise<void>((r) => (client.readyState === 'open' ? r() : client.once('connect', () => r())));
  open.push(client, server);
  return { server, client };
}

/** Reads everything `client` gets until the other side ends or `n` bytes arrived. */
function readAll(client: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    client.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) resolve(Buffer.concat(chunks));
    });
    client.on('end', () => resolve(Buffer.concat(chunks)));
    client.resume();
  });
}

const filled = (n: number, byte: number): Buffer => Buffer.alloc(n, byte);

describe('writeDirect', () => {
  it('is available on this Node', () => {
    expect(directWriteAvailable).toBe(true);
  });

  it('bytes the kernel takes at once: done, no callback, bytesWritten counts them', async () => {
    const { server, client } = await pair();
    let called = 0;
    expect(writeDirect(server, Buffer.from('hello '), () => called++)).toBe('done');
    expect(writeDirect(server, [Buffer.from('wor'), Buffer.alloc(0), Buffer.from('ld')], () => called++)).toBe('done');
    expect(server.bytesWritten).toBe(11);
    expect((await readAll(client, 11)).toString()).toBe('hello world');
    expect(called).toBe(0);
  });

  it('writes taken whole share one request object; one left queued keeps its own, and the writes after it stay in order', async () => {
    const { server, client } = await pair();
    const first = await pair();
    // Warm: one write makes the shared request object if none exists yet.
    expect(writeDirect(first.server, Buffer.from('x'), () => undefined)).toBe('done');
    const made = directWriteCounts.requests;
    for (let i = 0; i < 50; i++) expect(writeDirect(i % 2 === 0 ? server : first.server, Buffer.from(`w${i};`), () => undefined)).toBe('done');
    expect(directWriteCounts.requests).toBe(made);
    // A write left queued holds its request object until it completes: the next write (another socket) makes a new one,
    // and that one is shared again afterwards.
    const done: boolean[] = [];
    expect(writeDirect(server, filled(BIG, 0x62), (ok) => done.push(ok))).toBe('pending');
    expect(writeDirect(first.server, [Buffer.from('after-'), Buffer.from('big')], () => undefined)).toBe('done');
    expect(directWriteCounts.requests).toBe(made + 1);
    expect(writeDirect(first.server, Buffer.from('!'), () => undefined)).toBe('done');
    expect(directWriteCounts.requests).toBe(made + 1);
    const small = Array.from({ length: 50 }, (_, i) => `w${i};`);
    const firstWant = `x${small.filter((_, i) => i % 2 === 1).join('')}after-big!`;
    expect((await readAll(first.client, firstWant.length)).toString()).toBe(firstWant);
    const serverWant = small.filter((_, i) => i % 2 === 0).join('');
    const got = await readAll(client, serverWant.length + BIG);
    expect(got.subarray(0, serverWant.length).toString()).toBe(serverWant);
    expect(got.length).toBe(serverWant.length + BIG);
    expect(got.subarray(serverWant.length).every((b) => b === 0x62)).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual([true]);
  });

  it('a write the kernel does not take whole: pending, later writes go after it, done called once it left', async () => {
    const { server, client } = await pair();
    const done: boolean[] = [];
    const before = directWriteCounts.queued;
    expect(writeDirect(server, filled(BIG, 0x61), (ok) => done.push(ok))).toBe('pending');
    expect(directWriteCounts.queued).toBe(before + 1);
    // The Writable knows nothing of it; a write through it (and another direct one) is queued after it by libuv.
    expect(server.writableLength).toBe(0);
    server.write(Buffer.from('after-writable'));
    const all = readAll(client, BIG + 'after-writable'.length);
    const got = await all;
    expect(got.length).toBe(BIG + 14);
    expect(got.subarray(0, BIG).every((b) => b === 0x61)).toBe(true);
    expect(got.subarray(BIG).toString()).toBe('after-writable');
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual([true]);
  });

  it('falls back while the Writable holds bytes (queued behind a full socket, or corked): those go first', async () => {
    const { server, client } = await pair();
    server.write(filled(BIG, 0x62));
    expect(server.writableLength).toBeGreaterThan(0);
    const behind = directWriteCounts.behind;
    expect(writeDirect(server, Buffer.from('X'), () => undefined)).toBe('fallback');
    expect(directWriteCounts.behind).toBe(behind + 1);
    server.write(Buffer.from('X'));
    const got = await readAll(client, BIG + 1);
    expect(got.length).toBe(BIG + 1);
    expect(got[BIG - 1]).toBe(0x62);
    expect(got.subarray(BIG).toString()).toBe('X');
    // Corked, with bytes waiting in the Writable: the same.
    const p2 = await pair();
    p2.server.cork();
    p2.server.write('first ');
    expect(writeDirect(p2.server, Buffer.from('second'), () => undefined)).toBe('fallback');
    p2.server.write('second');
    p2.server.uncork();
    expect((await readAll(p2.client, 12)).toString()).toBe('first second');
  });

  it('falls back on an ended or destroyed socket (the Writable then gives its usual errors)', async () => {
    const { server } = await pair();
    server.end();
    expect(writeDirect(server, Buffer.from('x'), () => undefined)).toBe('fallback');
    const p2 = await pair();
    p2.server.destroy();
    expect(writeDirect(p2.server, Buffer.from('x'), () => undefined)).toBe('fallback');
  });

  it('a client that resets while a direct write is queued: the socket is destroyed once, done(false), nothing thrown', async () => {
    const { server, client } = await pair();
    const errors: unknown[] = [];
    let closes = 0;
    server.on('error', (e) => errors.push(e));
    server.on('close', () => closes++);
    const done: boolean[] = [];
    expect(writeDirect(server, filled(BIG, 0x63), (ok) => done.push(ok))).toBe('pending');
    client.resetAndDestroy();
    await new Promise<void>((r) => (server.destroyed && closes > 0 ? r() : server.once('close', () => r())));
    await new Promise((r) => setTimeout(r, 50));
    expect(server.destroyed).toBe(true);
    expect(closes).toBe(1);
    expect(done).toEqual([false]);
    // One error at most (the reset seen by the read or by the write), as a Writable write would give.
    expect(errors.length).toBeLessThanOrEqual(1);
    expect(writeDirect(server, Buffer.from('x'), () => undefined)).toBe('fallback');
  });

  it("the socket's idle timeout is held off while a queued direct write moves, as for a Writable write", { timeout: 40_000 }, async () => {
    const { server, client } = await pair();
    let timeouts = 0;
    server.on('timeout', () => timeouts++);
    server.setTimeout(400);
    // More than the kernel's buffers hold (send buffer and the receiver's, which grows to tcp_rmem's maximum, 32 MiB
    // here): the write is pending until the client has read a good part of it.
    const size = 8 * BIG;
    const start = Date.now();
    let doneAfterMs = -1;
    let timeoutsWhilePending = -1;
    expect(
      writeDirect(server, filled(size, 0x64), () => {
        doneAfterMs = Date.now() - start;
        timeoutsWhilePending = timeouts;
      }),
    ).toBe('pending');
    // The client reads slowly: a pause of 50 ms after each 4 MiB (so the write is pending for at least (128 - 36) / 4
    // pauses, over a second), and the write moves in every timeout period.
    let got = 0;
    let since = 0;
    client.on('data', (d: Buffer) => {
      got += d.length;
      since += d.length;
      if (since < 4 * 1024 * 1024) return;
      since = 0;
      client.pause();
      setTimeout(() => client.resume(), 50);
    });
    client.resume();
    while (got < size && Date.now() - start < 25_000) await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe(size);
    // The write was pending over several timeout periods, and no timeout fired meanwhile.
    expect(doneAfterMs).toBeGreaterThan(2 * 400);
    expect(timeoutsWhilePending).toBe(0);
    // Idle afterwards: the timeout fires.
    await new Promise((r) => setTimeout(r, 1000));
    expect(timeouts).toBeGreaterThan(0);
  });
});
