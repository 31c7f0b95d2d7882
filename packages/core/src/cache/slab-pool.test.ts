import { describe, expect, it } from 'vitest';
import { CacheObject } from './cache-object.js';
import { joinAdjacent, SlabPool, SlabSpan } from './slab-pool.js';

const KiB = 1024;

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** A stored object taking its body in slabs of `pool`, in state 'stream'. */
function storedObject(pool: SlabPool, expectedLength?: number): CacheObject {
  const o = new CacheObject('k');
  o.expectedLength = expectedLength;
  o.stored = true;
  o.useSlabs(pool);
  o.setState('stream');
  return o;
}

describe('slab pool', () => {
  it('copies chunks into slabs in order, a chunk straddling two slabs becomes two pieces', () => {
    const pool = new SlabPool(64 * KiB, 16 * KiB);
    const span = new SlabSpan(pool);
    const out: Buffer[] = [];
    const a = bytes(10 * KiB, 1);
    const b = bytes(10 * KiB, 2);
    span.copy(a, undefined, out);
    span.copy(b, undefined, out);
    expect(out.map((p) => p.length)).toEqual([10 * KiB, 6 * KiB, 4 * KiB]);
    expect(Buffer.concat(out).equals(Buffer.concat([a, b]))).toBe(true);
    expect(pool.counts.allocated).toBe(2);
    expect(pool.inUse).toBe(2);
    // The pieces are views of the slabs, not copies of their own.
    expect(out[0]?.buffer).toBe(out[1]?.buffer);
    expect(out[2]?.buffer).not.toBe(out[1]?.buffer);
  });

  it('ends a body of known length in an exact-size piece that is never pooled', () => {
    const pool = new SlabPool(64 * KiB, 16 * KiB);
    const span = new SlabSpan(pool);
    const out: Buffer[] = [];
    // 20 KiB announced: one slab, then a 4 KiB tail.
    span.copy(bytes(12 * KiB, 1), 20 * KiB, out);
    span.copy(bytes(8 * KiB, 2), 8 * KiB, out);
    expect(pool.counts.allocated).toBe(1);
    expect(pool.counts.tails).toBe(1);
    expect(out.map((p) => p.length)).toEqual([12 * KiB, 4 * KiB, 4 * KiB]);
    expect(out[2]?.buffer.byteLength).toBe(4 * KiB);
    span.recycle();
    expect(pool.inUse).toBe(0);
    expect(pool.freeCount).toBe(1);
    // Recycling twice gives nothing back twice.
    span.recycle();
    expect(pool.freeCount).toBe(1);
  });

  it('reuses given-back slabs and keeps at most maxSlabs alive, in use and free together', () => {
    const pool = new SlabPool(3 * 16 * KiB, 16 * KiB);
    expect(pool.maxSlabs).toBe(3);
    const slabs = [pool.take(), pool.take(), pool.take(), pool.take()];
    expect(pool.counts.allocated).toBe(4);
    for (const s of slabs) pool.give(s);
    // In use + free never above 3: the first give-back (4 in use) drops, then the free list fills to 3.
    expect(pool.counts.dropped).toBe(1);
    expect(pool.freeCount).toBe(3);
    const again = pool.take();
    expect(pool.counts.reused).toBe(1);
    expect(slabs).toContain(again);
  });
});

