import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ChunkedDecoder, ChunkedFramingError, LengthDecoder, type BodyDecoder } from './body-reader.js';
import { charsFrom, checkProperty, fuzzTimeoutMs, splitAt, token } from '../test-support/fuzz.js';

/**
 * Property-based fuzz of the request-body decoders (issue 10). They see attacker bytes split at whatever points TCP
 * chose; a framing error must surface as ChunkedFramingError (the connection answers 400) and nothing else.
 */

interface FeedResult {
  body: Buffer;
  /** Bytes `feed` handed back as beyond the body, across all pieces. */
  rest: Buffer;
  error: unknown;
  done: boolean;
}

/** Feeds `pieces` in order, as the server does: stop at an error, and once done hand each later piece back whole. */
function feedAll(d: BodyDecoder, pieces: readonly Buffer[]): FeedResult {
  const rest: Buffer[] = [];
  let error: unknown;
  for (const p of pieces) {
    try {
      const r = d.feed(p);
      if (r !== undefined) {
        // What comes back is always a tail of what went in.
        expect(r.length).toBeLessThanOrEqual(p.length);
        expect(r.equals(p.subarray(p.length - r.length))).toBe(true);
        rest.push(r);
      }
    } catch (e: unknown) {
      error = e;
      break;
    }
  }
  const out: Buffer[] = [];
  for (let c: unknown = d.stream.read(); c !== null; c = d.stream.read()) out.push(c as Buffer);
  return { body: Buffer.concat(out), rest: Buffer.concat(rest), error, done: d.done };
}

const noop = (): void => undefined;
const cuts = fc.array(fc.nat(), { maxLength: 8 });

/** A chunk-ext (RFC 9112 §7.1.1): BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]. */
const qdChar = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }).filter((c) => c !== 0x22 && c !== 0x5c).map((c) => String.fromCharCode(c)),
  fc.constantFrom('\t', '\xe9', '\\"', '\\\\', '\\;'),
);
const bws = fc.constantFrom('', '', ' ', '\t', ' \t');
const chunkExt = fc
  .tuple(bws, bws, token, fc.option(fc.tuple(bws, bws, fc.oneof(token, fc.string({ unit: qdChar, maxLength: 10 }).map((s) => `"${s}"`)))))
  .map(([w1, w2, name, val]) => `${w1};${w2}${name}${val === null ? '' : `${val[0]}=${val[1]}${val[2]}`}`);
const exts = fc.array(chunkExt, { maxLength: 3 }).map((xs) => xs.join(''));

interface Encoded {
  wire: Buffer;
  data: Buffer;
  extra: Buffer;
}

/** A valid chunked body of random data, chunk sizes (hex in either case, leading zeros), extensions and trailers. */
const validChunked: fc.Arbitrary<Encoded> = fc
  .record({
    chunks: fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat({ max: 3 }), fc.boolean(), exts), { maxLength: 6 }),
    lastZeros: fc.integer({ min: 1, max: 3 }),
    lastExt: exts,
    trailers: fc.array(fc.tuple(token, fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 10 })), { maxLength: 2 }),
    extra: fc.uint8Array({ maxLength: 40 }),
  })
  .map(({ chunks, lastZeros, lastExt, trailers, extra }) => {
    const parts: Buffer[] = [];
    for (const [bytes, zeros, upper, ext] of chunks) {
      const hex = bytes.length.toString(16);
      parts.push(Buffer.from(`${'0'.repeat(zeros)}${upper ? hex.toUpperCase() : hex}${ext}\r\n`, 'latin1'), Buffer.from(bytes), Buffer.from('\r\n'));
    }
    let tail = `${'0'.repeat(lastZeros)}${lastExt}\r\n`;
    for (const [n, v] of trailers) tail += `${n}: ${v}\r\n`;
    parts.push(Buffer.from(`${tail}\r\n`, 'latin1'));
    return { wire: Buffer.concat([...parts, Buffer.from(extra)]), data: Buffer.concat(chunks.map(([b]) => Buffer.from(b))), extra: Buffer.from(extra) };
  });

/** Arbitrary bytes, biased towards chunked syntax so the decoder gets past its first line. */
const chunkyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
  fc.string({ unit: charsFrom('0123456789abcdefABCDEF;= \t"\\\r\n\r\n\0\x01xz-'), maxLength: 200 }).map((s) => Buffer.from(s, 'latin1')),
  fc.tuple(validChunked, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([e, at, b]) => {
    const w = Buffer.from(e.wire);
    if (w.length > 0) w[at % w.length] = b;
    return w;
  }),
);

