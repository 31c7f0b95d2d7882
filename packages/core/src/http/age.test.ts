import { describe, expect, it } from 'vitest';
import { ageOf, currentAgeSec, ttlLeftSec } from './age.js';

/** RFC 9111 §4.2.3 current_age, and the freshness left from it (the log's TTL, stale-if-error windows). */
describe('current age and freshness left (RFC 9111 §4.2.3)', () => {
  const obj = { initialAgeSec: 10, responseTimeMs: 1_000_000, ttlSec: 60 };

  it('current_age = corrected_initial_age + resident_time', () => {
    expect(currentAgeSec(10, 1_000_000, 1_005_000)).toBe(15);
    expect(ageOf(obj, 1_005_000)).toBe(15);
  });

  it('a clock behind the response time adds no resident time', () => {
    expect(currentAgeSec(10, 1_000_000, 990_000)).toBe(10);
  });

  // Mutation run of 2026-12-01 (issue 17): `ttlSec + age` survived; freshness left shrinks as the object ages.
  it('freshness left is the lifetime minus the current age, negative once stale', () => {
    expect(ttlLeftSec(obj, 1_005_000)).toBe(45);
    expect(ttlLeftSec(obj, 1_060_000)).toBe(-10);
  });
});
