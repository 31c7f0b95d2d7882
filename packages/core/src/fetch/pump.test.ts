import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CacheObject } from '../cache/cache-object.js';
import { pump } from './pump.js';

const KiB = 1024;
const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function streaming(stored: boolean): CacheObject {
  const o = new CacheObject('k');
  o.stored = stored;
  o.setState('stream');
  return o;
}

describe('pump (origin body -> object, issue 16)', () => {
  it('copies every chunk in order and resolves at the end, counting each chunk once', async () => {
    const o = streaming(true);
    const body = new PassThrough();
    const seen: number[] = [];
    const done = pump(o, body, 1024 * KiB, new AbortController().signal, (c) => seen.push(c.length));
    for (let i = 0; i < 5; i++) body.write(Buffer.alloc(1000 + i, i));
    body.end();
    await done;
    expect(seen).toEqual([1000, 1001, 1002, 1003, 1004]);
    expect(o.length).toBe(5010);
    const r = o.openReader();
    const parts: Buffer[] = [];
    for (let c = o.nextChunk(r); c !== undefined; c = o.nextChunk(r)) parts.push(c);
    expect(parts.map((p) => p[0])).toEqual([0, 1, 2, 3, 4]);
  });

  it('an unstored object with a reader that does not read holds at most the transit buffer plus one chunk', async () => {
    const o = streaming(false);
    const r = o.openReader();
    const body = new PassThrough({ highWaterMark: 64 * KiB });
    const transit = 128 * KiB;
    const done = pump(o, body, transit, new AbortController().signal, () => undefined);
    const chunk = Buffer.alloc(64 * KiB, 1);
    let written = 0;
    for (let i = 0; i < 20; i++) {
      body.write(chunk);
      written += chunk.length;
      await turns(2);
    }
    await turns(20);
    expect(o.heldBytes).toBeGreaterThan(0);
    expect(o.heldBytes).toBeLessThanOrEqual(transit + 64 * KiB);
    // The rest waits in the source, paused (no byte lost, none taken past the bound).
    expect(o.length).toBeLessThan(written);
    // The reader catches up: the pump resumes and takes the rest.
    body.end();
    let read = 0;
    while (!o.isFinal || o.length > read) {
      const c = o.nextChunk(r);
      if (c !== undefined) {
        read += c.length;
        expect(o.heldBytes).toBeLessThanOrEqual(transit + 64 * KiB);
        continue;
      }
      if (o.length === written) break;
      await o.waitChange();
    }
    await done;
    expect(o.length).toBe(written);
    expect(read).toBe(written);
  });

  it('takes what the body holds already synchronously, so a delivery woken by the head finds it (one write)', () => {
    const o = streaming(true);
    const body = new PassThrough();
    body.write(Buffer.alloc(1200, 7));
    void pump(o, body, 1024 * KiB, new AbortController().signal, () => undefined);
    expect(o.length).toBe(1200);
    body.end();
  });

  it('bytes held already that fill the transit buffer leave the body paused until a reader makes room', async () => {
    const o = streaming(false);
    const r = o.openReader();
    const body = new PassThrough({ highWaterMark: 256 * KiB });
    body.write(Buffer.alloc(64 * KiB, 1));
    const done = pump(o, body, 16 * KiB, new AbortController().signal, () => undefined);
    expect(o.length).toBe(64 * KiB);
    body.write(Buffer.alloc(64 * KiB, 2));
    await turns(5);
    expect(o.length).toBe(64 * KiB);
    expect(o.nextChunk(r)?.length).toBe(64 * KiB);
    await turns(5);
    expect(o.length).toBe(128 * KiB);
    body.end();
    expect(o.nextChunk(r)?.[0]).toBe(2);
    await done;
  });

  it('rejects when the body fails, and when it closes before its end', async () => {
    const failed = new PassThrough();
    const p1 = pump(streaming(true), failed, 1024 * KiB, new AbortController().signal, () => undefined);
    failed.write(Buffer.alloc(10));
    failed.destroy(new Error('reset by origin'));
    await expect(p1).rejects.toThrow('reset by origin');

    const cut = new PassThrough();
    const p2 = pump(streaming(true), cut, 1024 * KiB, new AbortController().signal, () => undefined);
    cut.write(Buffer.alloc(10));
    await turns(2);
    cut.destroy();
    await expect(p2).rejects.toThrow(/premature close/i);
  });

  it('rejects and destroys the body when the fetch signal aborts, even while paused for space', async () => {
    const o = streaming(false);
    o.openReader();
    const body = new PassThrough();
    const ac = new AbortController();
    const done = pump(o, body, 10, ac.signal, () => undefined);
    body.write(Buffer.alloc(100));
    await turns(3);
    expect(body.isPaused()).toBe(true);
    ac.abort(new Error('no reader left'));
    await expect(done).rejects.toThrow('no reader left');
    expect(body.destroyed).toBe(true);
  });

  it('a chunk the object refuses (it failed meanwhile) stops the body with that error', async () => {
    const o = streaming(true);
    const body = new PassThrough();
    const done = pump(o, body, 1024 * KiB, new AbortController().signal, () => undefined);
    o.fail(new Error('failed elsewhere'));
    body.write(Buffer.alloc(10));
    await expect(done).rejects.toThrow(/extend in state failed/);
    expect(body.destroyed).toBe(true);
  });
});
