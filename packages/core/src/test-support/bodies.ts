import { createHash } from 'node:crypto';

/**
 * Per-name pseudo-random bodies (xorshift seeded from the name), memoised: two objects never share bytes, so a client
 * that gets another object's bytes (a reused slab under a live write) is caught by comparing sha256 digests.
 */
const bodies = new Map<string, Buffer>();
export function bodyOf(name: string, n: number): Buffer {
  const key = `${name}:${n}`;
  let b = bodies.get(key);
  if (b !== undefined) return b;
  b = Buffer.allocUnsafe(n);
  let x = createHash('sha256').update(name).digest().readUInt32LE(0) | 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  bodies.set(key, b);
  return b;
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
