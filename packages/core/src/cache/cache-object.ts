import { ProxyError } from '../errors.js';
import type { HeaderMap } from '../http/headers.js';
import type { NotStoredReason } from '../http/freshness.js';
import { ageOf } from '../http/age.js';
import { joinAdjacent, SlabSpan, type SlabPool } from './slab-pool.js';
import type { ObjectReader, SliceMeta } from './object-parts.js';
import { FetchAbort, type AbortWatch } from './fetch-abort.js';

/**
 * A cache object: one origin response, its headers and its body as it arrives. The Varnish busy object, in TS.
 *
 * Lifecycle (state only moves forward, asserted in setState):
 *   busy      created by a miss; headers not known yet. Other requests for the key wait on it (the waiting list).
 *   stream    headers decided (status, headers, storable or not). Waiters wake; readers read the body as it grows.
 *   finished  the whole body arrived and matched its framing. `body` holds it as one Buffer if the object is stored.
 *   failed    the fetch died (origin error, length mismatch, abort). Readers that reach the end of what was received
 *             get the error instead of an end, so a streamed client is cut off and never sees a clean end.
 *
 * Invariants:
 * - The fetch writes into the object (extend) and never into a client socket: one slow reader cannot stall the
 *   fetch or the other readers.
 * - A stored object keeps every chunk. An unstored object (pass, hit-for-miss, too large) drops chunks every reader
 *   has passed, and `waitForSpace` lets its fetch run at most `transitBytes` ahead of the slowest reader.
 * - When an unstored object loses its last reader before it finished, its fetch is aborted (nobody will see the body).
 * - Slabs (slab-pool.ts): a stored object over CONSOLIDATE_MAX_BYTES copies its body into pool slabs, given back
 *   (maybeRecycle) only when nothing can read them: out of the store, final, no reader, no hold. Holds: every response
 *   that may write its bytes (Tx.obj/stale; released once its writes left the socket: http1/response.ts holdObject)
 *   and an object sharing its chunks (adoptBody). Recycled, it has no body (not `readable`, openReader throws).
 */
export type ObjectState = 'busy' | 'stream' | 'finished' | 'failed';
const RANK: Record<ObjectState, number> = { busy: 0, stream: 1, finished: 2, failed: 2 };
/** Finished stored objects up to this size are joined into one Buffer for single-write hits. */
const CONSOLIDATE_MAX_BYTES = 256 * 1024;

export type { ObjectReader, SliceMeta } from './object-parts.js';

export class CacheObject {
  readonly key: string;
  state: ObjectState = 'busy';
  status = 0;
  headers: HeaderMap = {};
  /** Lowercase names from the response's Vary, and this object's signature over them. */
  varyFields: readonly string[] = [];
  varySig = '';
  /** Content-Length the origin announced (undefined: chunked or close-delimited). */
  expectedLength: number | undefined;
  /** Bytes of body received so far. */
  length = 0;
  /** The whole body as one Buffer: set when a stored object finishes (hits then need a single write). */
  body: Buffer | undefined;
  /** True when the response has no body whatever its headers say (HEAD, 204, 304). */
  bodyless = false;
  error: Error | undefined;

  // Freshness bookkeeping, all in epoch ms / seconds as named.
  requestTimeMs = 0;
  responseTimeMs = 0;
  initialAgeSec = 0;
  ttlSec = 0;
  graceSec = 0;
  keepSec = 0;
  /** stale-if-error window past ttl, seconds (RFC 5861), from the origin's Cache-Control. */
  staleIfErrorSec = 0;
  /**
   * Served stale, within its keep window, when the origin cannot be reached (RFC 9111 §4.2.4 lets a disconnected
   * cache serve stale unless the response forbids it).
   */
  staleIfDisconnected = false;
  /** Adaptive streaming threshold for this object, bytes (0: always stream). */
  streamMinBytes = 0;
  /** Deliver only once complete (Varnish do_stream = false). */
  doStream = true;
  /** Undefined until headers are decided; then whether the object is (still) in the cache index. */
  stored: boolean | undefined;
  /** Why it is not stored (logged, Cache-Status detail). */
  notStoredReason: NotStoredReason | undefined;

  /** The request URL and Host that made this object (bans can test req.url and req.http.host). */
  reqUrl = '';
  reqHost = '';
  /** Invalidation tags from Surrogate-Key / xkey. */
  tags: readonly string[] = [];
  /** vxid of the backend fetch that made this object (0 when the log is off). */
  fetchVxid = 0;
  /** Times a lookup found this object (hit or grace): Varnish's obj.hits, for the deliver hook. */
  hits = 0;
  /** Id of the newest ban this object has been tested against. */
  banCheckedId = 0;
  /**
   * Set when this object is the meta object of a sliced representation (the slicer): no body, its segments are
   * fetched with Range requests and stored under keys of `gen`, and removed with it.
   */
  slice: SliceMeta | undefined;
  /** Serialised stored headers for delivery (`name: value\r\n` lines), built at the first delivery. */
  headBlock: string | undefined;
  /** Delivery's prepared hit response (deliver/head.ts: its type, and the check on each use that it is current). */
  hitResponse: unknown = undefined;

