import { describe, expect, it } from 'vitest';
import { MemoryStore } from './memory-store.js';
import { CacheObject } from './cache-object.js';
import { createStats } from '../stats.js';
import { varySignature } from '../http/vary.js';

/**
 * The store's boundaries, found by the mutation run of 2026-12-01 (issue 17): when an object stops being fresh, in
 * grace or worth keeping, and when the byte budget is full. Each test fails with one surviving mutant of
 * memory-store.ts (named in bench/results/2026-12-01-mutation-cache.md).
 */

interface Lifetime {
  ttlSec: number;
  graceSec?: number;
  keepSec?: number;
  staleIfErrorSec?: number;
}

/** Stores a finished object under `key`, received at time 0, with `bodyBytes` bytes charged as a fetch would. */
function store(s: MemoryStore, key: string, life: Lifetime, bodyBytes = 0): CacheObject {
  const r = s.lookup(key, {}, 0);
  if (r.kind !== 'miss') throw new Error(`expected miss, got ${r.kind}`);
  const o = r.obj;
  o.ttlSec = life.ttlSec;
  o.graceSec = life.graceSec ?? 0;
  o.keepSec = life.keepSec ?? 0;
  o.staleIfErrorSec = life.staleIfErrorSec ?? 0;
  o.expectedLength = bodyBytes;
  s.insert(o);
  o.setState('stream');
  if (bodyBytes > 0) {
    o.extend(Buffer.alloc(bodyBytes, 97));
    s.charge(o, bodyBytes);
  }
  o.finish();
  return o;
}

describe('freshness in the store (RFC 9111 §4.2: fresh while current_age < freshness_lifetime)', () => {
  it('a hit until the age reaches the lifetime, not at it', () => {
    const s = new MemoryStore(1 << 20, createStats());
    const o = store(s, 'k', { ttlSec: 60 });
    const before = s.lookup('k', {}, 59_999);
    expect(before.kind === 'hit' && before.obj).toBe(o);
    const at = s.lookup('k', {}, 60_000);
    expect(at.kind).toBe('miss');
    expect(at.kind === 'miss' && at.reason).toBe('expired');
  });

  it('hasFresh draws the same line', () => {
    const s = new MemoryStore(1 << 20, createStats());
    store(s, 'k', { ttlSec: 60 });
    expect(s.hasFresh('k', {}, 59_999)).toBe(true);
    expect(s.hasFresh('k', {}, 60_000)).toBe(false);
  });

  it('grace lasts until ttl + grace, not at it', () => {
    const s = new MemoryStore(1 << 20, createStats());
    const o = store(s, 'k', { ttlSec: 10, graceSec: 100 });
    const inGrace = s.lookup('k', {}, 109_999);
    expect(inGrace.kind === 'grace' && inGrace.obj).toBe(o);
    if (inGrace.kind === 'grace' && inGrace.fetch !== undefined) s.releaseBusy(inGrace.fetch);
    const after = s.lookup('k', {}, 110_000);
    expect(after.kind).toBe('miss');
  });

  it.each<[string, Lifetime]>([
    ['keep', { ttlSec: 10, keepSec: 100 }],
    ['stale-if-error', { ttlSec: 10, staleIfErrorSec: 100 }],
    ['keep longer than grace', { ttlSec: 10, graceSec: 5, keepSec: 100 }],
  ])('an expired object is kept for revalidation through its %s window, then dropped', (_n, life) => {
    const s = new MemoryStore(1 << 20, createStats());
    const o = store(s, 'k', life);
    const within = s.lookup('k', {}, 50_000);
    expect(within.kind === 'miss' && within.stale).toBe(o);
    if (within.kind === 'miss') s.releaseBusy(within.obj);
    expect(s.objectCount).toBe(1);
    const past = s.lookup('k', {}, 110_000);
    expect(past.kind === 'miss' && past.stale).toBeUndefined();
    expect(s.objectCount).toBe(0);
  });
});

