import type { HeaderMap } from '../http/headers.js';
import { varySignature } from '../http/vary.js';
import { CacheObject } from './cache-object.js';
import type { Stats } from '../stats.js';
import { banMatches, parseBan, type Ban } from './ban.js';
import type { LookupResult, Store } from './store.js';
import { ageOf } from '../http/age.js';
import { DEFAULT_SLAB_BYTES, SlabPool } from './slab-pool.js';

/**
 * The cache index and its memory budget.
 *
 * Per key (the hash): the stored variants (newest first), at most one busy object (a fetch whose headers are not
 * known yet; requests for the key wait on it), and a hit-for-miss marker until a time (the key was uncacheable:
 * requests go to the origin without waiting on each other).
 *
 * Memory: every stored object's body bytes (plus a header estimate) count against `maxBytes`. Going over evicts
 * least-recently-used objects (`n_lru_nuked`). An object that alone exceeds the budget is unstored: it keeps
 * streaming to its readers but is no longer kept (reason `response-too-large`).
 *
 * Bodies over 256 KiB are copied into slabs of the store's pool (slab-pool.ts), reused once the object is gone and
 * nothing reads it any more. Objects are charged their bytes; slab slack is at most one slab per object whose length
 * was not announced (a known length ends in an exact-size piece), and the pool keeps at most `maxBytes` of slabs.
 */
export type { LookupResult } from './store.js';

interface KeyEntry {
  variants: CacheObject[];
  busy: CacheObject | undefined;
  hitForMissUntilMs: number;
  hitForPassUntilMs: number;
}

const HEADER_OVERHEAD_BYTES = 512;

export class MemoryStore implements Store {
  readonly maxBytes: number;
  private usedBytes = 0;
  private readonly index = new Map<string, KeyEntry>();
  /** LRU order: first = least recently used. Only stored objects. */
  private readonly lru = new Set<CacheObject>();
  /** The last object of `lru` when known (undefined after it was removed): touching it again changes nothing. */
  private lruNewest: CacheObject | undefined;
  /** Bytes charged per stored object. */
  private readonly charged = new Map<CacheObject, number>();
  /**
   * Keys holding a hit-for-miss/-pass marker, oldest first, with the marker's expiry. Each new marker sweeps a few
   * expired ones from the front, so markers of URLs never requested again do not pile up in the index.
   */
  private readonly markers = new Map<string, number>();
  /** Bans in id order; dropped once every object older than them has been tested. */
  private bans: Ban[] = [];
  private nextBanId = 1;
  /** Objects the background sweeper still has to test against the bans. */
  private lurkQueue: CacheObject[] = [];
  /** Stored objects by invalidation tag. */
  private readonly byTag = new Map<string, Set<CacheObject>>();
  private readonly stats: Stats;

  /** Slabs for stored bodies (undefined: `slabBytes` 0, bodies kept as the origin's chunks). */
  readonly slabs: SlabPool | undefined;

  constructor(maxBytes: number, stats: Stats, opts: { slabBytes?: number } = {}) {
    this.maxBytes = maxBytes;
    this.stats = stats;
    const slabBytes = opts.slabBytes ?? DEFAULT_SLAB_BYTES;
    this.slabs = slabBytes > 0 ? new SlabPool(maxBytes, slabBytes) : undefined;
  }

  get bytes(): number {
    return this.usedBytes;
  }

  get objectCount(): number {
    return this.lru.size;
  }

