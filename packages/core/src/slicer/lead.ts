import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv } from '../context.js';
import { errorMessage, ProxyError } from '../errors.js';
import type { BerespInput } from '../fetch/beresp.js';
import type { Transaction } from '../txlog/txlog.js';
import { claimSlot, commitRun, cut, failSlots, runsAllowed, type CutControl, type Slot } from './run.js';
import { readAheadOf } from './stitch.js';

/**
 * The first run (issue 13): a meta object made from a 200 (`--slice --slice-min`, runs on) keeps that 200's body
 * instead of closing its connection, and the body is cut into segments 0, 1, ... as it arrives, each claimed (its busy
 * object in the store) before its bytes come, as a run's segments are (run.ts). It claims segments 0 to the read-ahead
 * at once; the sliced response that adopts it (sliced.ts: the first to read the meta object) claims more as it reads
 * on (Segments.readAheadFrom), and while that reader is the read-ahead behind, the body waits, paused (at most
 * LEAD_WAIT_MS). It stops — the rest of the body unread, its connection closed — when the next segment is cached or
 * being fetched already, when nobody adopted it, when its reader is done or gone, or after that wait. The segments
 * after it are fetched as today (runs, or alone). So a cold whole read costs the origin one request, as an unsliced
 * miss does, where it cost one per run and the 200's connection.
 *
 * Not with a Range from the client (the range probe answers those), a HEAD, a request or upstream hook (runsAllowed),
 * or without `slice.keepBody: true` (off by default: session 9's final bench had a cold 100 MiB whole read slower with it,
 * 1.62x unsliced against 1.19x with runs alone, though it makes 1 origin request instead of 35: see README "Numbers").
 */

/** Longest the first run's body waits, paused, for its reader to claim more segments. */
export const LEAD_WAIT_MS = 2000;

/**
 * How far ahead of its reader the first run cuts on its own, at the origin's pace (session 10): the segments past the
 * last claimed are claimed by the body itself as its bytes reach them while it is at most LEAD_AHEAD_SEGMENTS
 * segments and LEAD_AHEAD_BYTES (and at least the read-ahead's segments) past the segment the reader is at, as an
 * unsliced miss fills its object whatever the client's pace; past that it waits for the reader as before. With the
 * read-ahead alone (4 segments) the body was paused and resumed at the client's pace: session 9's final bench had the
 * cold 100 MiB whole read 1.62x the unsliced miss with it, 1.15x with a read-ahead of 8.
 */
export const LEAD_AHEAD_BYTES = 32 * 1024 * 1024;
export const LEAD_AHEAD_SEGMENTS = 32;

const leads = new WeakMap<CacheObject, Lead>();

export class Lead {
  readonly slots: Slot[] = [];
  /** The next segment to claim. */
  private next = 0;
  /** The segment the adopting response is at (0 before one adopted it). */
  private readerAt = 0;
  /** Segments the body may run ahead of `readerAt` on its own (LEAD_AHEAD_*, at least the read-ahead). */
  private readonly ahead: number;
  private adopted = false;
  private released = false;
  /** No more claims: a segment was cached or being fetched, or the rules refused the segments. */
  private blocked = false;
  private timer: NodeJS.Timeout | undefined;
  readonly control: CutControl = { more: () => this.more(), wake: undefined };
  /** Any of its segments' fetch aborted (shutdown, or the store gave it up) stops it. */
  readonly controller = new AbortController();
  private readonly onAbort = (): void => this.controller.abort(new ProxyError('CORE_ERR_NO_READER', 'slicer first run aborted', { source: 'downstream' }));

  constructor(
    private readonly env: ProxyEnv<unknown>,
    private readonly meta: CacheObject,
    private readonly input: BerespInput,
  ) {
    const size = meta.slice?.size ?? 1;
    this.ahead = Math.max(readAheadOf(env), Math.min(LEAD_AHEAD_SEGMENTS, Math.floor(LEAD_AHEAD_BYTES / size)));
  }

  /** The adopting response is at segment `i`: the body may run up to `ahead` segments past it. */
  reading(i: number): void {
    if (i > this.readerAt) this.readerAt = i;
  }

  /** Adopted by a sliced response, which claims segments as it reads on; false when it is no longer (or not) open. */
  adopt(): boolean {
    if (this.adopted || this.released || this.controller.signal.aborted) return false;
    this.adopted = true;
    return true;
  }

  /** The adopting response is done (or gone): no more claims, and the body stops once its claimed segments are in. */
  release(): void {
    this.released = true;
    this.stopWaiting(true);
  }

