/**
 * A growable byte buffer the log's formatters write into (txlog/format-bytes.ts): strings as UTF-8 with an ASCII
 * fast path (a loop in JavaScript, no call into C++ per piece), numbers digit by digit, JSON string escaping on the
 * fly. A busy proxy's log is formatted straight into one large buffer and written with one write per flush, instead
 * of a string per record, joined, then encoded.
 *
 * Every writer gives exactly the bytes `Buffer.from(s)` (UTF-8, a lone surrogate as U+FFFD) or, for `json`,
 * `Buffer.from(JSON.stringify(s).slice(1, -1))` would give.
 */
export class ByteWriter {
  buf: Buffer;
  /** Bytes written so far (the next write's offset). */
  n = 0;

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  /** Room for `k` more bytes. */
  ensure(k: number): void {
    if (this.n + k > this.buf.length) this.grow(k);
  }

  private grow(k: number): void {
    let size = Math.max(this.buf.length * 2, 1024);
    while (size < this.n + k) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }

  /** Takes the buffer as it is (its first `n` bytes are the output) and starts over in `next` (or a new buffer). */
  take(next?: Buffer): Buffer {
    const full = this.buf;
    this.buf = next ?? Buffer.allocUnsafeSlow(full.length);
    this.n = 0;
    return full;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.n++] = b;
  }

  /** Bytes as they are (a preformatted piece). */
  bytes(src: Uint8Array): void {
    const len = src.length;
    this.ensure(len);
    // One call (a memcpy) beats a loop from a few bytes on.
    this.buf.set(src, this.n);
    this.n += len;
  }

  /** `s` as UTF-8. */
  str(s: string): void {
    const len = s.length;
    if (len < 48) return this.range(s, 0, len);
    // A long string: the call into the encoder costs less than a loop over its characters.
    this.ensure(len * 3);
    this.n += this.buf.write(s, this.n, 'utf8');
  }

  /** `s.slice(from, to)` as UTF-8. */
  range(s: string, from: number, to: number): void {
    this.ensure((to - from) * 3);
    const b = this.buf;
    let n = this.n;
    for (let i = from; i < to; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) b[n++] = c;
      else {
        // The rest through the UTF-8 encoder (a surrogate pair is never split: the slice starts at a lead unit or
        // at a character of its own).
        n += b.write(s.slice(i, to), n, 'utf8');
        break;
      }
    }
    this.n = n;
  }

  /** `s` as the inside of a JSON string (what JSON.stringify puts between the quotes), UTF-8. */
  json(s: string): void {
    const len = s.length;
    // At most 6 bytes per code unit (\u00XX, \udXXX).
    this.ensure(len * 6);
    const b = this.buf;
    let n = this.n;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c < 0x80 && c !== 0x22 && c !== 0x5c) b[n++] = c;
      else if (c < 0x80) n = escapeAscii(b, n, c);
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < len && isLowSurrogate(s.charCodeAt(i + 1))) n = utf8Pair(b, n, c, s.charCodeAt(++i));
      else n = utf8Unit(b, n, c);
    }
    this.n = n;
  }

  /** A number as `${x}` gives it: digits for a safe non-negative integer, String(x) otherwise. */
  num(x: number): void {
    if (x >= 0 && x <= 0x7fffffff && (x | 0) === x) this.int(x);
    else if (x >= 0 && x <= Number.MAX_SAFE_INTEGER && Math.floor(x) === x) this.uint(x);
    else this.str(String(x));
  }

  /** A string or a number as a template literal gives it. */
  val(x: string | number): void {
    if (typeof x === 'string') this.str(x);
    else this.num(x);
  }

  /** Digits of an integer from 0 to 2^31 - 1 (int32 arithmetic: a division by 10 is a multiplication). */
  int(x: number): void {
    x |= 0;
    const digits = x < 10 ? 1 : x < 100 ? 2 : x < 1000 ? 3 : x < 10000 ? 4 : x < 100000 ? 5 : x < 1000000 ? 6 : x < 10000000 ? 7 : x < 100000000 ? 8 : x < 1000000000 ? 9 : 10;
    this.ensure(digits);
    const b = this.buf;
    let n = this.n + digits;
    this.n = n;
    do {
      const q = (x / 10) | 0;
      b[--n] = 0x30 + x - q * 10;
      x = q;
    } while (x !== 0);
  }

  /** Digits of a safe non-negative integer. */
  uint(x: number): void {
    if (x <= 0x7fffffff) return this.int(x);
    // The part above 10^9, then nine digits.
    const hi = Math.floor(x / 1e9);
    this.uint(hi);
    this.pad9(x - hi * 1e9);
  }

  /** Nine digits, zeros in front. */
  private pad9(x: number): void {
    x |= 0;
    this.ensure(9);
    const b = this.buf;
    const end = this.n + 9;
    for (let n = end; n > this.n; ) {
      const q = (x / 10) | 0;
      b[--n] = 0x30 + x - q * 10;
      x = q;
    }
    this.n = end;
  }

  /** Whole seconds last written by sec6 above 9, and their digits and point. */
  private lastSec = -1;
  private readonly lastSecBytes = new Uint8Array(20);
  private lastSecLen = 0;

  /** Milliseconds as seconds with 6 decimals: exactly txlog/raw.ts's seconds6. */
  sec6(ms: number): void {
    const us = Math.round(ms * 1000);
    const neg = us < 0;
    const a = neg ? -us : us;
    if (!(a <= Number.MAX_SAFE_INTEGER)) {
      // NaN, infinities and beyond 2^53: as seconds6 writes them.
      this.str(seconds6Slow(ms));
      return;
    }
    const sec = Math.floor(a / 1e6);
    let frac = (a - sec * 1e6) | 0;
    this.ensure(30);
    const b = this.buf;
    let n = this.n;
    if (neg) b[n++] = 0x2d;
    if (sec < 10) {
      b[n++] = 0x30 + sec;
      b[n++] = 0x2e;
    } else {
      // An absolute time: the same second as the last one, most of the time.
      if (sec !== this.lastSec) {
        this.n = n;
        this.uint(sec);
        this.byte(0x2e);
        this.lastSecLen = this.n - n;
        this.lastSecBytes.set(this.buf.subarray(n, this.n));
        this.lastSec = sec;
        n = this.n;
      } else {
        const src = this.lastSecBytes;
        for (let i = 0; i < this.lastSecLen; i++) b[n++] = src[i] as number;
      }
    }
    // (No growth since `b` was taken: the 30 bytes were ensured first.)
    for (let i = n + 5; i >= n; i--) {
      const q = (frac / 10) | 0;
      b[i] = 0x30 + frac - q * 10;
      frac = q;
    }
    this.n = n + 6;
  }

  /** `x.toFixed(6)`: digits by hand for an integer, toFixed otherwise. */
  fixed6(x: number): void {
    if (Math.floor(x) === x && x > -1e15 && x < 1e15) {
      if (x < 0) {
        this.byte(0x2d);
        this.uint(-x);
      } else this.uint(x === 0 ? 0 : x);
      this.ensure(7);
      const b = this.buf;
      let n = this.n;
      b[n++] = 0x2e;
      for (let i = 0; i < 6; i++) b[n++] = 0x30;
      this.n = n;
    } else if (x > -1e6 && x < 1e6) {
      // x * 1e6 is below 2^40, so within 2^-14 of the exact product: unless its fraction is that close to a half, the
      // nearest integer to it is the nearest to the exact product, which is what toFixed gives (ties never reach here).
      const neg = x < 0;
      const y = (neg ? -x : x) * 1e6;
      const f = Math.floor(y);
      const d = y - f;
      if (d > 0.499 && d < 0.501) return this.str(x.toFixed(6));
      const us = d < 0.5 ? f : f + 1;
      const sec = Math.floor(us / 1e6);
      let frac = us - sec * 1e6;
      if (neg) this.byte(0x2d);
      this.int(sec);
      this.ensure(7);
      const b = this.buf;
      const n = this.n;
      b[n] = 0x2e;
      for (let i = n + 6; i > n; i--) {
        const q = Math.floor(frac / 10);
        b[i] = 0x30 + frac - q * 10;
        frac = q;
      }
      this.n = n + 7;
    } else this.str(x.toFixed(6));
  }
}

