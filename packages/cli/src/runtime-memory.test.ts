import { afterEach, describe, expect, it, vi } from 'vitest';
import { minorGcFunction, startYoungGc } from './runtime-memory.js';

/** The proxy's young-generation GC trigger (runtime-memory.ts, issue 16: a pass's dead socket read buffers). */
describe('startYoungGc', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collects once `everyBytes` more bytes arrived, at most once per period, and not otherwise', () => {
    vi.useFakeTimers();
    let bytes = 5_000;
    const gc = vi.fn();
    const y = startYoungGc({ everyBytes: 1000, bytes: () => bytes, periodMs: 20, gc });
    // Bytes before the start do not count.
    vi.advanceTimersByTime(100);
    expect(gc).not.toHaveBeenCalled();
    bytes += 999;
    vi.advanceTimersByTime(100);
    expect(gc).not.toHaveBeenCalled();
    bytes += 1;
    vi.advanceTimersByTime(20);
    expect(gc).toHaveBeenCalledTimes(1);
    // 10 000 bytes within one period: one collection, and the count starts again from there.
    bytes += 10_000;
    vi.advanceTimersByTime(20);
    expect(gc).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(200);
    expect(gc).toHaveBeenCalledTimes(2);
    expect(y.runs).toBe(2);
    y.stop();
    bytes += 10_000;
    vi.advanceTimersByTime(200);
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('does nothing with everyBytes 0 (left to V8)', () => {
    vi.useFakeTimers();
    let bytes = 0;
    const gc = vi.fn();
    const y = startYoungGc({ everyBytes: 0, bytes: () => bytes, gc });
    bytes += 1e9;
    vi.advanceTimersByTime(1000);
    expect(gc).not.toHaveBeenCalled();
    expect(y.runs).toBe(0);
    y.stop();
  });
});

describe('minorGcFunction', () => {
  it('frees dead young ArrayBuffers without putting gc on the global object', async () => {
    const gc = minorGcFunction();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    gc();
    await new Promise((r) => setImmediate(r));
    // 64 socket-read-sized buffers, dropped at once: what a pass leaves behind after 4 MiB.
    let dead: Buffer[] | undefined = [];
    for (let i = 0; i < 64; i++) dead.push(Buffer.alloc(64 * 1024, i));
    const held = process.memoryUsage().arrayBuffers;
    dead = undefined;
    gc();
    // Young ArrayBuffers may be swept on a background thread after the collection: a few turns of the loop, not
    // the time V8's own idle collections would take to free them.
    let after = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 5 && held - after < 56 * 64 * 1024; i++) {
      await new Promise((r) => setImmediate(r));
      after = process.memoryUsage().arrayBuffers;
    }
    expect(dead).toBeUndefined();
    // (At least 56 of the 64: one may still be referenced from a register or a handle of the loop.)
    expect(held - after).toBeGreaterThanOrEqual(56 * 64 * 1024);
  });
});