  /**
   * Claims the segments of `indexes` (ascending) from the next one on, while they are consecutive and miss in the
   * store; a waiting body goes on.
   */
  claim(indexes: readonly number[]): void {
    const s = this.meta.slice;
    // A purged (or replaced) meta object takes no more segments: its next readers fetch anew.
    if (s === undefined || this.blocked || this.released || this.meta.stored !== true) return;
    const added: Slot[] = [];
    for (const i of indexes) {
      if (i < this.next) continue;
      if (i !== this.next) break;
      const sl = claimSlot(this.env, this.input.req, s, i);
      if (sl === undefined) break;
      if (sl === 'taken') {
        this.blocked = true;
        break;
      }
      added.push(sl);
      this.next++;
    }
    if (added.length === 0) return;
    try {
      const res = this.input.res;
      commitRun(this.env, this.meta, added, res, this.input.bereq, this.meta.requestTimeMs, this.meta.responseTimeMs);
    } catch (e: unknown) {
      // The rules would not store the segments (run.ts RunRefused): none kept, no more runs for this object.
      this.blocked = true;
      failSlots(this.env, added, e instanceof Error ? e : new Error(String(e)));
      this.stopWaiting(true);
      return;
    }
    for (const sl of added) {
      sl.obj.fetchController.signal.addEventListener('abort', this.onAbort, { once: true });
      this.env.inflight.add(sl.obj);
      this.slots.push(sl);
    }
    this.stopWaiting(false);
  }

  /**
   * The body has bytes past the claimed segments. Within `ahead` segments of the reader (also before one adopted it:
   * the client's own response may not have reached the slice step yet) the next segment is claimed here, and the body
   * goes on ('added'); further ahead it waits for the reader's claims (true; LEAD_WAIT_MS bounds the wait); false: it
   * stops (released, blocked, the meta gone, or the end).
   */
  private more(): boolean | 'added' {
    const s = this.meta.slice;
    if (this.released || this.blocked || s === undefined || this.meta.stored !== true || this.next * s.size >= s.total) return false;
    if (this.next <= this.readerAt + this.ahead) {
      const had = this.slots.length;
      this.claim([this.next]);
      if (this.slots.length > had) return 'added';
      // Cached or being fetched already, or refused: as a reader's claim that stops it.
      return false;
    }
    this.timer = setTimeout(() => this.stopWaiting(true), LEAD_WAIT_MS);
    this.timer.unref();
    return true;
  }

  private stopWaiting(stop: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.control.wake?.(stop);
  }

  /** Cuts the body into the claimed segments until it stops; never throws. */
  async run(): Promise<void> {
    const env = this.env;
    try {
      await cut(env, this.input.res.body, this.slots, this.controller.signal, this.control);
    } catch (e: unknown) {
      this.input.res.body.destroy();
      const err = e instanceof ProxyError ? e : new ProxyError('CORE_ERR_UPSTREAM_BODY', `slicer first run: ${errorMessage(e)}`, { source: 'upstream', cause: e });
      env.stats.fetch_failed++;
      if (!this.controller.signal.aborted) {
        env.log({ level: 'warn', event: 'slice-run-failed', message: err.message, url: this.input.req.url });
        // The origin broke off the 200 that made the meta object (short of its Content-Length, a reset): nothing of
        // that response is kept, the meta object and the segments already cut go too, as an unsliced miss's body.
        env.store.remove(this.meta);
      }
      failSlots(env, this.slots, err);
    } finally {
      this.blocked = true;
      clearTimeout(this.timer);
      leads.delete(this.meta);
      for (const sl of this.slots) {
        sl.obj.fetchController.signal.removeEventListener('abort', this.onAbort);
        env.inflight.delete(sl.obj);
      }
    }
  }
}

/**
 * After fetch.ts made `meta` from a response (makeMeta): its 200 body kept as the first run (`mayKeep`: it is the
 * fetch's own GET answer, not a HEAD's or the range probe's), or closed unread.
 */
export function keepFirstRun<Ctx>(env: ProxyEnv<Ctx>, meta: CacheObject, input: BerespInput, mayKeep: boolean, be: Transaction | undefined): void {
  const s = meta.slice;
  const res = input.res;
  if (s === undefined || res.status !== 200) return;
  const req = input.req;
  const keep =
    mayKeep &&
    meta.stored === true &&
    env.slicing?.keepBody === true &&
    runsAllowed(env, meta) &&
    req.method === 'GET' &&
    input.bereq.method === 'GET' &&
    req.headers['range'] === undefined &&
    req.segment === undefined;
  const lead = keep ? new Lead(env as ProxyEnv<unknown>, meta, input) : undefined;
  lead?.claim(Array.from({ length: readAheadOf(env) + 1 }, (_, i) => i));
  if (lead === undefined || lead.slots.length === 0) return void res.body.destroy();
  leads.set(meta, lead);
  be?.add('Debug', `slicer: the body is kept as segments from 0 on (first run), ${lead.slots.length} claimed`);
  void lead.run();
}

/** The first run of `meta` for a sliced response to claim segments on, when it is still open and nobody has it. */
export function adoptLead(meta: CacheObject): Lead | undefined {
  const lead = leads.get(meta);
  return lead?.adopt() === true ? lead : undefined;
}
