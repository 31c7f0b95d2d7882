import { closeSync, openSync, writeSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * The proxy process's runtime memory settings (issue 16: a 1 GiB pass to a slow client grew RSS by ~50-70 MiB on a
 * fresh proxy). Measured with /proc/PID/smaps, heaptrack and --trace-gc (bench/streaming.mjs --scenario transit),
 * two things grew, neither of them bytes Sluice holds:
 *
 * - Socket read buffers waiting for a GC (~32 MiB, the brk heap). Node allocates 64 KiB per socket read as an
 *   ArrayBuffer; a pass drops each one once the client has it, but V8 frees a young ArrayBuffer only at a scavenge,
 *   and a proxy moving bytes allocates little else on the JS heap, so scavenges come from V8's external-memory rule:
 *   once young ArrayBuffers reach 2 x its default max semi-space (16 MiB on 64-bit without pointer compression: 32
 *   MiB, `Heap::AllocateExternalBackingStore`). That rule takes a constant, not `--max-semi-space-size` (which is why
 *   that flag did not help). `startYoungGc` runs a young-generation GC when `everyBytes` of unstored bodies were sent
 *   since the last one (noted through the proxy's onTransitBytes, what `transit_bodybytes` counts; at most one per
 *   `periodMs`, from a timer armed only then), which bounds those dead
 *   buffers near `everyBytes` plus one period of traffic. Stored misses and hits do not count: their buffers live on
 *   in the cache, and a scavenge would free nothing.
 * - TurboFan recompiling undici's llhttp parser (WebAssembly) once hot, in V8's worker threads (~35 MiB of compiler
 *   zones at the peak, kept by glibc's per-thread arenas afterwards). `noWasmTierUp` keeps llhttp on V8's baseline
 *   compiler (Liftoff); what that costs a miss is in bench/results/2026-12-01-s6-passmem-*.json.
 */

/**
 * V8's old-generation growing factor, as a percentage (`--heap-growing-percent`: the limit after a full GC becomes
 * the live size x (1 + percent/100), V8 caps the factor at 4). Issue 16, bulk miss: V8 counts every byte of
 * ArrayBuffer memory allocated since the last full (mark-compact) GC against the old generation's limit, and a
 * proxy's JS heap is small (~16 MiB live), so with V8's own factor (~1.5-2.5 here) a stored miss started a full GC
 * per ~25-30 MiB of body kept: 3.3-4 per cold 100 MiB object, each re-marking the whole heap. With 300 (factor 4)
 * 1.5 (bench/gc-reasons.mjs). What it costs: up to about (limit - live) more dead old-generation memory (evicted
 * objects' bodies, dead socket read buffers that were promoted) waits for the next full GC; a pass's buffers die
 * young (the young GC below frees them) and the transit bench's RSS growth is measured with it
 * (bench/results/2026-12-01-s7-gc-*.json). Read by V8 at each limit computation, so it works when set at run time.
 */
export function heapGrowingPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0) throw new RangeError(`heap growing percent: ${percent} is not a whole number >= 0`);
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/** Bytes of the block freed by mallocKeepsFreedMemory: under glibc's DEFAULT_MMAP_THRESHOLD_MAX (32 MiB, 64-bit). */
export const MALLOC_RAISE_BYTES = 31 * 1024 * 1024;

/**
 * Stops glibc's malloc from giving the top of its heap back to the kernel after each young GC, the way
 * `GLIBC_TUNABLES=glibc.malloc.trim_threshold=...` does, without a setting in the environment (issue 16, bulk miss,
 * session 10). Why: Node allocates every socket read's 64 KiB buffer with malloc; they die young and V8 frees them
 * in batches at a scavenge (~32 MiB at a time, see the module comment), which leaves that much free at the top of
 * the heap; with glibc's default trim threshold (128 KiB) free() hands it back (brk), and the next 32 MiB of reads
 * fault every page in again: 239 minor faults per MiB of a cold miss, ~25 % of its CPU (perf: page faults from
 * the socket read's copy, brk, munmap; bench/bytes-cost.mjs, 2026-12-02-s10-bulk-trim.json).
 *
 * How: glibc's thresholds are dynamic (malloc/malloc.c, "dynamic threshold"): freeing a block that was mmapped
 * because it was over the mmap threshold, and is at most DEFAULT_MMAP_THRESHOLD_MAX, raises the mmap threshold to its
 * size and the trim threshold to twice that. A string written to /dev/null with fs.writeSync in latin1 is copied
 * into one malloc'd buffer of its length that Node frees before writeSync returns: one ~31 MiB block freed, trim
 * threshold ~62 MiB, mmap threshold ~31 MiB (allocations under it come from the heap). Costs a few tens of ms once, at
 * start (the copy and one full GC).
 * What it costs after: up to ~62 MiB of freed heap stays mapped (reused by the next reads instead of faulted in).
 * Not glibc (musl, macOS): a 31 MiB write to the null device, nothing else.
 */
