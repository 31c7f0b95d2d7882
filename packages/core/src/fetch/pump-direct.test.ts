import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedOrigin, type OriginHandler } from '@sluice/fixtures';
import { createOriginClient, type OriginClient } from '@sluice/origin-client';
import { CacheObject } from '../cache/cache-object.js';
import { pump } from './pump.js';

/**
 * The pump over the origin client's body read through undici's dispatch handler (issue 16): chunks go from the
 * parser into the object with no stream between, under the same contract as the stream pump (pump.test.ts): every
 * byte in order, the transit bound pauses the origin read, an abort or an origin death rejects. Real loopback
 * origins and the real origin client.
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

function pattern(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((from + i) * 13 + ((from + i) >>> 12)) & 0xff;
  return b;
}

function streaming(stored: boolean): CacheObject {
  const o = new CacheObject('k');
  o.stored = stored;
  o.setState('stream');
  return o;
}

async function get(handler: OriginHandler): Promise<Awaited<ReturnType<OriginClient['request']>>> {
  const origin = await startScriptedOrigin(handler);
  open.push(origin);
  client = createOriginClient({ backends: [{ url: origin.url }] });
  return client.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal });
}

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

function readAll(o: CacheObject): Buffer {
  const r = o.openReader();
  const parts: Buffer[] = [];
  for (let c = o.nextChunk(r); c !== undefined; c = o.nextChunk(r)) parts.push(c);
  return Buffer.concat(parts);
}

describe('pump over a dispatch-handler origin body (issue 16)', () => {
  it('copies every byte in order, counts each chunk once, resolves at the end', async () => {
    const size = 5 * MiB + 17;
    const res = await get(bigOrigin(size, { written: 0, closed: false }));
    const o = streaming(true);
    let counted = 0;
    await pump(o, res.body, 1024 * MiB, new AbortController().signal, (c) => (counted += c.length));
    expect(counted).toBe(size);
    expect(o.length).toBe(size);
    expect(readAll(o).equals(pattern(0, size))).toBe(true);
    expect(client?.backends[0]?.active).toBe(0);
  });

  it('takes what came with the head synchronously (a small miss is whole when pump() returns)', async () => {
    const res = await get((_req, r) => {
      r.writeHead(200, { 'content-length': '1500' });
      r.end(pattern(0, 1500));
    });
    await turns(3);
    const o = streaming(true);
    const done = pump(o, res.body, 1024 * MiB, new AbortController().signal, () => undefined);
    expect(o.length).toBe(1500);
    await done;
    expect(readAll(o).equals(pattern(0, 1500))).toBe(true);
  });

  it('an unstored object with a reader that does not read holds at most the transit buffer plus one chunk, and the origin waits', async () => {
    const size = 32 * MiB;
    const state = { written: 0, closed: false };
    const res = await get(bigOrigin(size, state));
    const o = streaming(false);
    const r = o.openReader();
    const transit = 256 * KiB;
    const done = pump(o, res.body, transit, new AbortController().signal, () => undefined);
    await turns(50);
    await new Promise((t) => setTimeout(t, 100));
    expect(o.heldBytes).toBeGreaterThan(0);
    // Plus one chunk: a parser resumed after a pause parses what the socket buffered meanwhile in one go (up to the
    // kernel's receive buffer), so a chunk can be larger than one 64 KiB socket read.
    expect(o.heldBytes).toBeLessThanOrEqual(transit + MiB);
    expect(o.length).toBeLessThan(size);
    expect(state.written).toBeLessThan(16 * MiB);
    // The reader catches up: the pump resumes and takes the rest, never past the bound.
    const parts: Buffer[] = [];
    let read = 0;
    while (read < size) {
      const c = o.nextChunk(r);
      if (c !== undefined) {
        parts.push(c);
        read += c.length;
        expect(o.heldBytes).toBeLessThanOrEqual(transit + MiB);
        continue;
      }
      await o.waitChange();
    }
    await done;
    expect(Buffer.concat(parts).equals(pattern(0, size))).toBe(true);
  });

  it('a body someone started reading as a stream goes through the stream pump: the rest arrives, nothing lost', async () => {
    const size = 300 * KiB;
    const res = await get(bigOrigin(size, { written: 0, closed: false }));
    const head = await new Promise<Buffer>((r) => res.body.once('readable', () => r(res.body.read(1000) as Buffer)));
    expect(head.length).toBe(1000);
    expect((res.body as unknown as { attachable: boolean }).attachable).toBe(false);
    const o = streaming(true);
    await pump(o, res.body, 1024 * MiB, new AbortController().signal, () => undefined);
    expect(o.length).toBe(size - 1000);
    expect(Buffer.concat([head, readAll(o)]).equals(pattern(0, size))).toBe(true);
  });

  it('rejects when the origin dies mid-body (Content-Length not reached)', async () => {
    const res = await get((_req, r) => {
      r.writeHead(200, { 'content-length': String(MiB) });
      r.write(pattern(0, 100 * KiB), () => r.destroy());
    });
    const o = streaming(true);
    await expect(pump(o, res.body, 1024 * MiB, new AbortController().signal, () => undefined)).rejects.toThrow();
    expect(o.length).toBeLessThan(MiB);
  });

  it('rejects and drops the origin connection when the fetch signal aborts while paused for space', async () => {
    const state = { written: 0, closed: false };
    const res = await get(bigOrigin(64 * MiB, state));
    const o = streaming(false);
    o.openReader();
    const ac = new AbortController();
    const done = pump(o, res.body, 10, ac.signal, () => undefined);
    await turns(10);
    const at = o.length;
    expect(at).toBeGreaterThan(0);
    await turns(10);
    expect(o.length).toBe(at);
    ac.abort(new Error('no reader left'));
    await expect(done).rejects.toThrow('no reader left');
    expect(res.body.destroyed).toBe(true);
    while (!state.closed) await turns(1);
    expect(state.written).toBeLessThan(64 * MiB);
    expect(client?.backends[0]?.active).toBe(0);
  });

  it('a chunk the object refuses (it failed meanwhile) stops the body with that error and drops the connection', async () => {
    const state = { written: 0, closed: false };
    const res = await get(bigOrigin(64 * MiB, state));
    const o = streaming(true);
    const done = pump(o, res.body, 1024 * MiB, new AbortController().signal, () => undefined);
    o.fail(new Error('failed elsewhere'));
    await expect(done).rejects.toThrow(/extend in state failed/);
    expect(res.body.destroyed).toBe(true);
    while (!state.closed) await turns(1);
    expect(state.written).toBeLessThan(64 * MiB);
  });
});
