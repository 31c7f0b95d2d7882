/**
 * Reusable memory for stored bodies (issue 16, bulk miss): large slabs that a stored object's bytes are copied into,
 * handed back to a bounded free list once nothing can read them any more, and filled again by the next object.
 *
 * Why: a stored body kept as the origin's own chunks is ~1,600 new external 64 KiB ArrayBuffers per 100 MiB; once
 * the store is full they are what V8's full GCs run for (27-32 % of a bulk miss's CPU, session 8). Copied into
 * reused slabs, the origin chunk dies young and the old generation sees no new external memory.
 *
 * Lifecycle of a slab: taken (from the free list, else allocated) by one object's SlabSpan -> filled in order, its
 * pieces handed to readers and sockets as subarrays -> given back by the span when the object recycles (cache-object.ts:
 * out of the store, final, no reader, no hold: every socket write of its bytes finished) -> free, or dropped to the GC
 * when the pool is at its bound. A slab is never given back twice and never while a piece of it can still be read:
 * that is the owner's rule (CacheObject.maybeRecycle); a slab given back too late only costs memory to the GC.
 */

/** Default slab size: 16 origin reads of 64 KiB, so about one chunk in 16 straddles two slabs. */
export const DEFAULT_SLAB_BYTES = 1024 * 1024;

/** What the pool did so far (tests, stats): slabs allocated, reused from the free list, given back, dropped. */
export interface SlabCounts {
  /** Slabs allocated from the system (new ArrayBuffers). */
  allocated: number;
  /** Takes served from the free list. */
  reused: number;
  /** Slabs given back and kept on the free list. */
  returned: number;
  /** Slabs given back while the pool was at its bound: left to the GC. */
  dropped: number;
  /** Exact-size tail buffers (the last piece of a body of known length), never pooled. */
  tails: number;
  /** Slabs left to the GC by an object that stopped being stored mid-fetch (see SlabSpan.disown). */
  disowned: number;
}

export class SlabPool {
  /** Bytes per slab. */
  readonly slabBytes: number;
  /** Most slabs the pool keeps alive, in use and free together (from the storage size): beyond it, given back ones drop. */
  readonly maxSlabs: number;
  readonly counts: SlabCounts = { allocated: 0, reused: 0, returned: 0, dropped: 0, tails: 0, disowned: 0 };
  private free: Buffer[] = [];
  /** Pool slabs taken and not given back. */
  private taken = 0;

  /** `maxBytes`: the storage budget; the pool keeps at most that many bytes of slabs (at least one slab). */
  constructor(maxBytes: number, slabBytes = DEFAULT_SLAB_BYTES) {
    this.slabBytes = slabBytes;
    this.maxSlabs = Math.max(1, Math.floor(maxBytes / slabBytes));
  }

  /** Slabs held by objects now. */
  get inUse(): number {
    return this.taken;
  }

  /** Slabs on the free list now. */
  get freeCount(): number {
    return this.free.length;
  }

  /** A slab of `slabBytes`, from the free list when one is there. Its contents are whatever was there before. */
  take(): Buffer {
    this.taken++;
    const slab = this.free.pop();
    if (slab !== undefined) {
      this.counts.reused++;
      return slab;
    }
    this.counts.allocated++;
    // Own memory, not a slice of Node's shared pool.
    return Buffer.allocUnsafeSlow(this.slabBytes);
  }

  /** Gives a slab back: nothing reads or writes it any more. Kept for reuse unless the pool is at its bound. */
  give(slab: Buffer): void {
    this.taken--;
    if (this.free.length + this.taken >= this.maxSlabs) {
      this.counts.dropped++;
      return;
    }
    this.counts.returned++;
    this.free.push(slab);
  }

  /** A taken slab will never come back (its object left it to the GC). */
  forget(): void {
    this.taken--;
    this.counts.disowned++;
  }

  /** Drops every free slab to the GC (the store was cleared). */
  clearFree(): void {
    this.free = [];
  }
}

/**
 * One object's stored bytes: pool slabs filled in order (a last exact-size piece when the body's length is known),
 * each copied chunk pushed to the object's chunk list as subarrays of them.
 */
export class SlabSpan {
  private readonly pool: SlabPool;
  private readonly slabs: Buffer[] = [];
  private cur: Buffer | undefined;
  /** Bytes of `cur` filled. */
  private at = 0;
  /** Slabs given back (the span is dead). */
  private recycled = false;

  constructor(pool: SlabPool) {
    this.pool = pool;
  }

  /**
   * Copies `chunk` into the span and pushes the piece(s) it now occupies to `out` (one, or two where it straddles
   * slabs). `remaining`: bytes the body still has to come, this chunk included, when known (a Content-Length): the
   * last piece of the body then gets a buffer of exactly its size instead of a whole slab.
   */
  copy(chunk: Buffer, remaining: number | undefined, out: Buffer[]): void {
    let from = 0;
    while (from < chunk.length) {
      let cur = this.cur;
      if (cur === undefined || this.at === cur.length) {
        const left = chunk.length - from;
        const need = remaining === undefined ? undefined : Math.max(left, remaining - from);
        if (need !== undefined && need < this.pool.slabBytes) {
          cur = Buffer.allocUnsafeSlow(need);
          this.pool.counts.tails++;
        } else {
          cur = this.pool.take();
        }
        this.slabs.push(cur);
        this.cur = cur;
        this.at = 0;
      }
      const n = chunk.copy(cur, this.at, from, Math.min(chunk.length, from + cur.length - this.at));
      out.push(cur.subarray(this.at, this.at + n));
      this.at += n;
      from += n;
    }
  }

  /**
   * Leaves the slabs to the GC instead (an object unstored mid-fetch, streaming on as a pass): its readers drop the
   * pieces they passed, and the memory goes as theirs did before slabs, without waiting for the fetch to end.
   */
  disown(): void {
    for (const s of this.slabs) if (s.length === this.pool.slabBytes) this.pool.forget();
    this.slabs.length = 0;
    this.cur = undefined;
  }

  /** Gives every pool slab back (tails go to the GC). Once: the caller guarantees nothing reads them any more. */
  recycle(): void {
    if (this.recycled) return;
    this.recycled = true;
    for (const s of this.slabs) if (s.length === this.pool.slabBytes) this.pool.give(s);
    this.slabs.length = 0;
    this.cur = undefined;
  }
}

/**
 * `chunks` with runs of neighbouring views of one buffer (a slab filled in order) joined into one view each: no copy,
 * the same bytes in the same order. A body copied into slabs is one view per origin read (16-64 per MiB); joined, a
 * 1 MiB slab is one chunk, so a hit's writev, and the slicer stitching cached segments, handle a chunk per slab
 * instead of one per origin read (issue 13: a warm sliced read's cost was per chunk).
 */
export function joinAdjacent(chunks: Buffer[]): Buffer[] {
  let joined: Buffer[] | undefined;
  let i = 0;
  while (i < chunks.length) {
    const first = chunks[i] as Buffer;
    let end = first.byteOffset + first.length;
    let j = i + 1;
    for (let c = chunks[j]; c !== undefined && c.buffer === first.buffer && c.byteOffset === end; c = chunks[++j]) end += c.length;
    if (j > i + 1) (joined ??= chunks.slice(0, i)).push(Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
    else joined?.push(first);
    i = j;
  }
  return joined ?? chunks;
}
