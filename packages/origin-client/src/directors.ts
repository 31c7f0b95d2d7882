import { createHash } from 'node:crypto';

/**
 * Directors choose a backend for a request, as Varnish's vmod_directors do. Pure: they see candidates (name,
 * weight, healthy) and a key, and return an ordered list of choices (first = preferred, the rest = where failover
 * goes). Sick backends are never chosen.
 *
 * - round-robin: rotates over the healthy ones.
 * - random: weighted random among the healthy ones.
 * - hash: a stable choice by key among the healthy ones (changes when the healthy set changes).
 * - shard: consistent hashing on a ring with `replicas` points per backend: a key goes to the first healthy backend
 *   clockwise from its hash, so adding or removing a backend moves only the keys it owns (about 1/n of them).
 * - fallback: the first healthy backend in configuration order.
 */
export type DirectorType = 'round-robin' | 'random' | 'hash' | 'shard' | 'fallback';

export interface Candidate {
  name: string;
  weight: number;
  healthy: boolean;
}

export interface Director {
  readonly type: DirectorType;
  /** Candidates in order of preference for this key; empty when none is healthy. */
  choose(candidates: readonly Candidate[], key: string): Candidate[];
}

/** 32-bit hash of a string (first 4 bytes of SHA-1, as a number). Stable across processes and versions. */
export function hash32(s: string): number {
  return createHash('sha1').update(s).digest().readUInt32BE(0);
}

function rotate<T>(xs: readonly T[], start: number): T[] {
  if (xs.length === 0) return [];
  const i = ((start % xs.length) + xs.length) % xs.length;
  return [...xs.slice(i), ...xs.slice(0, i)];
}

export class RoundRobinDirector implements Director {
  readonly type = 'round-robin' as const;
  private next = 0;
  choose(candidates: readonly Candidate[]): Candidate[] {
    const healthy = candidates.filter((c) => c.healthy);
    return rotate(healthy, this.next++);
  }
}

export class RandomDirector implements Director {
  readonly type = 'random' as const;
  constructor(private readonly random: () => number = Math.random) {}
  choose(candidates: readonly Candidate[]): Candidate[] {
    const pool = candidates.filter((c) => c.healthy && c.weight > 0);
    const out: Candidate[] = [];
    while (pool.length > 0) {
      const total = pool.reduce((s, c) => s + c.weight, 0);
      let r = this.random() * total;
      let idx = pool.length - 1;
      for (let i = 0; i < pool.length; i++) {
        r -= (pool[i] as Candidate).weight;
        if (r < 0) {
          idx = i;
          break;
        }
      }
      out.push(pool.splice(idx, 1)[0] as Candidate);
    }
    return out;
  }
}

export class HashDirector implements Director {
  readonly type = 'hash' as const;
  choose(candidates: readonly Candidate[], key: string): Candidate[] {
    const healthy = candidates.filter((c) => c.healthy);
    return rotate(healthy, hash32(key));
  }
}

export class FallbackDirector implements Director {
  readonly type = 'fallback' as const;
  choose(candidates: readonly Candidate[]): Candidate[] {
    return candidates.filter((c) => c.healthy);
  }
}

/** Consistent hashing ring. Rebuilt when the set of backend names changes (not when health changes). */
export class ShardDirector implements Director {
  readonly type = 'shard' as const;
  private ring: Array<{ point: number; name: string }> = [];
  private ringFor = '';
  constructor(private readonly replicas = 67) {}

  private build(names: readonly string[]): void {
    const id = names.join('\u0000');
    if (id === this.ringFor) return;
    const ring: Array<{ point: number; name: string }> = [];
    for (const name of names) for (let i = 0; i < this.replicas; i++) ring.push({ point: hash32(`${name}#${i}`), name });
    ring.sort((a, b) => a.point - b.point || (a.name < b.name ? -1 : 1));
    this.ring = ring;
    this.ringFor = id;
  }

  /** The backend names in ring order from `key` (each once): the owner first, then where its keys fail over. */
  order(names: readonly string[], key: string): string[] {
    this.build(names);
    const h = hash32(key);
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.ring[mid] as { point: number }).point < h) lo = mid + 1;
      else hi = mid;
    }
    const out: string[] = [];
    for (let k = 0; k < this.ring.length && out.length < names.length; k++) {
      const name = (this.ring[(lo + k) % this.ring.length] as { name: string }).name;
      if (!out.includes(name)) out.push(name);
    }
    return out;
  }

  choose(candidates: readonly Candidate[], key: string): Candidate[] {
    const byName = new Map(candidates.map((c) => [c.name, c]));
    return this.order(candidates.map((c) => c.name), key)
      .map((n) => byName.get(n) as Candidate)
      .filter((c) => c.healthy);
  }
}

export function createDirector(type: DirectorType, opts: { replicas?: number } = {}): Director {
  switch (type) {
    case 'round-robin':
      return new RoundRobinDirector();
    case 'random':
      return new RandomDirector();
    case 'hash':
      return new HashDirector();
    case 'shard':
      return new ShardDirector(opts.replicas);
    case 'fallback':
      return new FallbackDirector();
  }
}