  /** Set when the object reached 'stream' (its headers were decided), whatever happened after. */
  private headersDecided = false;

  /** Aborts the origin fetch; wired by whoever starts the fetch. */
  readonly fetchController = new FetchAbort();

  private chunks: Buffer[] = [];
  /** Absolute index of chunks[0] (chunks before it were trimmed). */
  private firstChunk = 0;
  /** Bytes currently held in `chunks`. */
  private bufferedBytes = 0;
  private readonly readers = new Set<ObjectReader>();
  /** The store's slab pool (see extend), this body's slabs, holds on them, the object whose chunks it shares. */
  private pool: SlabPool | undefined;
  private slabs: SlabSpan | undefined;
  private holds = 0;
  private adopted: CacheObject | undefined;
  /** Its slabs went back to the pool: the body is gone. */
  recycled = false;
  private changed: Promise<void> | undefined;
  private wakeChanged: (() => void) | undefined;
  /** One-shot callbacks for the next change, called synchronously (the fetch's pump: no promise per chunk). */
  private changeCallbacks: (() => void)[] = [];

  constructor(key: string) {
    this.key = key;
  }

  /** Moves the state forward and wakes everyone waiting for a change. */
  setState(next: ObjectState): void {
    if (RANK[next] <= RANK[this.state] && !(next === this.state && next === 'stream')) {
      throw internalError(`CacheObject ${this.key}: state ${this.state} -> ${next} goes backwards`);
    }
    this.state = next;
    if (next === 'stream') this.headersDecided = true;
    this.notify();
  }

  /** Appends a body chunk (called by the fetch only). */
  extend(chunk: Buffer): void {
    if (this.state !== 'stream') throw internalError(`CacheObject ${this.key}: extend in state ${this.state}`);
    const expected = this.expectedLength;
    if (this.pool !== undefined && this.stored === true && (expected ?? this.length + chunk.length) > CONSOLIDATE_MAX_BYTES) {
      (this.slabs ??= new SlabSpan(this.pool)).copy(chunk, expected === undefined ? undefined : expected - this.length, this.chunks);
    } else this.chunks.push(chunk);
    this.length += chunk.length;
    this.bufferedBytes += chunk.length;
    this.notify();
  }

  /** The fetch completed with the whole body. A stored object's chunks become one Buffer for single-write hits. */
  finish(): void {
    this.setState('finished');
    this.consolidate();
    this.maybeRecycle();
  }

  /** The store keeping this object: a body over CONSOLIDATE_MAX_BYTES goes into slabs of `pool` (before any byte). */
  useSlabs(pool: SlabPool): void {
    if (this.length === 0) this.pool = pool;
  }

  /** The store let go of this object (removed from the index): its slabs recycle once nothing reads them. */
  leftStore(): void {
    if (this.stored === true) this.stored = false;
    this.maybeRecycle();
  }

  /** Whether a response writing its bytes must hold it: it has slabs (or shares some), or may get them (not final). */
  get needsHold(): boolean {
    return this.slabs !== undefined || this.adopted !== undefined || !this.isFinal;
  }

  /** Keeps this object's slabs from reuse until the matching release (a response writing its bytes). */
  hold(): void {
    this.holds++;
  }
  release(): void {
    this.holds--;
    this.maybeRecycle();
  }

  /** Gives the slabs back when nothing can read them any more: out of the store, final, no reader and no hold. */
  private maybeRecycle(): void {
    if (this.holds > 0 || this.readers.size > 0 || this.stored === true || !this.isFinal) return;
    if (this.recycled || (this.slabs === undefined && this.adopted === undefined)) return;
    this.recycled = true;
    this.chunks = [];
    this.firstChunk = 1;
    this.bufferedBytes = 0;
    this.body = undefined;
    this.slabs?.recycle();
    this.slabs = undefined;
    const from = this.adopted;
    this.adopted = undefined;
    from?.release();
  }

