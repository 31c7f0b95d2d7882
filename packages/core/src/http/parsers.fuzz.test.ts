import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ifRangeAllows, parseRange, planMultipart, resolveRanges, type RangeSpec } from './range.js';
import { deltaSeconds, parseCacheControl } from './cache-control.js';
import { freshnessLifetime } from './freshness.js';
import { charsFrom, checkProperty, fuzzTimeoutMs, latin1Char, token } from '../test-support/fuzz.js';

/**
 * Property-based fuzz of the Range (RFC 9110 §14) and Cache-Control (RFC 9111 §5.2) parsers and of freshness built
 * on them (issue 10). Header values are attacker-controlled strings: the parsers never throw, and what they return
 * keeps the contracts range.ts and cache-control.ts document.
 */

const anyString = fc.oneof(fc.string({ unit: latin1Char, maxLength: 120 }), fc.string({ maxLength: 60 }));

const rangeLike = fc.oneof(
  anyString,
  fc.string({ unit: charsFrom('bytes=0123456789-, \t'), maxLength: 60 }),
  fc
    .array(fc.tuple(fc.option(fc.nat({ max: 300 })), fc.option(fc.nat({ max: 300 }))), { minLength: 1, maxLength: 6 })
    .map((ps) => `bytes=${ps.map(([a, b]) => `${a ?? ''}-${b ?? ''}`).join(', ')}`),
  fc.constantFrom(`bytes=${'9'.repeat(400)}-`, `bytes=-${'9'.repeat(400)}`, `bytes=0-${'9'.repeat(30)}`),
);

/** The bytes `specs` select in a `length`-byte representation, one by one (the slow, obvious reading of §14.1.2). */
function selected(specs: readonly RangeSpec[], length: number): boolean[] {
  const out = new Array<boolean>(length).fill(false);
  for (const s of specs) {
    const [from, to] = 'suffix' in s ? [length - s.suffix, length - 1] : [s.first, s.last ?? length - 1];
    for (let i = Math.max(0, from); i <= Math.min(to, length - 1); i++) out[i] = true;
  }
  return out;
}

const spec: fc.Arbitrary<RangeSpec> = fc.oneof(
  fc.nat({ max: 80 }).map((suffix) => ({ suffix })),
  fc.tuple(fc.nat({ max: 80 }), fc.option(fc.nat({ max: 40 }))).map(([first, d]) => ({ first, last: d === null ? undefined : first + d })),
);

describe('Range fuzz (RFC 9110 §14)', () => {
  it('parseRange never throws; ranges it returns are non-negative with last-pos >= first-pos', async () => {
    await checkProperty(
      'range: parseRange shape',
      fc.property(rangeLike, (v) => {
        const r = parseRange(v);
        expect(['none', 'invalid', 'ranges']).toContain(r.kind);
        if (r.kind !== 'ranges') return;
        expect(r.specs.length).toBeGreaterThan(0);
        for (const s of r.specs) {
          if ('suffix' in s) expect(s.suffix >= 0).toBe(true);
          else {
            expect(s.first >= 0).toBe(true);
            if (s.last !== undefined) expect(s.last >= s.first).toBe(true);
          }
        }
      }),
      3000,
    );
  }, fuzzTimeoutMs(3000));

  it('resolveRanges: in bounds, sorted, disjoint and not adjacent, and selecting exactly the requested bytes', async () => {
    await checkProperty(
      'range: resolveRanges contract',
      fc.property(fc.array(spec, { maxLength: 8 }), fc.nat({ max: 100 }), (specs, length) => {
        const rs = resolveRanges(specs, length);
        for (const [i, r] of rs.entries()) {
          expect(Number.isInteger(r.start) && Number.isInteger(r.end)).toBe(true);
          expect(0 <= r.start && r.start <= r.end && r.end <= length - 1).toBe(true);
          const prev = rs[i - 1];
          if (prev !== undefined) expect(r.start).toBeGreaterThan(prev.end + 1);
        }
        const got = new Array<boolean>(length).fill(false);
        for (const r of rs) for (let i = r.start; i <= r.end; i++) got[i] = true;
        expect(got).toEqual(selected(specs, length));
      }),
      3000,
    );
  }, fuzzTimeoutMs(3000));

  it('parsed then resolved against any length (huge numbers included), ranges stay within the representation', async () => {
    await checkProperty(
      'range: parse+resolve in bounds',
      fc.property(rangeLike, fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat()), (v, length) => {
        const r = parseRange(v);
        if (r.kind !== 'ranges') return;
        for (const x of resolveRanges(r.specs, length)) {
          expect(Number.isSafeInteger(x.start) && Number.isSafeInteger(x.end)).toBe(true);
          expect(0 <= x.start && x.start <= x.end && x.end < length).toBe(true);
        }
      }),
      3000,
    );
  }, fuzzTimeoutMs(3000));

  it('planMultipart: the planned length is the sum of its parts; ifRangeAllows never throws', async () => {
    await checkProperty(
      'range: multipart length, If-Range total',
      fc.property(fc.array(spec, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 100 }), fc.option(anyString), anyString, anyString, (specs, length, ct, ifr, etag) => {
        const rs = resolveRanges(specs, length);
        const plan = planMultipart(rs, length, ct ?? undefined, 'b0undary');
        let sum = plan.tail.length;
        for (const p of plan.parts) sum += p.head.length + p.range.end - p.range.start + 1;
        expect(plan.length).toBe(sum);
        expect(typeof ifRangeAllows(ifr, { etag, 'last-modified': ifr, date: etag })).toBe('boolean');
      }),
      1000,
    );
  }, fuzzTimeoutMs(1000));
});