  /**
   * Finds what serves a request for `key`: a fresh variant (hit), a busy fetch to wait on, or a miss (then a new busy
   * object is registered for the caller). `nowMs` is the clock; the store never reads one itself.
   */
  lookup(key: string, reqHeaders: HeaderMap, nowMs: number): LookupResult {
    let entry = this.index.get(key);
    let sawUri = false;
    let sawExpired = false;
    let inGrace: CacheObject | undefined;
    let stale: CacheObject | undefined;
    if (entry !== undefined) {
      for (let i = 0; i < entry.variants.length; i++) {
        const obj = entry.variants[i] as CacheObject;
        if (obj.state === 'failed') continue;
        if (this.banned(obj)) {
          this.remove(obj);
          i--;
          continue;
        }
        sawUri = true;
        if (obj.varySig !== varySignature(obj.varyFields, reqHeaders)) continue;
        const ageSec = ageOf(obj, nowMs);
        if (ageSec < obj.ttlSec) {
          this.touch(obj);
          return { kind: 'hit', obj };
        }
        sawExpired = true;
        if (ageSec < obj.ttlSec + obj.graceSec && obj.state !== 'busy') {
          inGrace ??= obj;
        } else if (ageSec < obj.ttlSec + Math.max(obj.graceSec, obj.keepSec, obj.staleIfErrorSec)) {
          stale ??= obj;
        } else {
          // Past ttl + grace/keep/stale-if-error: no use for it any more.
          this.remove(obj);
          i--;
        }
      }
      if (inGrace !== undefined) {
        // Grace: serve stale at once; exactly one background fetch per key (the busy slot).
        this.touch(inGrace);
        if (entry.busy !== undefined) return { kind: 'grace', obj: inGrace, fetch: undefined };
        const fetch = new CacheObject(key);
        entry.busy = fetch;
        return { kind: 'grace', obj: inGrace, fetch };
      }
      if (entry.busy !== undefined) return { kind: 'busy', obj: entry.busy };
      if (entry.hitForPassUntilMs > nowMs) return { kind: 'hit-for-pass' };
      if (entry.hitForMissUntilMs > nowMs) return { kind: 'hit-for-miss', obj: new CacheObject(key) };
    } else {
      entry = { variants: [], busy: undefined, hitForMissUntilMs: 0, hitForPassUntilMs: 0 };
      this.index.set(key, entry);
    }
    const obj = new CacheObject(key);
    entry.busy = obj;
    return { kind: 'miss', obj, reason: sawExpired ? 'expired' : sawUri ? 'vary-miss' : 'uri-miss', stale };
  }

  /**
   * Whether a fresh variant for these request headers is stored, without the side effects of `lookup` (no busy
   * object, no LRU touch, bans not applied): the slicer's Cache-Status asks it of segments it has not reached yet.
   */
  hasFresh(key: string, reqHeaders: HeaderMap, nowMs: number): boolean {
    const entry = this.index.get(key);
    if (entry === undefined) return false;
    for (const obj of entry.variants) {
      if (obj.state === 'failed' || obj.varySig !== varySignature(obj.varyFields, reqHeaders)) continue;
      if (ageOf(obj, nowMs) < obj.ttlSec) return true;
    }
    return false;
  }

  /**
   * Headers of `obj` are decided and it is to be kept: it replaces the key's busy slot and any variant with the same
   * Vary signature. Returns false (and unstores) when it can never fit the budget: at once, touching nothing, when its
   * Content-Length alone is over it, so no client is told `stored` about a body that cannot be kept.
   */
  insert(obj: CacheObject): boolean {
    if (HEADER_OVERHEAD_BYTES + (obj.bodyless ? 0 : obj.expectedLength ?? 0) > this.maxBytes) {
      obj.unstore('response-too-large');
      return false;
    }
    const entry = this.entryFor(obj.key);
    if (entry.busy === obj) entry.busy = undefined;
    entry.hitForMissUntilMs = 0;
    entry.hitForPassUntilMs = 0;
    // Add first, then drop the variants it supersedes: removing the last variant of an entry deletes the entry.
    entry.variants.unshift(obj);
    for (const old of entry.variants.slice(1)) {
      if (old.varySig === obj.varySig && old.varyFields.join() === obj.varyFields.join()) this.remove(old);
    }
    obj.stored = true;
    if (this.slabs !== undefined && !obj.bodyless) obj.useSlabs(this.slabs);
    // Bans issued before the object existed do not apply to it.
    obj.banCheckedId = this.nextBanId - 1;
    this.lru.add(obj);
    this.lruNewest = obj;
    this.charged.set(obj, 0);
    for (const t of obj.tags) {
      let set = this.byTag.get(t);
      if (set === undefined) this.byTag.set(t, (set = new Set()));
      set.add(obj);
    }
    return this.charge(obj, HEADER_OVERHEAD_BYTES);
  }

