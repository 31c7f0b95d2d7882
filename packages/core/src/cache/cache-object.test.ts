import { describe, expect, it } from 'vitest';
import { CacheObject } from './cache-object.js';

const never = new AbortController().signal;

async function readAll(obj: CacheObject, r = obj.openReader()): Promise<string> {
  let out = '';
  for await (const c of obj.read(r, never)) out += c.toString();
  return out;
}

describe('CacheObject', () => {
  it('state only moves forward', () => {
    const o = new CacheObject('k');
    o.setState('stream');
    o.finish();
    expect(() => o.setState('stream')).toThrow(/backwards/);
  });

  // Regression: finish() used to join the chunk list into one Buffer while a reader was part-way through it; the
  // reader's chunk index then pointed past the new one-element list and it ended early, cleanly, short of the body.
  it('a reader part-way through a stored object when it finishes still reads every byte', async () => {
    const o = new CacheObject('k');
    o.stored = true;
    o.setState('stream');
    for (const s of ['aa', 'bb', 'cc']) o.extend(Buffer.from(s));
    const r = o.openReader();
    const it = o.read(r, never)[Symbol.asyncIterator]();
    expect(String((await it.next()).value)).toBe('aa');
    o.extend(Buffer.from('dd'));
    o.finish();
    let rest = '';
    for (let n = await it.next(); n.done !== true; n = await it.next()) rest += String(n.value);
    expect(rest).toBe('bbccdd');
    // Once no reader is open the body is one Buffer, for single-write hits.
    expect(o.body?.toString()).toBe('aabbccdd');
    expect(await readAll(o)).toBe('aabbccdd');
  });

  it('a reader of a failed object gets the error after the bytes that did arrive', async () => {
    const o = new CacheObject('k');
    o.setState('stream');
    o.extend(Buffer.from('part'));
    const got: string[] = [];
    const reading = (async () => {
      for await (const c of o.read(o.openReader(), never)) got.push(c.toString());
    })();
    await new Promise((r) => setImmediate(r));
    o.fail(new Error('origin died'));
    await expect(reading).rejects.toThrow('origin died');
    expect(got).toEqual(['part']);
  });

  it('an unstored object drops what its readers passed and holds its fetch to the transit limit', async () => {
    const o = new CacheObject('k');
    o.stored = false;
    o.setState('stream');
    const r = o.openReader();
    const chunk = Buffer.alloc(1000);
    for (let i = 0; i < 5; i++) o.extend(chunk);
    expect(o.heldBytes).toBe(5000);
    let spaced = false;
    const waiting = o.waitForSpace(2000, never).then(() => (spaced = true));
    await new Promise((res) => setImmediate(res));
    expect(spaced).toBe(false);
    const it = o.read(r, never)[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) await it.next();
    await waiting;
    expect(spaced).toBe(true);
    expect(o.heldBytes).toBeLessThanOrEqual(2000);
  });

  it('the last reader leaving an unstored, unfinished object aborts its fetch; a stored one keeps fetching', () => {
    const pass = new CacheObject('p');
    pass.stored = false;
    pass.setState('stream');
    pass.closeReader(pass.openReader());
    expect(pass.fetchController.signal.aborted).toBe(true);

    const stored = new CacheObject('s');
    stored.stored = true;
    stored.setState('stream');
    stored.closeReader(stored.openReader());
    expect(stored.fetchController.signal.aborted).toBe(false);
  });
});

/**
 * When an expired object may stand in for a failed fetch (RFC 5861 stale-if-error; `staleIfDisconnected`: the keep
 * window when the origin could not be reached). Boundaries found by the mutation run of 2026-12-01 (issue 17).
 */
describe('CacheObject.staleUsableOnError', () => {
  function expired(life: { ttlSec: number; staleIfErrorSec?: number; keepSec?: number; staleIfDisconnected?: boolean }, finished = true): CacheObject {
    const o = new CacheObject('k');
    o.responseTimeMs = 0;
    o.ttlSec = life.ttlSec;
    o.staleIfErrorSec = life.staleIfErrorSec ?? 0;
    o.keepSec = life.keepSec ?? 0;
    o.staleIfDisconnected = life.staleIfDisconnected ?? false;
    o.setState('stream');
    if (finished) o.finish();
    return o;
  }

  it('within ttl + stale-if-error, not at its end', () => {
    const o = expired({ ttlSec: 10, staleIfErrorSec: 100 });
    expect(o.staleUsableOnError(109_999)).toBe(true);
    expect(o.staleUsableOnError(110_000)).toBe(false);
  });

  it('no stale-if-error, no stale object on an error response', () => {
    expect(expired({ ttlSec: 10, keepSec: 100, staleIfDisconnected: true }).staleUsableOnError(20_000)).toBe(false);
  });

  it('an unreachable origin: within ttl + keep when staleIfDisconnected, not at its end, never without it', () => {
    const o = expired({ ttlSec: 10, keepSec: 100, staleIfDisconnected: true });
    expect(o.staleUsableOnError(109_999, true)).toBe(true);
    expect(o.staleUsableOnError(110_000, true)).toBe(false);
    expect(expired({ ttlSec: 10, keepSec: 100, staleIfDisconnected: false }).staleUsableOnError(20_000, true)).toBe(false);
  });

  it('an object whose body is incomplete never stands in', () => {
    expect(expired({ ttlSec: 10, staleIfErrorSec: 100 }, false).staleUsableOnError(20_000)).toBe(false);
    expect(expired({ ttlSec: 10, keepSec: 100, staleIfDisconnected: true }, false).staleUsableOnError(20_000, true)).toBe(false);
  });
});