describe('ChunkedDecoder / LengthDecoder fuzz (RFC 9112 §6.2, §7.1)', () => {
  it('on any bytes split anywhere, feed returns or throws ChunkedFramingError, nothing else', async () => {
    await checkProperty(
      'chunked: only ChunkedFramingError',
      fc.property(chunkyBytes, cuts, (bytes, cs) => {
        const d = new ChunkedDecoder(noop);
        const r = feedAll(d, splitAt(bytes, cs));
        if (r.error !== undefined && !(r.error instanceof ChunkedFramingError)) throw r.error;
        // Never more payload than bytes on the wire.
        expect(r.body.length).toBeLessThanOrEqual(bytes.length);
        expect(d.bytes).toBe(r.body.length);
      }),
      3000,
    );
  }, fuzzTimeoutMs(3000));

  it('a valid chunked body split at random points decodes to exactly the data and hands back the bytes beyond', async () => {
    await checkProperty(
      'chunked: valid round-trip',
      fc.property(validChunked, cuts, (e, cs) => {
        const r = feedAll(new ChunkedDecoder(noop), splitAt(e.wire, cs));
        if (r.error !== undefined) throw r.error;
        expect(r.done).toBe(true);
        expect(r.body.equals(e.data)).toBe(true);
        expect(r.rest.equals(e.extra)).toBe(true);
      }),
      2000,
    );
  }, fuzzTimeoutMs(2000));

  // Each case is a chunk line (or what follows chunk data) that RFC 9112 §7.1 does not allow:
  // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG; no CTLs in chunk-ext.
  const invalid: Array<[string, string]> = [
    ['non-hex size', 'zz\r\n'],
    ['20 hex digits', `${'f'.repeat(20)}\r\n`],
    ['negative size', '-5\r\n'],
    ['0x prefix', '0x10\r\n'],
    ['trailing space after the size', '5 \r\n'],
    ['space before the size', ' 5\r\n'],
    ['empty size', '\r\n'],
    ['empty extension', '5;\r\n'],
    ['extension name not a token', '5;a b\r\n'],
    ['extension value unterminated quote', '5;a="b\r\n'],
    ['CR inside a chunk extension', '5;a\rb\r\n'],
    ['NUL in a chunk extension', '5;a=\0\r\n'],
    ['control character in a chunk extension', '5;a=b\x01\r\n'],
    ['DEL in a quoted extension value', '5;a="\x7f"\r\n'],
    ['missing CRLF after data', '5\r\nhelloX\r\n0\r\n\r\n'],
    ['next size line where the CRLF after data belongs', '5\r\nhello0\r\n\r\n'],
    ['chunk line over 4 KiB', `5;a=${'b'.repeat(4100)}\r\n`],
  ];
  const validPrefix = fc.array(fc.uint8Array({ minLength: 1, maxLength: 50 }), { maxLength: 3 }).map((cs) =>
    Buffer.concat(cs.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), Buffer.from(c), Buffer.from('\r\n')]))),
  );
  it.each(invalid)('refuses %s, wherever the bytes are split and after any valid chunks', async (name, bad) => {
    await checkProperty(
      `chunked: refuses ${name}`,
      fc.property(validPrefix, cuts, (prefix, cs) => {
        // Enough bytes after the bad line that a decoder which let it through would go on (and maybe finish).
        const wire = Buffer.concat([prefix, Buffer.from(bad, 'latin1'), Buffer.from('hello\r\n0\r\n\r\n')]);
        const r = feedAll(new ChunkedDecoder(noop), splitAt(wire, cs));
        expect(r.error, JSON.stringify(bad)).toBeInstanceOf(ChunkedFramingError);
      }),
      100,
    );
  }, fuzzTimeoutMs(100));

  it('LengthDecoder: every split of arbitrary bytes gives exactly the first N bytes and hands back the rest', async () => {
    await checkProperty(
      'length: exact split',
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 1, max: 500 }), cuts, (u, n, cs) => {
        const bytes = Buffer.from(u);
        const r = feedAll(new LengthDecoder(n, noop), splitAt(bytes, cs));
        if (r.error !== undefined) throw r.error;
        expect(r.body.equals(bytes.subarray(0, n))).toBe(true);
        expect(r.rest.equals(bytes.subarray(n))).toBe(true);
        expect(r.done).toBe(bytes.length >= n);
      }),
      2000,
    );
  }, fuzzTimeoutMs(2000));
});