  /** Headers of `obj` are decided and it is not to be kept: mark the key hit-for-miss (or -pass) for `ttlSec`. */
  markUncacheable(obj: CacheObject, ttlSec: number, nowMs: number, kind: 'miss' | 'pass' = 'miss'): void {
    const entry = this.entryFor(obj.key);
    if (entry.busy === obj) entry.busy = undefined;
    const untilMs = nowMs + ttlSec * 1000;
    if (kind === 'pass') entry.hitForPassUntilMs = untilMs;
    else entry.hitForMissUntilMs = untilMs;
    // The key's stored variant for the same request is superseded by the uncacheable answer (as Varnish's
    // hit-for-miss object replaces it in the hash). The marker is set first so the entry outlives the removal.
    for (const old of entry.variants.slice()) if (old.varySig === obj.varySig) this.remove(old);
    this.cleanup(obj.key, entry);
    this.markers.delete(obj.key);
    this.markers.set(obj.key, untilMs);
    this.sweepMarkers(nowMs, 4);
  }

  /** Number of keys with a hit-for-miss or hit-for-pass marker (expired ones not yet swept included). */
  get markerCount(): number {
    return this.markers.size;
  }

  /** Clears up to `max` expired markers, oldest first. */
  private sweepMarkers(nowMs: number, max: number): void {
    let n = 0;
    for (const [key, untilMs] of this.markers) {
      if (n >= max || untilMs > nowMs) return;
      n++;
      this.markers.delete(key);
      const entry = this.index.get(key);
      if (entry === undefined) continue;
      if (entry.hitForMissUntilMs <= nowMs) entry.hitForMissUntilMs = 0;
      if (entry.hitForPassUntilMs <= nowMs) entry.hitForPassUntilMs = 0;
      this.cleanup(key, entry);
    }
  }

  /** The key's busy fetch failed before it had headers: release the slot so a waiter can fetch again. */
  releaseBusy(obj: CacheObject): void {
    const entry = this.index.get(obj.key);
    if (entry !== undefined && entry.busy === obj) {
      entry.busy = undefined;
      this.cleanup(obj.key, entry);
    }
  }

  /**
   * Counts `bytes` more of `obj` against the budget, evicting LRU objects to make room. Returns false when `obj`
   * itself was dropped because it alone does not fit.
   */
  charge(obj: CacheObject, bytes: number): boolean {
    const prev = this.charged.get(obj);
    if (prev === undefined) return false;
    const now = prev + bytes;
    if (now > this.maxBytes) {
      this.remove(obj);
      obj.unstore('response-too-large');
      return false;
    }
    this.charged.set(obj, now);
    this.usedBytes += bytes;
    if (this.usedBytes > this.maxBytes) this.evict(obj);
    return true;
  }

  /** Removes an object from the index (readers that hold it finish normally). */
  remove(obj: CacheObject): void {
    const bytes = this.charged.get(obj);
    if (bytes !== undefined) {
      this.usedBytes -= bytes;
      this.charged.delete(obj);
    }
    this.lru.delete(obj);
    if (this.lruNewest === obj) this.lruNewest = undefined;
    for (const t of obj.tags) {
      const set = this.byTag.get(t);
      if (set !== undefined) {
        set.delete(obj);
        if (set.size === 0) this.byTag.delete(t);
      }
    }
    const entry = this.index.get(obj.key);
    if (entry !== undefined) {
      const i = entry.variants.indexOf(obj);
      if (i >= 0) entry.variants.splice(i, 1);
      this.cleanup(obj.key, entry);
    }
    // Its slabs go back to the pool once nothing reads them (cache-object.ts).
    obj.leftStore();
    // A sliced object's segments live and die with it (purge, ban, tag, eviction, expiry).
    if (obj.slice !== undefined) {
      for (const k of obj.slice.segments) for (const v of this.index.get(k)?.variants.slice() ?? []) this.remove(v);
      obj.slice.segments.clear();
    }
  }

  /** Removes every stored variant of `key` (purge); returns how many. */
  purgeKey(key: string): number {
    const entry = this.index.get(key);
    if (entry === undefined) return 0;
    const victims = entry.variants.slice();
    for (const v of victims) this.remove(v);
    this.stats.n_purges += victims.length;
    return victims.length;
  }

