import { describe, expect, it } from 'vitest';
import { FallbackDirector, HashDirector, RandomDirector, RoundRobinDirector, ShardDirector, type Candidate } from './directors.js';

const cands = (names: string[], sick: string[] = [], weights: Record<string, number> = {}): Candidate[] =>
  names.map((name) => ({ name, weight: weights[name] ?? 1, healthy: !sick.includes(name) }));

describe('directors', () => {
  it('round-robin rotates over the healthy backends', () => {
    const d = new RoundRobinDirector();
    const picks = Array.from({ length: 6 }, () => d.choose(cands(['a', 'b', 'c'], ['b']))[0]?.name);
    expect(picks).toEqual(['a', 'c', 'a', 'c', 'a', 'c']);
  });

  it('random follows the weights and never picks a sick backend', () => {
    let seed = 1;
    const rnd = (): number => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const d = new RandomDirector(rnd);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 10_000; i++) {
      const n = d.choose(cands(['a', 'b', 'c'], ['c'], { a: 3, b: 1 }))[0]?.name ?? '-';
      counts[n] = (counts[n] ?? 0) + 1;
    }
    expect(counts['c']).toBeUndefined();
    expect((counts['a'] ?? 0) / 10_000).toBeGreaterThan(0.7);
    expect((counts['a'] ?? 0) / 10_000).toBeLessThan(0.8);
  });

  it('hash is stable for a key', () => {
    const d = new HashDirector();
    const c = cands(['a', 'b', 'c']);
    expect(d.choose(c, '/x')[0]?.name).toBe(d.choose(c, '/x')[0]?.name);
  });

  it('fallback picks the first healthy backend in order', () => {
    const d = new FallbackDirector();
    expect(d.choose(cands(['a', 'b', 'c'], ['a']))[0]?.name).toBe('b');
    expect(d.choose(cands(['a', 'b'], ['a', 'b']))).toEqual([]);
  });

  describe('shard (consistent hashing)', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `/object/${i}`);
    const owners = (d: ShardDirector, names: string[], sick: string[] = []): Map<string, string> =>
      new Map(keys.map((k) => [k, d.choose(cands(names, sick), k)[0]?.name ?? '-']));

    it('spreads keys over the backends', () => {
      const d = new ShardDirector(67);
      const owner = owners(d, ['n1', 'n2', 'n3', 'n4']);
      for (const n of ['n1', 'n2', 'n3', 'n4']) {
        const share = [...owner.values()].filter((o) => o === n).length / keys.length;
        expect(share).toBeGreaterThan(0.15);
        expect(share).toBeLessThan(0.35);
      }
    });

    it('adding a backend moves only the keys it takes over (about 1/n)', () => {
      const d = new ShardDirector(67);
      const before = owners(d, ['n1', 'n2', 'n3', 'n4']);
      const after = owners(d, ['n1', 'n2', 'n3', 'n4', 'n5']);
      const moved = keys.filter((k) => before.get(k) !== after.get(k));
      expect(moved.every((k) => after.get(k) === 'n5')).toBe(true);
      expect(moved.length / keys.length).toBeGreaterThan(0.1);
      expect(moved.length / keys.length).toBeLessThan(0.3);
    });

    it("a sick backend's keys go to the next on the ring; the others' keys stay put", () => {
      const d = new ShardDirector(67);
      const before = owners(d, ['n1', 'n2', 'n3', 'n4']);
      const after = owners(d, ['n1', 'n2', 'n3', 'n4'], ['n2']);
      for (const k of keys) {
        if (before.get(k) !== 'n2') expect(after.get(k)).toBe(before.get(k));
        else expect(after.get(k)).not.toBe('n2');
      }
    });
  });
});