/** A directive argument: token or quoted-string, with quoted-pairs (RFC 9110 §5.6.4). */
const qdText = fc.string({ unit: fc.constantFrom(...'ab ,;=\t'.split(''), '\\"', '\\\\', 'é'), maxLength: 12 });
const directive = fc.tuple(token, fc.option(fc.oneof(token.map((t) => ({ raw: t, value: t })), qdText.map((q) => ({ raw: `"${q}"`, value: q.replace(/\\(.)/g, '$1') })))));

describe('Cache-Control fuzz (RFC 9111 §5.2)', () => {
  it('parseCacheControl never throws; names are lowercase, trimmed, non-empty and never hold "=" or ","', async () => {
    await checkProperty(
      'cache-control: parse shape',
      fc.property(fc.oneof(anyString, fc.string({ unit: charsFrom('max-age=",\\ \t;s'), maxLength: 80 })), (v) => {
        for (const [k, arg] of parseCacheControl(v)) {
          expect(k).not.toBe('');
          expect(k).toBe(k.toLowerCase());
          expect(k).toBe(k.trim());
          expect(k).not.toMatch(/[=,]/);
          expect(arg === true || typeof arg === 'string').toBe(true);
        }
      }),
      3000,
    );
  }, fuzzTimeoutMs(3000));

  it('a generated list of directives parses back: first occurrence wins, quoted-strings unquoted, commas inside quotes kept', async () => {
    await checkProperty(
      'cache-control: round-trip',
      fc.property(fc.array(directive, { maxLength: 6 }), fc.constantFrom(',', ', ', ' ,', ',\t', ' , '), (ds, sep) => {
        const header = ds.map(([n, a]) => (a === null ? n : `${n}=${a.raw}`)).join(sep);
        const want = new Map<string, string | true>();
        for (const [n, a] of ds) if (!want.has(n.toLowerCase())) want.set(n.toLowerCase(), a === null ? true : a.value);
        expect(parseCacheControl(header)).toEqual(want);
      }),
      2000,
    );
  }, fuzzTimeoutMs(2000));

  it('deltaSeconds: undefined unless all digits; then the number, saturated at 2^31', async () => {
    await checkProperty(
      'cache-control: delta-seconds',
      fc.property(fc.oneof(anyString, fc.string({ unit: charsFrom('0123456789 -+.e'), maxLength: 14 })), (v) => {
        const d = deltaSeconds(v);
        if (!/^\d+$/.test(v)) expect(d).toBeUndefined();
        else expect(d).toBe(Math.min(Number(v), 2147483648));
      }),
      2000,
    );
  }, fuzzTimeoutMs(2000));

  it('freshnessLifetime never throws and gives a finite, non-negative lifetime on any header values', async () => {
    const date = fc.oneof(anyString, fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()), fc.constant('0'));
    const cc = fc.oneof(anyString, fc.array(directive, { maxLength: 4 }).map((ds) => ds.map(([n, a]) => (a === null ? n : `${n}=${a.raw}`)).join(', ')), fc.constantFrom('max-age=-1', 's-maxage=1e3', 'max-age="60', 'max-age=99999999999999999999'));
    await checkProperty(
      'freshness: lifetime finite and non-negative',
      fc.property(fc.constantFrom(200, 203, 206, 302, 404, 500), cc, fc.option(date), fc.option(date), fc.option(date), (status, c, exp, dt, lm) => {
        const headers: Record<string, string> = { 'cache-control': c };
        if (exp !== null) headers['expires'] = exp;
        if (dt !== null) headers['date'] = dt;
        if (lm !== null) headers['last-modified'] = lm;
        const f = freshnessLifetime(status, headers, 1_800_000_000_000);
        expect(Number.isFinite(f.lifetimeSec) && f.lifetimeSec >= 0).toBe(true);
      }),
      2000,
    );
  }, fuzzTimeoutMs(2000));

  it('max-age in quoted-string form counts as the token form (RFC 9111 §5.2: recipients SHOULD accept both)', async () => {
    await checkProperty(
      'cache-control: quoted max-age',
      fc.property(fc.constantFrom('max-age', 's-maxage'), fc.nat({ max: 2 ** 32 }), (name, n) => {
        const quoted = freshnessLifetime(200, { 'cache-control': `${name}="${n}"` }, 0);
        const bare = freshnessLifetime(200, { 'cache-control': `${name}=${n}` }, 0);
        expect(quoted).toEqual(bare);
        expect(bare.lifetimeSec).toBe(Math.min(n, 2147483648));
      }),
      500,
    );
  }, fuzzTimeoutMs(500));
});