const HEX = '0123456789abcdef';

const isLowSurrogate = (d: number): boolean => d >= 0xdc00 && d <= 0xdfff;

/** A quote, a backslash or a control character as JSON.stringify escapes it. */
function escapeAscii(b: Buffer, n: number, c: number): number {
  b[n++] = 0x5c;
  switch (c) {
    case 0x22:
    case 0x5c:
      b[n++] = c;
      return n;
    case 0x08:
      b[n++] = 0x62;
      return n;
    case 0x0c:
      b[n++] = 0x66;
      return n;
    case 0x0a:
      b[n++] = 0x6e;
      return n;
    case 0x0d:
      b[n++] = 0x72;
      return n;
    case 0x09:
      b[n++] = 0x74;
      return n;
    default:
      return unicodeEscape(b, n, c);
  }
}

/** A code unit from 0x80 as UTF-8; a lone surrogate escaped, as JSON.stringify does (ES2019). */
function utf8Unit(b: Buffer, n: number, c: number): number {
  if (c < 0x800) {
    b[n++] = 0xc0 | (c >> 6);
    b[n++] = 0x80 | (c & 0x3f);
  } else if (c < 0xd800 || c > 0xdfff) {
    b[n++] = 0xe0 | (c >> 12);
    b[n++] = 0x80 | ((c >> 6) & 0x3f);
    b[n++] = 0x80 | (c & 0x3f);
  } else {
    b[n++] = 0x5c;
    n = unicodeEscape(b, n, c);
  }
  return n;
}

/** A surrogate pair as one 4-byte UTF-8 character. */
function utf8Pair(b: Buffer, n: number, hi: number, lo: number): number {
  const cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
  b[n++] = 0xf0 | (cp >> 18);
  b[n++] = 0x80 | ((cp >> 12) & 0x3f);
  b[n++] = 0x80 | ((cp >> 6) & 0x3f);
  b[n++] = 0x80 | (cp & 0x3f);
  return n;
}

/** `uXXXX` (lowercase hex, as JSON.stringify), after the backslash the caller wrote. */
function unicodeEscape(b: Buffer, n: number, c: number): number {
  b[n++] = 0x75;
  b[n++] = HEX.charCodeAt((c >> 12) & 15);
  b[n++] = HEX.charCodeAt((c >> 8) & 15);
  b[n++] = HEX.charCodeAt((c >> 4) & 15);
  b[n++] = HEX.charCodeAt(c & 15);
  return n;
}

/** seconds6 for what the digit writer does not take (kept apart so bytes.ts needs nothing from raw.ts). */
function seconds6Slow(ms: number): string {
  const us = Math.round(ms * 1000);
  const neg = us < 0;
  const a = neg ? -us : us;
  const sec = Math.floor(a / 1e6);
  const frac = a - sec * 1e6;
  return `${neg ? '-' : ''}${sec}.${frac < 100_000 ? String(frac).padStart(6, '0') : frac}`;
}