describe('a cache object in slabs', () => {
  it('keeps its slabs while stored, read, or held; gives them back once none of these holds', () => {
    const pool = new SlabPool(1024 * KiB, 64 * KiB);
    const body = bytes(400 * KiB, 7);
    const o = storedObject(pool, body.length);
    for (let at = 0; at < body.length; at += 50 * KiB) o.extend(body.subarray(at, at + 50 * KiB));
    o.finish();
    // 6 slabs of 64 KiB and an exact 16 KiB tail.
    expect(pool.inUse).toBe(6);
    expect(pool.counts.tails).toBe(1);
    expect(Buffer.concat(o.completeChunks as Buffer[]).equals(body)).toBe(true);
    o.hold();
    const r = o.openReader();
    o.leftStore();
    expect(o.recycled).toBe(false);
    o.release();
    expect(o.recycled).toBe(false);
    o.closeReader(r);
    expect(o.recycled).toBe(true);
    expect(pool.inUse).toBe(0);
    expect(pool.freeCount).toBe(6);
    expect(o.readable).toBe(false);
    expect(o.completeChunks).toBeUndefined();
    expect(() => o.openReader()).toThrow(/recycl/);
  });

  it('small bodies are not copied; a failed fetch gives its slabs back at once when nothing reads it', () => {
    const pool = new SlabPool(1024 * KiB, 64 * KiB);
    const small = storedObject(pool, 100 * KiB);
    const chunk = bytes(100 * KiB, 1);
    small.extend(chunk);
    expect(small.completeChunks).toBeUndefined();
    small.finish();
    expect(small.completeChunks?.[0]).toBe(chunk);
    expect(pool.counts.allocated).toBe(0);
    const big = storedObject(pool);
    big.extend(bytes(300 * KiB, 2));
    expect(pool.inUse).toBe(5);
    big.leftStore();
    expect(pool.inUse).toBe(5); // not final: its fetch may still write
    big.fail(new Error('origin died'));
    expect(pool.inUse).toBe(0);
  });

  it('unstored mid-fetch (it became a pass), it leaves its slabs to the GC and its chunks stay readable', () => {
    const pool = new SlabPool(1024 * KiB, 64 * KiB);
    const o = storedObject(pool);
    const a = bytes(300 * KiB, 5);
    o.extend(a);
    const r = o.openReader();
    expect(pool.inUse).toBe(5);
    o.unstore('evicted');
    expect(pool.inUse).toBe(0);
    expect(pool.counts.disowned).toBe(5);
    const b = bytes(10 * KiB, 6);
    o.extend(b);
    const got: Buffer[] = [];
    for (let c = o.nextChunk(r); c !== undefined; c = o.nextChunk(r)) got.push(c);
    expect(Buffer.concat(got).equals(Buffer.concat([a, b]))).toBe(true);
    // Nothing went to the free list: those slabs may still be under a reader's write.
    expect(pool.freeCount).toBe(0);
  });

  it('a 304 adopter shares the stale object slabs and keeps them until it is gone itself', () => {
    const pool = new SlabPool(4096 * KiB, 64 * KiB);
    const body = bytes(300 * KiB, 3);
    const stale = storedObject(pool, body.length);
    stale.extend(body);
    stale.finish();
    const fresh = new CacheObject('k');
    fresh.stored = true;
    fresh.setState('stream');
    fresh.adoptBody(stale);
    expect(Buffer.concat(fresh.completeChunks as Buffer[]).equals(body)).toBe(true);
    stale.leftStore();
    expect(stale.recycled).toBe(false);
    expect(fresh.needsHold).toBe(true);
    fresh.leftStore();
    expect(fresh.recycled).toBe(true);
    expect(stale.recycled).toBe(true);
    expect(pool.inUse).toBe(0);
  });
});

describe('joined slab views (issue 13: a warm read handles a chunk per slab, not one per origin read)', () => {
  it('a finished stored body in slabs is one chunk per slab (and the tail), the same bytes', () => {
    const pool = new SlabPool(4096 * KiB, 1024 * KiB);
    const body = bytes(2560 * KiB, 3);
    const o = storedObject(pool, body.length);
    for (let at = 0; at < body.length; at += 64 * KiB) o.extend(body.subarray(at, at + 64 * KiB));
    // While it streams, readers see the pieces as copied: one per origin read.
    expect(pool.inUse).toBe(2);
    o.finish();
    const chunks = o.completeChunks as Buffer[];
    expect(chunks.map((c) => c.length)).toEqual([1024 * KiB, 1024 * KiB, 512 * KiB]);
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
  });

  it('with a reader open at the finish, the last reader to leave joins them (its chunk index stays valid until then)', () => {
    const pool = new SlabPool(4096 * KiB, 1024 * KiB);
    const body = bytes(1536 * KiB, 4);
    const o = storedObject(pool, body.length);
    const r = o.openReader();
    for (let at = 0; at < body.length; at += 64 * KiB) o.extend(body.subarray(at, at + 64 * KiB));
    o.finish();
    expect((o.completeChunks as Buffer[]).length).toBe(24);
    const read: Buffer[] = [];
    for (let c = o.nextChunk(r); c !== undefined; c = o.nextChunk(r)) read.push(c);
    expect(Buffer.concat(read).equals(body)).toBe(true);
    o.closeReader(r);
    expect((o.completeChunks as Buffer[]).map((c) => c.length)).toEqual([1024 * KiB, 512 * KiB]);
    expect(Buffer.concat(o.completeChunks as Buffer[]).equals(body)).toBe(true);
  });

  it('joinAdjacent joins only neighbouring views of one buffer, in order, and copies nothing', () => {
    const a = Buffer.alloc(100, 1);
    const b = Buffer.alloc(100, 2);
    const parts = [a.subarray(0, 10), a.subarray(10, 30), b.subarray(30, 40), b.subarray(40, 50), a.subarray(60, 70), a.subarray(70, 80)];
    const joined = joinAdjacent(parts);
    expect(joined.map((c) => [c.byteOffset - (c.buffer === a.buffer ? a.byteOffset : b.byteOffset), c.length, c.buffer === a.buffer])).toEqual([
      [0, 30, true],
      [30, 20, false],
      [60, 20, true],
    ]);
    joined[0]?.fill(9);
    expect(a[29]).toBe(9);
    const single = [a.subarray(0, 5), b.subarray(5, 10)];
    expect(joinAdjacent(single)).toBe(single);
  });
});
