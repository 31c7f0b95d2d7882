import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BIN } from './test-support/run-cli.js';
import { MALLOC_RAISE_BYTES } from './runtime-memory.js';

/**
 * runtime-memory.ts mallocKeepsFreedMemory (issue 16 bulk miss, session 10), called by `sluice proxy` at start: every
 * origin socket read is a 64 KiB malloc'd buffer that dies young; V8 frees them ~32 MiB at a time, and with glibc's
 * default thresholds the top of the heap went back to the kernel and was faulted in again by the next reads (~240
 * minor faults per MiB of a cold miss once the store was full, ~25 % of its CPU; bench/bytes-cost.mjs). The function
 * frees one ~31 MiB mmapped block, which raises glibc's dynamic mmap threshold to its size and the trim threshold to
 * twice that. Trimming itself depends on the heap's layout (a live block above the dead buffers stops it), so the test
 * shows the raise where it is deterministic: after it, blocks of 4 MiB come from the heap ([heap] in /proc/self/maps
 * grows by them); without it they are mmapped on their own (the heap does not grow).
 */
const MODULE = pathToFileURL(path.join(path.dirname(BIN), '../dist/runtime-memory.js')).href;

/**
 * A fresh node process, mallocKeepsFreedMemory called or not: its RSS growth over the call (MiB), then the [heap]
 * growth (MiB) while it allocates 8 blocks of 4 MiB.
 */
function heapGrowth(raise: boolean): { rss: number; heap: number } {
  const script = `
    import { readFileSync } from 'node:fs';
    const { mallocKeepsFreedMemory } = await import(${JSON.stringify(MODULE)});
    const heap = () => {
      for (const l of readFileSync('/proc/self/maps', 'utf8').split('\\n')) {
        if (!l.endsWith('[heap]')) continue;
        const [a, b] = l.split(' ')[0].split('-');
        return parseInt(b, 16) - parseInt(a, 16);
      }
      return 0;
    };
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    const r0 = rss();
    if (${String(raise)}) mallocKeepsFreedMemory();
    // V8 unmaps freed pages from a helper thread: up to 1 s for the RSS to come down (V8's memory reducer, which would free it too, first runs ~8 s after start).
    let r1 = rss();
    for (let i = 0; i < 20 && r1 - r0 >= 8 * 1048576; i++) {
      await new Promise((r) => setTimeout(r, 50));
      r1 = rss();
    }
    const h0 = heap();
    const keep = [];
    for (let i = 0; i < 8; i++) keep.push(Buffer.allocUnsafeSlow(4 * 1024 * 1024).fill(i));
    console.log(JSON.stringify({ rss: (r1 - r0) / 1048576, heap: (heap() - h0) / 1048576 }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout.trim()) as { rss: number; heap: number };
}

describe('mallocKeepsFreedMemory', () => {
  it('frees a block under glibc’s largest dynamic threshold (32 MiB), else glibc would not adjust', () => {
    expect(MALLOC_RAISE_BYTES).toBeGreaterThan(16 * 1024 * 1024);
    expect(MALLOC_RAISE_BYTES).toBeLessThanOrEqual(32 * 1024 * 1024 - 64 * 1024);
  });

  it('raises glibc’s mmap threshold: 4 MiB blocks come from the heap after it, mmapped on their own without it', () => {
    expect(heapGrowth(false).heap).toBeLessThan(4);
    expect(heapGrowth(true).heap).toBeGreaterThanOrEqual(32);
  });

  it('leaves nothing of its 31 MiB resident once V8 unmapped what it freed (the flattened string is collected, the malloc block unmapped)', () => {
    expect(heapGrowth(true).rss).toBeLessThan(8);
  });
});
