import type { HeaderMap } from '../http/headers.js';
import type { Ban } from './ban.js';
import type { CacheObject } from './cache-object.js';

/**
 * What the request machine needs of a cache store (after pingora's `Storage`): find what serves a request, keep or
 * drop objects, account their bytes, invalidate. MemoryStore implements it; the next store (disk, or shared between
 * workers) plugs in here.
 */
export type LookupResult =
  | { kind: 'hit'; obj: CacheObject }
  /** Headers of the key's fetch not known yet: wait for it, then look up again. */
  | { kind: 'busy'; obj: CacheObject }
  /**
   * Expired but within grace: serve `obj` (stale) now. `fetch`, when set, is the key's new busy object: the caller
   * must refresh it in the background. Undefined when a fetch for the key is already running.
   */
  | { kind: 'grace'; obj: CacheObject; fetch: CacheObject | undefined }
  /**
   * The caller owns `obj` (registered as the key's busy object) and must fetch it. `stale`: an expired variant kept
   * for revalidation (its validators make the fetch conditional) or for stale-if-error.
   */
  | { kind: 'miss'; obj: CacheObject; reason: 'uri-miss' | 'vary-miss' | 'expired'; stale: CacheObject | undefined }
  /** The key is marked uncacheable: fetch without coalescing; `obj` is not registered. */
  | { kind: 'hit-for-miss'; obj: CacheObject }
  | { kind: 'hit-for-pass' };

/** The kinds of lookup outcome, a closed union the machine branches on. */
export type LookupKind = LookupResult['kind'];

export interface Store {
  readonly maxBytes: number;
  /** Bytes charged now. */
  readonly bytes: number;
  readonly objectCount: number;
  readonly activeBans: readonly Ban[];

  /** Finds what serves a request for `key`; a miss registers a busy object the caller must fetch. */
  lookup(key: string, reqHeaders: HeaderMap, nowMs: number): LookupResult;
  /** Whether a fresh variant is stored, without lookup's side effects (no busy object, no LRU touch). */
  hasFresh(key: string, reqHeaders: HeaderMap, nowMs: number): boolean;
  /** Keeps `obj` (headers decided); false (`obj` unstored, response-too-large) when it can never fit. */
  insert(obj: CacheObject): boolean;
  /** Marks the key hit-for-miss (or hit-for-pass) for `ttlSec`; `obj` is not kept. */
  markUncacheable(obj: CacheObject, ttlSec: number, nowMs: number, kind?: 'miss' | 'pass'): void;
  /** Frees the key's busy slot held by `obj` without storing anything. */
  releaseBusy(obj: CacheObject): void;
  /** Charges `bytes` more of a stored object's body; false when it had to be unstored. */
  charge(obj: CacheObject, bytes: number): boolean;
  remove(obj: CacheObject): void;
  purgeKey(key: string): number;
  purgePrefix(prefix: string): number;
  purgeTags(tags: readonly string[]): number;
  addBan(expr: string, nowMs: number): Ban;
  /** Tests up to `budget` objects against the bans (the ban lurker); returns how many were removed. */
  lurk(budget: number): number;
}
