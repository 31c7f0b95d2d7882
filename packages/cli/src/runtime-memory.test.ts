import { afterEach, describe, expect, it, vi } from 'vitest';
import { heapGrowingPercent, minorGcFunction, startYoungGc } from './runtime-memory.js';

/** The proxy's young-generation GC trigger (runtime-memory.ts, issue 16: a pass's dead socket read buffers). */
describe('startYoungGc', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collects once `everyBytes` more bytes were noted, from a timer, at most once per period, and not otherwise', () => {
    vi.useFakeTimers();
    const gc = vi.fn();
    const y = startYoungGc({ everyBytes: 1000, periodMs: 20, gc, now: Date.now });
    // Nothing noted: no timer at all (an idle proxy is never woken by it).
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(100);
    y.note(999);
    expect(vi.getTimerCount()).toBe(0);
    y.note(1);
    // Never inside the write that crossed the mark: from a timer of its own.
    expect(gc).not.toHaveBeenCalled();
    vi.advanceTimersByTime(0);
    expect(gc).toHaveBeenCalledTimes(1);
    // 10 000 bytes at once, right after: one collection, and not before the period since the last one is over.
    y.note(10_000);
    y.note(10_000);
    vi.advanceTimersByTime(19);
    expect(gc).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(gc).toHaveBeenCalledTimes(2);
    // The count starts again from there.
    y.note(999);
    vi.advanceTimersByTime(200);
    expect(gc).toHaveBeenCalledTimes(2);
    expect(y.runs).toBe(2);
    y.note(1);
    y.stop();
    vi.advanceTimersByTime(200);
    expect(gc).toHaveBeenCalledTimes(2);
    y.note(10_000);
    vi.advanceTimersByTime(200);
    expect(gc).toHaveBeenCalledTimes(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does nothing with everyBytes 0 (left to V8)', () => {
    vi.useFakeTimers();
    const gc = vi.fn();
    const y = startYoungGc({ everyBytes: 0, gc });
    y.note(1e9);
    vi.advanceTimersByTime(1000);
    expect(gc).not.toHaveBeenCalled();
    expect(y.runs).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
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

describe('heapGrowingPercent', () => {
  // What it changes (fewer full GCs per stored MiB) is counted on a real proxy in heap-growing.test.ts; here only
  // that a value V8 would misread never reaches it.
  it('refuses a negative or fractional percentage before setting anything', () => {
    expect(() => heapGrowingPercent(-1)).toThrow(RangeError);
    expect(() => heapGrowingPercent(1.5)).toThrow(/not a whole number/);
    expect(() => heapGrowingPercent(Number.NaN)).toThrow(RangeError);
  });
});
