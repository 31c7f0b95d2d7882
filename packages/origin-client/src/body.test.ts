import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedOrigin, type OriginHandler } from '@sluice/fixtures';
import type { BodySink, OriginBody } from './body.js';
import { createOriginClient, type OriginClient } from './origin-client.js';

/**
 * Issue 16 (a miss's bytes): the origin body is read through undici's dispatch handler. A sink attached to it gets
 * the chunks straight from the parser; a stream consumer still gets a Readable. Real loopback origins throughout.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const open: Array<{ close(): Promise<void> }> = [];
let client: OriginClient | undefined;
afterEach(async () => {
  await client?.destroy();
  client = undefined;
  while (open.length > 0) await open.pop()?.close();
});

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** Byte i of a patterned body: a shifted or dropped chunk shows. */
function pattern(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((from + i) * 7 + ((from + i) >>> 10)) & 0xff;
  return b;
}

async function setup(handler: OriginHandler): Promise<{ c: OriginClient; url: string; origin: Awaited<ReturnType<typeof startScriptedOrigin>> }> {
  const origin = await startScriptedOrigin(handler);
  open.push(origin);
  client = createOriginClient({ backends: [{ url: origin.url }] });
  return { c: client, url: origin.url, origin };
}

/** An origin writing `size` patterned bytes in 16 KiB writes, honouring backpressure; `written` tells how far it got. */
function bigOrigin(size: number, state: { written: number; closed: boolean }): OriginHandler {
  return async (req, res) => {
    req.socket.once('close', () => (state.closed = true));
    res.writeHead(200, { 'content-length': String(size) });
    while (state.written < size && !res.destroyed) {
      const n = Math.min(16 * KiB, size - state.written);
      const ok = res.write(pattern(state.written, n));
      state.written += n;
      if (!ok) await new Promise((r) => res.once('drain', r));
    }
    res.end();
  };
}

interface Collected {
  sink: BodySink;
  chunks: Buffer[];
  bytes: () => number;
  ended: Promise<'end' | Error>;
  /** Makes data() answer false (pause) or true. */
  setPause: (p: boolean) => void;
  events: string[];
}

function collect(): Collected {
  const chunks: Buffer[] = [];
  const events: string[] = [];
  let pause = false;
  let settle: (v: 'end' | Error) => void = () => undefined;
  const ended = new Promise<'end' | Error>((r) => (settle = r));
  const sink: BodySink = {
    data(c) {
      chunks.push(c);
      return !pause;
    },
    end() {
      events.push('end');
      settle('end');
    },
    error(e) {
      events.push('error');
      settle(e);
    },
  };
  return { sink, chunks, bytes: () => chunks.reduce((n, c) => n + c.length, 0), ended, setPause: (p) => (pause = p), events };
}

const get = (c: OriginClient, path = '/'): Promise<{ body: OriginBody; status: number }> =>
  c.request({ method: 'GET', path, headers: {}, body: null }, { signal: new AbortController().signal });

