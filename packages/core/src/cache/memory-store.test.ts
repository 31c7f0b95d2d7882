import { describe, expect, it } from 'vitest';
import { MemoryStore } from './memory-store.js';
import { createStats } from '../stats.js';
import { varyFields, varySignature } from '../http/vary.js';
import type { HeaderMap } from '../http/headers.js';

/** Stores a complete object under `key` for a request with `reqHeaders`, varying as `vary` says, fresh for 60 s. */
function storeVariant(store: MemoryStore, key: string, vary: string, reqHeaders: HeaderMap, nowMs = 0) {
  const r = store.lookup(key, reqHeaders, nowMs);
  if (r.kind !== 'miss') throw new Error(`expected miss, got ${r.kind}`);
  r.obj.ttlSec = 60;
  r.obj.responseTimeMs = nowMs;
  r.obj.varyFields = varyFields({ vary });
  r.obj.varySig = varySignature(r.obj.varyFields, reqHeaders);
  store.insert(r.obj);
  r.obj.setState('stream');
  r.obj.finish();
  return r.obj;
}

describe('MemoryStore', () => {
  it('a busy key makes later lookups wait; marking it uncacheable makes them hit-for-miss until the marker expires', () => {
    const store = new MemoryStore(1024 * 1024, createStats());
    const first = store.lookup('k', {}, 0);
    expect(first.kind).toBe('miss');
    expect(store.lookup('k', {}, 0).kind).toBe('busy');
    if (first.kind !== 'miss') throw new Error('unreachable');
    store.markUncacheable(first.obj, 120, 0);
    expect(store.lookup('k', {}, 1000).kind).toBe('hit-for-miss');
    expect(store.lookup('k', {}, 121_000).kind).toBe('miss');
  });

  it('expired hit-for-miss markers of keys never requested again are swept', () => {
    const store = new MemoryStore(1024 * 1024, createStats());
    for (let i = 0; i < 1000; i++) {
      const r = store.lookup(`u${i}`, {}, i);
      if (r.kind !== 'miss') throw new Error('expected miss');
      store.markUncacheable(r.obj, 1, i);
    }
    // Markers last 1 s; the first thousand milliseconds' worth expire as later ones are added.
    for (let i = 0; i < 1000; i++) {
      const r = store.lookup(`v${i}`, {}, 10_000 + i);
      if (r.kind !== 'miss') throw new Error('expected miss');
      store.markUncacheable(r.obj, 1, 10_000 + i);
    }
    expect(store.markerCount).toBeLessThanOrEqual(1000);
    expect(store.keyCount).toBeLessThanOrEqual(1000);
  });

  // Regression: insert() removed the superseded variant first; removing an entry's last variant deleted the entry,
  // so the new object went into an orphaned entry and every later lookup missed.
  it('an object replacing an expired variant of the same key stays findable', () => {
    const store = new MemoryStore(1024 * 1024, createStats());
    const first = store.lookup('k', {}, 0);
    if (first.kind !== 'miss') throw new Error('expected miss');
    first.obj.ttlSec = 10;
    first.obj.graceSec = 100;
    store.insert(first.obj);
    first.obj.setState('stream');
    first.obj.finish();
    const graced = store.lookup('k', {}, 20_000);
    if (graced.kind !== 'grace' || graced.fetch === undefined) throw new Error('expected grace with a fetch');
    graced.fetch.ttlSec = 10;
    graced.fetch.responseTimeMs = 20_000;
    store.insert(graced.fetch);
    const r = store.lookup('k', {}, 21_000);
    expect(r.kind).toBe('hit');
    expect(r.kind === 'hit' && r.obj).toBe(graced.fetch);
    expect(store.objectCount).toBe(1);
  });

  it('lookup finds only the variant whose Vary fields match the request', () => {
    const store = new MemoryStore(1024 * 1024, createStats());
    const en = storeVariant(store, 'k', 'Accept-Language', { 'accept-language': 'en' });
    const hit = store.lookup('k', { 'accept-language': 'en', 'user-agent': 'x' }, 1000);
    expect(hit.kind === 'hit' && hit.obj).toBe(en);
    const other = store.lookup('k', { 'accept-language': 'fr' }, 1000);
    expect(other.kind).toBe('miss');
    if (other.kind === 'miss') store.releaseBusy(other.obj);
    // A request without the field is a variant of its own too.
    expect(store.lookup('k', {}, 1000).kind).toBe('miss');
  });

  it('hasFresh (the side-effect-free check the slicer uses) answers for the request\'s variant only', () => {
    const store = new MemoryStore(1024 * 1024, createStats());
    storeVariant(store, 'k', 'Accept-Language', { 'accept-language': 'en' });
    expect(store.hasFresh('k', { 'accept-language': 'en' }, 1000)).toBe(true);
    expect(store.hasFresh('k', { 'accept-language': 'fr' }, 1000)).toBe(false);
    expect(store.hasFresh('k', {}, 1000)).toBe(false);
    // Fresh means within its ttl; and asking changed nothing: no busy object, no marker, the variant still hits.
    expect(store.hasFresh('k', { 'accept-language': 'en' }, 61_000)).toBe(false);
    expect(store.lookup('k', { 'accept-language': 'en' }, 2000).kind).toBe('hit');
    expect(store.lookup('k', { 'accept-language': 'fr' }, 2000).kind).toBe('miss');
  });
});