export function mallocKeepsFreedMemory(): void {
  if (process.platform !== 'linux') return;
  writeAndFree(MALLOC_RAISE_BYTES);
  // V8 flattened the rope for the write: a 31 MiB string in its large-object space, dead once writeAndFree returned
  // but resident until a full GC (an idle proxy was 31 MiB larger without this one: /proc/PID/smaps).
  majorGc();
}

/** Writes `n` latin1 bytes to /dev/null from a string: Node copies them into one malloc'd block and frees it. */
function writeAndFree(n: number): void {
  // A rope of ~25 cons strings until the write flattens it.
  const s = 'x'.repeat(n);
  const fd = openSync('/dev/null', 'w');
  try {
    writeSync(fd, s, null, 'latin1');
  } finally {
    closeSync(fd);
  }
}

/** One full (mark-compact) GC, without `--expose-gc` on the command line (as minorGcFunction). */
function majorGc(): void {
  gcOfNewContext()({ type: 'major' });
}

/** V8's `gc` from a context made while `--expose-gc` is set, and only then: the program's global gets none. */
function gcOfNewContext(): (opts?: { type: 'minor' | 'major' }) => void {
  v8.setFlagsFromString('--expose-gc');
  try {
    return vm.runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

/** Keeps WebAssembly (undici's llhttp) on Liftoff. Takes effect for modules compiled after the call. */
export function noWasmTierUp(): void {
  v8.setFlagsFromString('--liftoff-only');
}

/**
 * V8's young-generation collection as a function, without `--expose-gc` on the command line and without a `gc` on
 * the program's global object: the flag is set just long enough to create one context that has it.
 */
export function minorGcFunction(): () => void {
  const gc = gcOfNewContext();
  return () => gc({ type: 'minor' });
}

export interface YoungGcOptions {
  /** Bytes that may become garbage between two collections (0 leaves collections to V8 alone: nothing runs). */
  everyBytes: number;
  /** The least time between two collections (default 20 ms). */
  periodMs?: number;
  /** The collection (default: `minorGcFunction()`). */
  gc?: () => void;
  /** Clock in ms (default `performance.now`). */
  now?: () => number;
}

export interface YoungGc {
  /** Tells it `bytes` more bytes became garbage (the proxy's onTransitBytes). */
  note(bytes: number): void;
  /** Collections run so far. */
  readonly runs: number;
  stop(): void;
}

/**
 * Runs a young-generation GC once `everyBytes` more bytes became garbage since the last one (see the module comment),
 * at most one per `periodMs`, from a timer of its own (never inside the write that crossed the mark). Nothing runs
 * while no bytes are noted: an idle proxy is never woken by it.
 */
export function startYoungGc(opts: YoungGcOptions): YoungGc {
  if (!(opts.everyBytes > 0)) return { note: () => undefined, runs: 0, stop: () => undefined };
  const gc = opts.gc ?? minorGcFunction();
  const periodMs = opts.periodMs ?? 20;
  const now = opts.now ?? (() => performance.now());
  let pending = 0;
  let lastAt = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const state = { runs: 0 };
  const run = (): void => {
    timer = undefined;
    pending = 0;
    lastAt = now();
    state.runs++;
    gc();
  };
  return {
    note(bytes: number): void {
      pending += bytes;
      if (pending < opts.everyBytes || timer !== undefined || stopped) return;
      timer = setTimeout(run, Math.max(0, lastAt + periodMs - now()));
      // Never what keeps the process alive.
      timer.unref();
    },
    get runs() {
      return state.runs;
    },
    stop: () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