  /** Removes every object whose key starts with `prefix` (the slicer's meta and segment keys of one object). O(keys). */
  purgePrefix(prefix: string): number {
    let n = 0;
    for (const k of [...this.index.keys()]) if (k.startsWith(prefix)) n += this.purgeKey(k);
    return n;
  }

  /** Removes every stored object carrying one of `tags` (Surrogate-Key / xkey); returns how many. */
  purgeTags(tags: readonly string[]): number {
    const victims = new Set<CacheObject>();
    for (const t of tags) for (const o of this.byTag.get(t) ?? []) victims.add(o);
    for (const v of victims) this.remove(v);
    this.stats.n_purges += victims.size;
    return victims.size;
  }

  /**
   * Adds a ban (throws BanSyntaxError for a bad expression). It applies to objects stored before now: each is tested
   * when looked up, and the sweeper (lurk) tests the rest in slices.
   */
  addBan(expr: string, nowMs: number): Ban {
    const ban: Ban = { id: this.nextBanId++, expr, conditions: parseBan(expr), createdMs: nowMs };
    this.bans.push(ban);
    this.stats.bans_added++;
    this.lurkQueue = [...this.lru];
    return ban;
  }

  /** Bans not yet known to be tested against every object they apply to. */
  get activeBans(): readonly Ban[] {
    return this.bans;
  }

  /**
   * The ban sweeper: tests up to `budget` queued objects against the bans newer than them, removing matches.
   * Returns how many were removed. When nothing is left to test, the ban list is emptied.
   */
  lurk(budget: number): number {
    let removed = 0;
    while (budget-- > 0 && this.lurkQueue.length > 0) {
      const obj = this.lurkQueue.pop() as CacheObject;
      if (obj.stored !== true) continue;
      if (this.banned(obj)) {
        this.remove(obj);
        removed++;
      }
    }
    if (this.lurkQueue.length === 0 && this.bans.length > 0) {
      // Every object stored before the newest ban has been tested (objects stored after it start past it).
      this.bans = [];
    }
    return removed;
  }

  /** Whether a ban newer than the object's checkpoint matches it; advances the checkpoint when none does. */
  private banned(obj: CacheObject): boolean {
    const newest = this.nextBanId - 1;
    if (obj.banCheckedId >= newest) return false;
    const target = { status: obj.status, headers: obj.headers, url: obj.reqUrl, host: obj.reqHost };
    for (const ban of this.bans) {
      if (ban.id <= obj.banCheckedId) continue;
      if (banMatches(ban.conditions, target)) {
        this.stats.bans_obj_killed++;
        return true;
      }
    }
    obj.banCheckedId = newest;
    return false;
  }

  /** Drops every object and marker (shutdown, tests). */
  clear(): void {
    for (const obj of [...this.lru]) this.remove(obj);
    this.index.clear();
    this.markers.clear();
    this.slabs?.clearFree();
  }

  /** Keys in the index (objects, busy fetches or markers). */
  get keyCount(): number {
    return this.index.size;
  }

  private evict(keep: CacheObject): void {
    for (const victim of this.lru) {
      if (this.usedBytes <= this.maxBytes) return;
      if (victim === keep) continue;
      this.remove(victim);
      if (!victim.isFinal) victim.unstore('evicted');
      this.stats.n_lru_nuked++;
    }
  }

  private touch(obj: CacheObject): void {
    // A hot object hit again and again is already the newest: no delete and re-add per hit.
    if (this.lruNewest === obj) return;
    this.lru.delete(obj);
    this.lru.add(obj);
    this.lruNewest = obj;
  }

  private entryFor(key: string): KeyEntry {
    let entry = this.index.get(key);
    if (entry === undefined) {
      entry = { variants: [], busy: undefined, hitForMissUntilMs: 0, hitForPassUntilMs: 0 };
      this.index.set(key, entry);
    }
    return entry;
  }

  private cleanup(key: string, entry: KeyEntry): void {
    if (
      entry.variants.length === 0 &&
      entry.busy === undefined &&
      entry.hitForMissUntilMs === 0 &&
      entry.hitForPassUntilMs === 0
    ) {
      this.index.delete(key);
    }
  }
}