describe('the byte budget (each object counts its body plus 512 bytes of headers)', () => {
  it('an object that fills the budget exactly is kept, and evicts nothing', () => {
    const stats = createStats();
    const s = new MemoryStore(2 * (512 + 100), stats);
    const a = store(s, 'a', { ttlSec: 60 }, 100);
    const b = store(s, 'b', { ttlSec: 60 }, 100);
    expect(s.bytes).toBe(2 * 612);
    expect([a.stored, b.stored]).toEqual([true, true]);
    expect(stats.n_lru_nuked).toBe(0);
    expect(s.lookup('a', {}, 1000).kind).toBe('hit');
  });

  it('one byte over evicts the least recently used object, never the one being charged', () => {
    const stats = createStats();
    const s = new MemoryStore(2 * (512 + 100), stats);
    const a = store(s, 'a', { ttlSec: 60 }, 100);
    const b = store(s, 'b', { ttlSec: 60 }, 101);
    expect(b.stored).toBe(true);
    expect(a.stored).toBe(false);
    expect(stats.n_lru_nuked).toBe(1);
    expect(s.bytes).toBe(613);
    expect(s.objectCount).toBe(1);
  });

  it('a hit makes its object the most recently used, also when it was the newest before another object arrived (issue 16)', () => {
    const stats = createStats();
    const s = new MemoryStore(3 * (512 + 100), stats);
    const a = store(s, 'a', { ttlSec: 60 }, 100);
    const b = store(s, 'b', { ttlSec: 60 }, 100);
    expect(s.lookup('a', {}, 0).kind).toBe('hit');
    expect(s.lookup('a', {}, 0).kind).toBe('hit'); // a is the newest already: nothing moves
    const c = store(s, 'c', { ttlSec: 60 }, 100);
    // c arrived after a's hits: this hit must move a behind c again.
    expect(s.lookup('a', {}, 0).kind).toBe('hit');
    const d = store(s, 'd', { ttlSec: 60 }, 100);
    expect([a.stored, b.stored, c.stored, d.stored]).toEqual([true, false, true, true]);
    const e = store(s, 'e', { ttlSec: 60 }, 100);
    expect([a.stored, c.stored, d.stored, e.stored]).toEqual([true, false, true, true]);
    // The newest object removed (purge), then hit again after a new one: order still follows the hits.
    expect(s.purgeKey('e')).toBe(1);
    const f = store(s, 'f', { ttlSec: 60 }, 100);
    expect(s.lookup('a', {}, 0).kind).toBe('hit');
    store(s, 'g', { ttlSec: 60 }, 100);
    expect([a.stored, d.stored, f.stored]).toEqual([true, false, true]);
    expect(stats.n_lru_nuked).toBe(3);
  });

  it('an object alone one byte over the budget is unstored, and the bytes it had are given back', () => {
    const s = new MemoryStore(512 + 100, createStats());
    const r = s.lookup('k', {}, 0);
    if (r.kind !== 'miss') throw new Error('expected miss');
    r.obj.ttlSec = 60;
    expect(s.insert(r.obj)).toBe(true);
    r.obj.setState('stream');
    expect(s.charge(r.obj, 100)).toBe(true);
    expect(s.charge(r.obj, 1)).toBe(false);
    expect(r.obj.stored).toBe(false);
    expect(r.obj.notStoredReason).toBe('response-too-large');
    expect(s.bytes).toBe(0);
    expect(s.objectCount).toBe(0);
  });

  it('eviction stops as soon as the budget is met: landing exactly on it evicts no more', () => {
    const stats = createStats();
    const s = new MemoryStore(1636, stats);
    const a = store(s, 'a', { ttlSec: 60 }, 100); // 612
    const b = store(s, 'b', { ttlSec: 60 }); // 512: 1124 used
    const c = store(s, 'c', { ttlSec: 60 }, 612); // 512 + 612: 2248, minus a = 1636, the budget exactly
    expect([a.stored, b.stored, c.stored]).toEqual([false, true, true]);
    expect(stats.n_lru_nuked).toBe(1);
    expect(s.bytes).toBe(1636);
  });

  it('the object whose bytes overflow the budget evicts others, even when it is the least recently used', () => {
    const stats = createStats();
    const s = new MemoryStore(2 * 612, stats);
    const a = arriving(s, 'a', 100);
    const b = store(s, 'b', { ttlSec: 60 }, 100);
    expect(s.bytes).toBe(2 * 612);
    // a, still arriving, is the least recently used; its next byte goes over the budget.
    expect(s.charge(a, 1)).toBe(true);
    expect(a.stored).toBe(true);
    expect(b.stored).toBe(false);
    expect(stats.n_lru_nuked).toBe(1);
  });

  it('an object still arriving that gets evicted stops being stored, with the reason', () => {
    const s = new MemoryStore(2 * 612, createStats());
    const a = arriving(s, 'a', 100);
    store(s, 'b', { ttlSec: 60 }, 101);
    expect(a.stored).toBe(false);
    expect(a.notStoredReason).toBe('evicted');
  });
});

