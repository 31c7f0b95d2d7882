import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BodySink, OriginBody } from './body.js';
import { createOriginClient, type OriginClient } from './origin-client.js';
import { MAX_READ_BYTES } from './socket-reads.js';

/**
 * Issue 16 (a miss's bytes, session 11): plain http: origin sockets read through Node's `onread` into buffers of up
 * to 256 KiB (socket-reads.ts). A read's buffer is handed to undici whole or copied out, never overwritten while a
 * chunk of it is held, so every test keeps every chunk to the end and compares it then. Raw `net` origins on
 * 127.0.0.1:0, so an origin can lie about its length, die mid-body or never end.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const open: Array<() => Promise<void>> = [];
let client: OriginClient | undefined;
afterEach(async () => {
  await client?.destroy();
  client = undefined;
  while (open.length > 0) await open.pop()?.();
});

/** Byte i of a patterned body: a shifted, dropped or overwritten chunk shows. */
function pattern(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((from + i) * 7 + ((from + i) >>> 10)) & 0xff;
  return b;
}

/** A raw origin: `script` gets each connection once its request head arrived. */
async function rawOrigin(script: (s: net.Socket) => void | Promise<void>): Promise<string> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      void script(s);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  open.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => srv.close(r));
  });
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

interface Collected {
  sink: BodySink;
  chunks: Buffer[];
  ended: Promise<'end' | Error>;
}

function collect(): Collected {
  const chunks: Buffer[] = [];
  let settle: (v: 'end' | Error) => void = () => undefined;
  const ended = new Promise<'end' | Error>((r) => (settle = r));
  return { chunks, ended, sink: { data: (c) => (chunks.push(c), true), end: () => settle('end'), error: (e) => settle(e) } };
}

async function get(url: string, betweenBytesTimeoutMs = 10_000): Promise<OriginBody> {
  client = createOriginClient({ backends: [{ url, betweenBytesTimeoutMs }] });
  const r = await client.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal });
  return r.body;
}

/** Memory a chunk pins beyond its bytes: a chunk under 4 KiB may share Node's 8 KiB pool, as Node's own reads do. */
function overPinned(chunks: Buffer[]): Buffer[] {
  return chunks.filter((c) => c.length >= 4 * KiB && c.buffer.byteLength > Math.ceil((c.length * 8) / 7));
}

const head = (length: number): string => `HTTP/1.1 200 OK\r\ncontent-length: ${length}\r\n\r\n`;

describe('origin socket reads through onread (issue 16)', () => {
  it('a body already waiting in the socket arrives in reads over 64 KiB, every held chunk intact at the end', async () => {
    const size = 4 * MiB;
    const url = await rawOrigin((s) => {
      s.write(head(size));
      s.write(pattern(0, size));
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    expect(await got.ended).toBe('end');
    expect(Buffer.concat(got.chunks).equals(pattern(0, size))).toBe(true);
    // Node alone reads 64 KiB at a time: 64 or more chunks for 4 MiB.
    expect(Math.max(...got.chunks.map((c) => c.length))).toBeGreaterThan(64 * KiB);
    expect(Math.max(...got.chunks.map((c) => c.length))).toBeLessThanOrEqual(MAX_READ_BYTES);
    expect(got.chunks.length).toBeLessThan(64);
  });

  it('a body trickling in small writes between bursts (reads copied out, buffers reused) arrives intact', async () => {
    const size = 2 * MiB;
    const url = await rawOrigin(async (s) => {
      s.write(head(size));
      let at = 0;
      for (let i = 0; at < size; i++) {
        // Small pieces a turn apart, then a burst: both kinds of read, in turn.
        const n = Math.min(i % 8 === 7 ? 300 * KiB : 1000 + i, size - at);
        s.write(pattern(at, n));
        at += n;
        await new Promise((r) => setImmediate(r));
      }
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    expect(await got.ended).toBe('end');
    expect(Buffer.concat(got.chunks).equals(pattern(0, size))).toBe(true);
    expect(overPinned(got.chunks)).toEqual([]);
  });

  it('a 40 KiB body read at once is not held as a view of a larger read buffer (a stored small object)', async () => {
    const url = await rawOrigin((s) => {
      s.write(Buffer.concat([Buffer.from(head(40 * KiB), 'latin1'), pattern(0, 40 * KiB)]));
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    expect(await got.ended).toBe('end');
    expect(Buffer.concat(got.chunks).equals(pattern(0, 40 * KiB))).toBe(true);
    expect(overPinned(got.chunks)).toEqual([]);
  });

  it('an origin sending more than its Content-Length: the body is exactly the announced bytes', async () => {
    const url = await rawOrigin((s) => {
      s.write(head(300 * KiB));
      s.write(pattern(0, 700 * KiB));
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    expect(await got.ended).toBe('end');
    expect(Buffer.concat(got.chunks).equals(pattern(0, 300 * KiB))).toBe(true);
  });

  it('an origin closing short of its Content-Length fails the body, never a clean end', async () => {
    const url = await rawOrigin((s) => {
      s.write(head(4 * MiB));
      s.end(pattern(0, MiB + 5));
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    const end = await got.ended;
    expect(end).toBeInstanceOf(Error);
    const bytes = Buffer.concat(got.chunks);
    expect(bytes.length).toBeLessThanOrEqual(MiB + 5);
    expect(bytes.equals(pattern(0, bytes.length))).toBe(true);
  });

  it('an origin dying mid-body (reset) fails the body', async () => {
    const url = await rawOrigin(async (s) => {
      s.write(head(4 * MiB));
      s.write(pattern(0, 2 * MiB));
      await new Promise((r) => setTimeout(r, 50));
      s.resetAndDestroy();
    });
    const got = collect();
    (await get(url)).attach(got.sink);
    expect(await got.ended).toBeInstanceOf(Error);
    const bytes = Buffer.concat(got.chunks);
    expect(bytes.length).toBeLessThan(4 * MiB);
    expect(bytes.equals(pattern(0, bytes.length))).toBe(true);
  });

  it('an origin that never ends its body fails it after betweenBytesTimeoutMs', async () => {
    const url = await rawOrigin((s) => {
      s.write(head(4 * MiB));
      s.write(pattern(0, 600 * KiB));
    });
    const got = collect();
    (await get(url, 300)).attach(got.sink);
    const end = await got.ended;
    expect(end).toBeInstanceOf(Error);
    expect((end as Error & { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT');
    expect(Buffer.concat(got.chunks).equals(pattern(0, 600 * KiB))).toBe(true);
  });

  it('a body read as a stream, slowly (the parser pausing and unshifting), arrives intact', async () => {
    const size = 3 * MiB;
    const url = await rawOrigin((s) => {
      s.write(head(size));
      s.write(pattern(0, size));
    });
    const body = await get(url);
    const chunks: Buffer[] = [];
    for await (const c of body) {
      chunks.push(c as Buffer);
      if (chunks.length % 4 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    expect(Buffer.concat(chunks).equals(pattern(0, size))).toBe(true);
  });
});