  /**
   * Joins a finished stored object's chunks into `body` while no reader is open (a reader's position is a chunk index
   * into the list; otherwise the last reader to leave does it). Large bodies are not copied (60 ms per 50 MiB): they go
   * out as one writev of their chunks, each slab's views joined into one (slab-pool.ts joinAdjacent, no copy).
   */
  private consolidate(): void {
    if (this.state !== 'finished' || this.stored !== true || this.body !== undefined) return;
    if (this.readers.size > 0 || this.firstChunk !== 0) return;
    if (this.length > CONSOLIDATE_MAX_BYTES) {
      if (this.slabs !== undefined) this.chunks = joinAdjacent(this.chunks);
      return;
    }
    const body = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.length);
    this.body = body;
    this.chunks = [body];
  }

  fail(err: Error): void {
    if (this.state === 'finished' || this.state === 'failed') return;
    this.error = err;
    this.state = 'failed';
    this.notify();
    this.maybeRecycle();
  }

  /**
   * Whether this (expired) object may still be served when the origin fails: within its stale-if-error window, or, when
   * the origin could not be reached at all (`disconnected`), within its keep window if `staleIfDisconnected`.
   */
  staleUsableOnError(nowMs: number, disconnected = false): boolean {
    if (this.state !== 'finished') return false;
    const ageSec = ageOf(this, nowMs);
    if (this.staleIfErrorSec > 0 && ageSec < this.ttlSec + this.staleIfErrorSec) return true;
    return disconnected && this.staleIfDisconnected && ageSec < this.ttlSec + this.keepSec;
  }

  /** The fetch failed before its headers were decided (connect error, timeout, hook failure): the client gets a synth. */
  get failedWithoutResponse(): boolean {
    return this.state === 'failed' && !this.headersDecided;
  }

  get isFinal(): boolean {
    return this.state === 'finished' || this.state === 'failed';
  }

  /** Bytes held in memory for this object's body. */
  get heldBytes(): number {
    return this.bufferedBytes;
  }

  /** Takes the body of a complete object (a 304 revalidated it), shared, not copied. In state 'stream'; finishes. */
  adoptBody(from: CacheObject): void {
    if (from.state !== 'finished' || from.recycled) throw internalError(`CacheObject ${this.key}: adopting the body of an unfinished or recycled object`);
    if (this.state !== 'stream') throw internalError(`CacheObject ${this.key}: adopting in state ${this.state}`);
    // Shared, not copied into slabs of this object's own: `from` is held (its slabs kept) until this one recycles.
    if (from.needsHold) (this.adopted = from).hold();
    this.chunks = from.body !== undefined ? [from.body] : from.chunks.slice();
    for (const c of this.chunks) this.length += c.length;
    this.bufferedBytes = this.length;
    this.finish();
  }

  /**
   * Takes `from`'s lifetime and identity (times, ttl/grace/keep, request URL and host for bans, tags, Vary, the
   * fetch that made it): an object derived from another one, like the slicer's meta object, lives and dies with it.
   */
  copyLifetime(from: CacheObject): void {
    this.requestTimeMs = from.requestTimeMs;
    this.responseTimeMs = from.responseTimeMs;
    this.initialAgeSec = from.initialAgeSec;
    this.ttlSec = from.ttlSec;
    this.graceSec = from.graceSec;
    this.keepSec = from.keepSec;
    this.staleIfDisconnected = from.staleIfDisconnected;
    this.reqUrl = from.reqUrl;
    this.reqHost = from.reqHost;
    this.tags = from.tags;
    this.fetchVxid = from.fetchVxid;
    this.varyFields = from.varyFields;
    this.varySig = from.varySig;
  }

  /** Stop keeping the body: from now on chunks every reader passed are dropped, and the fetch gets backpressure. */
  unstore(reason: NotStoredReason): void {
    this.stored = false;
    this.notStoredReason ??= reason;
    // Mid-fetch it becomes a pass: its slabs go to the GC as its readers pass them (not pinned until the fetch ends).
    if (!this.isFinal) this.slabs?.disown();
    this.trim();
    if (this.readers.size === 0 && !this.isFinal && this.state !== 'busy') {
      this.fetchController.abort(new ProxyError('CORE_ERR_NO_READER', 'no reader left for an unstored object', { source: 'downstream' }));
    }
    this.maybeRecycle();
  }

  /** A reader at body offset 0. Trimming never drops chunks a registered reader has not read. */
  openReader(): ObjectReader {
    if (this.firstChunk > 0) throw internalError(`CacheObject ${this.key}: reader opened after trimming or recycling`);
    const r: ObjectReader = { chunkIndex: 0, offset: 0, closed: false };
    this.readers.add(r);
    return r;
  }

  /** The whole body as a list of chunks once finished, if none was dropped; a hit writes them in one go. */
  get completeChunks(): readonly Buffer[] | undefined {
    return this.state === 'finished' && this.firstChunk === 0 ? this.chunks : undefined;
  }

  /** Readers open now (client deliveries reading the body). */
  get readerCount(): number {
    return this.readers.size;
  }

  /** Whether a new reader can still see the whole body. */
  get readable(): boolean {
    return this.firstChunk === 0;
  }

  closeReader(r: ObjectReader): void {
    if (r.closed) return;
    r.closed = true;
    this.readers.delete(r);
    if (this.readers.size === 0) this.consolidate();
    if (this.stored === false) {
      if (this.readers.size === 0 && !this.isFinal) {
        this.fetchController.abort(new ProxyError('CORE_ERR_NO_READER', 'last reader of an unstored object left', { source: 'downstream' }));
      }
      this.trim();
    }
    this.maybeRecycle();
  }

  /**
   * The body from the reader's position, chunk by chunk, as it arrives. Ends after the last byte of a finished
   * object; throws the fetch error when the object failed, so a caller can cut its client off.
   */
  async *read(r: ObjectReader, signal: AbortWatch): AsyncGenerator<Buffer, void, undefined> {
    // One abort listener for the whole read, and one plain promise per wait (waitChange with a signal costs two
    // promises and an abort listener added and removed per chunk: 5% of a cold 100 MiB miss's profile).
    let wake: (() => void) | undefined;
    const onAbort = (): void => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        signal.throwIfAborted();
        const chunk = this.nextChunk(r);
        if (chunk !== undefined) {
          yield chunk;
          continue;
        }
        if (this.state === 'finished') return;
        if (this.state === 'failed') throw this.error ?? new ProxyError('CORE_ERR_UPSTREAM_BODY', 'fetch failed', { source: 'upstream' });
        await new Promise<void>((resolve) => {
          wake = resolve;
          this.onNextChange(resolve);
        });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.closeReader(r);
    }
  }

  /**
   * The next chunk at the reader's position if it has arrived, advancing the reader; undefined otherwise (the caller
   * then looks at `state` and waits). The synchronous step of `read`, for callers that take every chunk there at once.
   */
  nextChunk(r: ObjectReader): Buffer | undefined {
    const i = r.chunkIndex - this.firstChunk;
    if (i >= this.chunks.length) return undefined;
    const chunk = this.chunks[i] as Buffer;
    r.chunkIndex++;
    r.offset += chunk.length;
    if (this.stored === false) this.trim();
    return chunk;
  }

  /** Calls `cb` once, synchronously, at the next change (new chunk, state, freed space): no promise per chunk. */
  onNextChange(cb: () => void): void {
    this.changeCallbacks.push(cb);
  }

  /** Whether the fetch of an unstored object must stop until readers free space (see waitForSpace). */
  overTransit(limitBytes: number): boolean {
    return this.stored === false && this.bufferedBytes > limitBytes && this.readers.size > 0;
  }

  /** Resolves at the next state change or new chunk; rejects when `signal` aborts. */
  waitChange(signal?: AbortWatch): Promise<void> {
    if (this.changed === undefined) {
      this.changed = new Promise<void>((resolve) => {
        this.wakeChanged = resolve;
      });
    }
    const changed = this.changed;
    if (signal === undefined) return changed;
    signal.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      changed.then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        () => undefined,
      );
    });
  }

  /** Waits until the state has reached at least `min` (or the object failed). */
  async waitState(min: ObjectState, signal?: AbortWatch): Promise<void> {
    while (RANK[this.state] < RANK[min] && this.state !== 'failed') await this.waitChange(signal);
  }

  /** Transit backpressure: resolves once an unstored object holds at most `limitBytes` ahead of its slowest reader. */
  async waitForSpace(limitBytes: number, signal: AbortWatch): Promise<void> {
    while (this.overTransit(limitBytes)) await this.waitChange(signal);
  }

  private notify(): void {
    const wake = this.wakeChanged;
    this.changed = undefined;
    this.wakeChanged = undefined;
    wake?.();
    if (this.changeCallbacks.length > 0) {
      const cbs = this.changeCallbacks;
      this.changeCallbacks = [];
      for (const cb of cbs) cb();
    }
  }

  /** Drops chunks every reader has passed (unstored objects only). */
  private trim(): void {
    if (this.readers.size === 0) return;
    let min = Number.POSITIVE_INFINITY;
    for (const r of this.readers) if (r.chunkIndex < min) min = r.chunkIndex;
    const drop = min - this.firstChunk;
    if (drop <= 0) return;
    for (let i = 0; i < drop; i++) this.bufferedBytes -= (this.chunks[i] as Buffer).length;
    this.chunks.splice(0, drop);
    this.firstChunk = min;
    this.body = undefined;
    // Space freed: a fetch parked in waitForSpace re-checks.
    this.notify();
  }
}

/** A broken invariant of the object's lifecycle: a bug, reported with a code like every other failure. */
function internalError(message: string): ProxyError {
  return new ProxyError('CORE_ERR_INTERNAL', message, { source: 'internal' });
}