describe('bookkeeping that must stay exact (mutation run of 2026-12-01, issue 17)', () => {
  it('hasFresh: an unknown key, or a variant whose fetch failed, is not fresh', () => {
    const s = new MemoryStore(1 << 20, createStats());
    expect(s.hasFresh('nope', {}, 0)).toBe(false);
    const r = s.lookup('k', {}, 0);
    if (r.kind !== 'miss') throw new Error('expected miss');
    r.obj.ttlSec = 60;
    s.insert(r.obj);
    r.obj.setState('stream');
    r.obj.fail(new Error('origin reset'));
    expect(s.hasFresh('k', {}, 1000)).toBe(false);
  });

  it('charging an object the store does not hold counts nothing', () => {
    const s = new MemoryStore(1 << 20, createStats());
    const r = s.lookup('k', {}, 0);
    if (r.kind !== 'miss') throw new Error('expected miss');
    expect(s.charge(r.obj, 100)).toBe(false);
    expect(s.bytes).toBe(0);
  });

  it('removing an object twice changes nothing the second time', () => {
    const s = new MemoryStore(1 << 20, createStats());
    const a = store(s, 'k', { ttlSec: 60 }, 10);
    s.remove(a);
    expect(s.bytes).toBe(0);
    expect(() => s.remove(a)).not.toThrow();
    expect(s.bytes).toBe(0);
  });

  it('a removed object leaves its tags: a later purge by tag counts only the objects still stored', () => {
    const s = new MemoryStore(1 << 20, createStats());
    const tagged = (key: string): CacheObject => {
      const r = s.lookup(key, {}, 0);
      if (r.kind !== 'miss') throw new Error('expected miss');
      r.obj.ttlSec = 60;
      r.obj.tags = ['t'];
      s.insert(r.obj);
      r.obj.setState('stream');
      r.obj.finish();
      return r.obj;
    };
    const a = tagged('a');
    tagged('b');
    s.remove(a);
    expect(() => s.remove(a)).not.toThrow();
    expect(s.purgeTags(['t'])).toBe(1);
    expect(s.purgeTags(['t'])).toBe(0);
  });

  it('dropping an expired variant does not skip the next one', () => {
    const s = new MemoryStore(1 << 20, createStats());
    // Two variants of one key that both match the request: one varying on nothing, one on Accept-Language.
    const plain = s.lookup('k', {}, 0);
    if (plain.kind !== 'miss') throw new Error('expected miss');
    plain.obj.ttlSec = 1000;
    s.insert(plain.obj);
    plain.obj.setState('stream');
    plain.obj.finish();
    const r = s.lookup('k', { 'accept-language': 'en' }, 0);
    if (r.kind !== 'hit') throw new Error('expected hit');
    const varied = new CacheObject('k');
    varied.ttlSec = 10;
    varied.varyFields = ['accept-language'];
    varied.varySig = varySignature(varied.varyFields, { 'accept-language': 'en' });
    s.insert(varied);
    varied.setState('stream');
    varied.finish();
    // At 50 s the varied one (newest, first) is past every window and dropped; the plain one still serves.
    const later = s.lookup('k', { 'accept-language': 'en' }, 50_000);
    expect(later.kind === 'hit' && later.obj).toBe(plain.obj);
  });
});

/** A stored object still arriving (state stream, ttl 60 s) with `bytes` of body charged so far. */
function arriving(s: MemoryStore, key: string, bytes: number): CacheObject {
  const r = s.lookup(key, {}, 0);
  if (r.kind !== 'miss') throw new Error('expected miss');
  r.obj.ttlSec = 60;
  s.insert(r.obj);
  r.obj.setState('stream');
  s.charge(r.obj, bytes);
  return r.obj;
}