describe('origin body through the dispatch handler (issue 16)', () => {
  it('a sink gets every byte in order and the end; the slot frees and the backend counts the bytes', async () => {
    const size = 3 * MiB + 123;
    const state = { written: 0, closed: false };
    const { c } = await setup(bigOrigin(size, state));
    const r = await get(c);
    const got = collect();
    expect(r.body.attach(got.sink)).toBe(true);
    expect(await got.ended).toBe('end');
    expect(got.events).toEqual(['end']);
    expect(Buffer.concat(got.chunks).equals(pattern(0, size))).toBe(true);
    expect(c.backends[0]?.active).toBe(0);
    expect(c.backends[0]?.counters.bytes).toBe(size);
  });

  it('what came with the head is handed over inside attach(), and a complete body ends there too', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200, { 'content-length': '1200' });
      res.end(pattern(0, 1200));
    });
    const r = await get(c);
    await turns(3);
    const got = collect();
    r.body.attach(got.sink);
    // Synchronously: nothing awaited between attach() and these.
    expect(got.bytes()).toBe(1200);
    expect(got.events).toEqual(['end']);
    expect(Buffer.concat(got.chunks).equals(pattern(0, 1200))).toBe(true);
  });

  it('a sink that answers false pauses the origin read (bounded bytes arrive) until flow(), then gets the rest', async () => {
    const size = 32 * MiB;
    const state = { written: 0, closed: false };
    const { c } = await setup(bigOrigin(size, state));
    const r = await get(c);
    const got = collect();
    got.setPause(true);
    r.body.attach(got.sink);
    await turns(50);
    await new Promise((res) => setTimeout(res, 100));
    // One chunk was taken before the pause; the rest waits in socket buffers and at the origin.
    expect(got.chunks.length).toBeGreaterThanOrEqual(1);
    expect(got.chunks.length).toBeLessThanOrEqual(1);
    expect(c.backends[0]?.counters.bytes).toBeLessThan(8 * MiB);
    expect(state.written).toBeLessThan(16 * MiB);
    const heldAt = got.bytes();
    await turns(20);
    expect(got.bytes()).toBe(heldAt);
    got.setPause(false);
    r.body.flow();
    expect(await got.ended).toBe('end');
    expect(got.bytes()).toBe(size);
    expect(Buffer.concat(got.chunks).equals(pattern(0, size))).toBe(true);
  });

  it('the origin dying mid-body: the sink hears an error, never an end, and the slot frees', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200, { 'content-length': String(MiB) });
      res.write(pattern(0, 100 * KiB), () => res.destroy());
    });
    const r = await get(c);
    const got = collect();
    r.body.attach(got.sink);
    const e = await got.ended;
    expect(e).toBeInstanceOf(Error);
    expect(got.events).toEqual(['error']);
    expect(got.bytes()).toBeLessThan(MiB);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('a chunked origin dying mid-body is an error too (no clean end without the last chunk)', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200);
      res.write(pattern(0, 50 * KiB), () => setTimeout(() => res.socket?.destroy(), 20));
    });
    const r = await get(c);
    const got = collect();
    r.body.attach(got.sink);
    expect(await got.ended).toBeInstanceOf(Error);
    expect(got.events).toEqual(['error']);
  });

  it('destroying the body mid-way closes the origin connection, tells the sink, and frees the slot', async () => {
    const state = { written: 0, closed: false };
    const { c } = await setup(bigOrigin(64 * MiB, state));
    const r = await get(c);
    const got = collect();
    r.body.attach(got.sink);
    while (got.bytes() === 0) await turns(1);
    r.body.destroy(new Error('dropped'));
    expect(await got.ended).toBeInstanceOf(Error);
    while (!state.closed) await turns(1);
    expect(state.written).toBeLessThan(64 * MiB);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('read as a stream, the bytes held before the consumer started are all there; attach() is refused then', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200, { 'content-length': String(200 * KiB) });
      res.end(pattern(0, 200 * KiB));
    });
    const r = await get(c);
    await turns(10);
    const parts: Buffer[] = [];
    const it = r.body[Symbol.asyncIterator]();
    const first = await it.next();
    parts.push(first.value as Buffer);
    expect(r.body.attach(collect().sink)).toBe(false);
    for (let x = await it.next(); x.done !== true; x = await it.next()) parts.push(x.value as Buffer);
    expect(Buffer.concat(parts).equals(pattern(0, 200 * KiB))).toBe(true);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('an unread body holds at most a stream buffer: the origin read pauses until someone reads', async () => {
    const state = { written: 0, closed: false };
    const { c } = await setup(bigOrigin(64 * MiB, state));
    const r = await get(c);
    await turns(50);
    await new Promise((res) => setTimeout(res, 100));
    expect(c.backends[0]?.counters.bytes).toBeLessThan(8 * MiB);
    expect(state.written).toBeLessThan(16 * MiB);
    // The slot stays taken by the unread body.
    expect(c.backends[0]?.active).toBe(1);
    r.body.destroy();
    while (!state.closed) await turns(1);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('an abort before the head rejects the request with its reason, closes the origin connection and frees the slot', async () => {
    let closed = false;
    const { c } = await setup((req, res) => {
      req.socket.once('close', () => (closed = true));
      setTimeout(() => {
        if (!res.destroyed) res.end('late');
      }, 2000);
    });
    const ac = new AbortController();
    const p = c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error('client left before the head'));
    await expect(p).rejects.toThrow();
    while (!closed) await turns(1);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('the origin resetting between head and body: the sink hears an error (never an end), the slot frees', async () => {
    const { c } = await setup((_req, res) => {
      res.writeHead(200, { 'content-length': '5000' });
      res.flushHeaders();
      setTimeout(() => res.socket?.resetAndDestroy(), 30);
    });
    const r = await get(c);
    expect(r.status).toBe(200);
    const got = collect();
    r.body.attach(got.sink);
    expect(await got.ended).toBeInstanceOf(Error);
    expect(got.events).toEqual(['error']);
    expect(got.bytes()).toBe(0);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('after the consumer dropped the body, the origin going on and then failing reaches nobody and throws nothing', async () => {
    const state = { written: 0, closed: false };
    const { c } = await setup(async (req, res) => {
      req.socket.once('close', () => (state.closed = true));
      res.writeHead(200, { 'content-length': String(8 * MiB) });
      for (let i = 0; i < 8 && !res.destroyed; i++) {
        state.written += 64 * KiB;
        res.write(pattern(0, 64 * KiB));
        await new Promise((t) => setTimeout(t, 5));
      }
      res.socket?.resetAndDestroy();
    });
    const r = await get(c);
    const got = collect();
    r.body.attach(got.sink);
    while (got.bytes() === 0) await turns(1);
    r.body.destroy();
    expect(await got.ended).toBeInstanceOf(Error);
    expect(got.events).toEqual(['error']);
    const heldAt = got.bytes();
    while (!state.closed) await turns(1);
    await new Promise((t) => setTimeout(t, 50));
    // Nothing more reached the sink after it was told of the end, and the next request on this backend works.
    expect(got.bytes()).toBe(heldAt);
    expect(got.events).toEqual(['error']);
    expect(c.backends[0]?.active).toBe(0);
  });

  it('interim responses (103) reach onInfo before the final head, names lowercase', async () => {
    const { c } = await setup((_req, res) => {
      res.writeEarlyHints({ link: '</a.css>; rel=preload' });
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
    const infos: Array<[number, Record<string, unknown>]> = [];
    const r = await c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal, onInfo: (s, h) => infos.push([s, h]) });
    expect(infos).toEqual([[103, { link: '</a.css>; rel=preload' }]]);
    const got = collect();
    r.body.attach(got.sink);
    expect(await got.ended).toBe('end');
    expect(Buffer.concat(got.chunks).toString()).toBe('ok');
  });
});
