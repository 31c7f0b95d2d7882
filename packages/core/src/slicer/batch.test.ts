import { describe, expect, it } from 'vitest';
import { ChunkBatch } from './batch.js';

/** The warm path's batches (batch.ts): bounded by bytes, in order, the cached Buffers themselves. */
describe('ChunkBatch', () => {
  it('holds chunks until the limit, then hands them all over, in order', () => {
    const b = new ChunkBatch(10);
    const a = Buffer.from('abcd');
    const c = Buffer.from('efg');
    expect(b.add([a])).toBeUndefined();
    expect(b.add([c])).toBeUndefined();
    const out = b.add([Buffer.from('hij')]);
    expect(out?.map(String)).toEqual(['abcd', 'efg', 'hij']);
    expect(b.take()).toBeUndefined();
  });

  it('take() empties it: what is held before a segment still being fetched, or at the end', () => {
    const b = new ChunkBatch(1024);
    expect(b.take()).toBeUndefined();
    b.add([Buffer.from('x'), Buffer.from('y')]);
    expect(b.take()?.map(String)).toEqual(['x', 'y']);
    expect(b.take()).toBeUndefined();
    // Counting starts over after a take: 1023 more bytes do not reach the limit.
    expect(b.add([Buffer.alloc(1023)])).toBeUndefined();
    expect(b.add([Buffer.alloc(1)])?.length).toBe(2);
  });

  it('never copies: the batch holds the very Buffers added (same memory)', () => {
    const cached = Buffer.alloc(8, 7);
    const b = new ChunkBatch(4);
    const out = b.add([cached.subarray(2, 6)]) as Buffer[];
    expect(out[0]?.buffer).toBe(cached.buffer);
    expect(out[0]?.byteOffset).toBe(cached.byteOffset + 2);
  });
});
