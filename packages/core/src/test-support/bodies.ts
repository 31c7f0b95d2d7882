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

/**
 * What went wrong when `got` is not `want` ('' when they are equal), for an assertion's message: the lengths, the
 * first differing offset, and whose bytes are there (another memoised body and its offset, found by a 32-byte
 * search), so a failure tells a cut body (a prefix, every byte right) from another object's bytes (a reused slab).
 */
export function bodyMismatch(got: Buffer, want: Buffer): string {
  if (got.equals(want)) return '';
  const n = Math.min(got.length, want.length);
  let at = 0;
  // Compare in 64 KiB steps, then byte by byte in the first step that differs.
  const step = 64 * 1024;
  while (at < n && got.subarray(at, Math.min(n, at + step)).equals(want.subarray(at, Math.min(n, at + step)))) at += step;
  at = Math.min(at, n);
  while (at < n && got[at] === want[at]) at++;
  let out = `got ${got.length} bytes, want ${want.length}; first difference at ${at}`;
  if (at === n) return `${out} (${got.length < want.length ? 'a cut body: every byte received is right' : 'extra bytes past the end'})`;
  const probe = got.subarray(at & ~3, Math.min(got.length, (at & ~3) + 32));
  const owners: string[] = [];
  for (const [key, b] of bodies) {
    const i = b.indexOf(probe);
    if (i >= 0) owners.push(`${key}@${i}`);
  }
  out += `; the bytes there are ${owners.length > 0 ? `from ${owners.join(', ')}` : 'of no known body'}`;
  return out;
}
