import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient, type OriginClient } from './origin-client.js';
import { HOLD_BYTES, READ_BYTES, SMALL_READ_BYTES, SMALL_READS, originOnread } from './origin-read.js';

const open: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()?.();
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A raw loopback server that writes `body` to each connection and ends; the server side sockets are returned. */
async function sender(body: Buffer): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  open.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, sockets };
}

function connect(port: number): Socket {
  const s = net.connect({ port, host: '127.0.0.1', onread: originOnread() } as net.NetConnectOpts);
  open.push(() => void s.destroy());
  return s;
}

async function readAll(s: Socket): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    s.once('end', resolve);
    s.once('error', reject);
  });
  return chunks;
}

describe('origin sockets reading 256 KiB at a time', () => {
  it('hands out every byte once, in order: no read buffer is read into again once a chunk of it is out (sha256 of 24 MiB kept whole)', async () => {
    const body = randomBytes(24 * 1024 * 1024);
    const { port } = await sender(body);
    const chunks = await readAll(connect(port));
    // Every chunk is kept until the end: had a later read landed in a buffer an earlier chunk views, the joined bytes
    // would differ.
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(body.length);
    expect(sha(all)).toBe(sha(body));
    const buffers = new Set<ArrayBufferLike>();
    for (const c of chunks) {
      // A short read copied out to a buffer of its own size...
      if (c.buffer.byteLength === c.length) continue;
      // ...or a view of its own read buffer, from its start, at least three quarters full (at most a third again of
      // its size kept alive), and the only chunk of that buffer.
      expect([READ_BYTES, SMALL_READ_BYTES]).toContain(c.buffer.byteLength);
      expect(c.byteOffset).toBe(0);
      expect(4 * c.length).toBeGreaterThanOrEqual(3 * c.buffer.byteLength);
      expect(buffers.has(c.buffer)).toBe(false);
      buffers.add(c.buffer);
    }
    expect(chunks.some((c) => c.buffer.byteLength === READ_BYTES)).toBe(true);
  });

  it('stops reading while what it read is not taken: the socket holds at most HOLD_BYTES plus one read, then delivers all, in small reads for a while', async () => {
    const body = randomBytes(32 * 1024 * 1024);
    const { port, sockets } = await sender(body);
    const s = connect(port);
    await new Promise<void>((r) => s.once('connect', () => r()));
    // Nobody reads: wait until the sender's writes back up in its own buffer (the kernel's buffers are full).
    const deadline = Date.now() + 10_000;
    while ((sockets[0]?.writableLength ?? 0) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(sockets[0]?.writableLength ?? 0).toBeGreaterThan(0);
    expect(s.readableLength).toBeGreaterThan(0);
    expect(s.readableLength).toBeLessThanOrEqual(HOLD_BYTES + READ_BYTES);
    const held = s.readableLength;
    const chunks = await readAll(s);
    expect(sha(Buffer.concat(chunks))).toBe(sha(body));
    // What was held is delivered first; the reads after a hold-back take at most 64 KiB each (a pass to a slow client
    // does not read in large buffers).
    let at = 0;
    let i = 0;
    while (at < held) at += (chunks[i++] as Buffer).length;
    expect(at).toBe(held);
    const after = chunks.slice(i, i + SMALL_READS);
    expect(after.length).toBeGreaterThan(0);
    for (const c of after) expect(c.length).toBeLessThanOrEqual(SMALL_READ_BYTES);
  });

  it('an http backend reads through large buffers: big bodies and small responses on one kept-alive connection arrive whole', async () => {
    const big = randomBytes(6 * 1024 * 1024 + 123);
    const origin: ScriptedOrigin = await startScriptedOrigin((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-length': String(big.length) });
        res.end(big);
        return;
      }
      const n = Number(req.url?.slice(1));
      res.writeHead(200, { 'content-length': String(n) });
      res.end(Buffer.alloc(n, n % 251));
    });
    open.push(() => origin.close());
    const c: OriginClient = createOriginClient({ backends: [{ url: origin.url, maxConnections: 1 }] });
    open.push(() => c.destroy());
    const fetchAll = async (p: string): Promise<Buffer[]> => {
      const r = await c.request({ method: 'GET', path: p, headers: {}, body: null }, { signal: new AbortController().signal });
      const out: Buffer[] = [];
      for await (const chunk of r.body) out.push(chunk as Buffer);
      return out;
    };
    for (const n of [1, 700, 5000, 20_000, 100_000]) {
      const chunks = await fetchAll(`/${n}`);
      expect(Buffer.concat(chunks).equals(Buffer.alloc(n, n % 251))).toBe(true);
      // A small response comes in one short read, copied out: its body keeps no read buffer alive.
      if (n <= 20_000) for (const ch of chunks) expect(ch.buffer.byteLength).toBeLessThan(n + 1024);
    }
    const chunks = await fetchAll('/big');
    expect(sha(Buffer.concat(chunks))).toBe(sha(big));
    expect(chunks.some((ch) => ch.buffer.byteLength === READ_BYTES)).toBe(true);
    expect(origin.connections).toBe(1);
  });
});
