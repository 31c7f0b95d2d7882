import type { ByteWriter } from './bytes.js';
import type { RawRecords } from './raw.js';

/**
 * A transaction's formatted records as a template with slots (issue 16, a log that costs almost nothing). A hit on a
 * keep-alive connection logs the same records as the connection's last hit: the same tags, the same runs (request,
 * VCL calls, status line, the object's header block), the same strings; only numbers differ (timestamps, vxids, byte
 * counts, the Hit's ttl). Its bytes are then the last one's bytes with those numbers written in. txlog/format-bytes.ts
 * compiles a template by running its formatter once in a mode that writes every piece but the numbers and notes where
 * each number goes and how it is written; later transactions whose raw records have the same shape (every entry that
 * is not a written number identical, `===`; a number wherever one was written) are rendered by copying the pieces
 * and writing the numbers by the same digit writers. The output is the formatter's own, byte for byte, by
 * construction: the formatter's output depends on nothing else (format-bytes.fuzz.test.ts compares the two).
 *
 * Lifecycle: a connection's Session transaction holds a TemplateHome; a request group's transaction formatted at the
 * root looks for a matching template there. A miss formats the usual way; a miss whose raw records have the shape of
 * the connection's previous miss (so a template would have served the next one) compiles one, replacing the oldest
 * of at most TEMPLATES_MAX. Templates hold copies of what they match against and never change once made.
 */

/** How a slot is written: `raw[i]` through w.num. */
export const SLOT_NUM = 0;
/** `raw[i]` as seconds with 6 decimals (w.sec6: a Timestamp's absolute time). */
export const SLOT_SEC6 = 1;
/** `raw[i] - raw[j]` as seconds (a Timestamp's since-start and since-last; j < 0: minus 0). */
export const SLOT_SEC6_DIFF = 2;
/** `raw[i]` through w.fixed6 (Hit's ttl, grace, keep). */
export const SLOT_FIXED6 = 3;
/** `raw[i] + raw[j]` through w.num (ReqAcct's sums). */
export const SLOT_SUM = 4;

/** Templates compiled and transactions rendered from one, since the process started (tests read them). */
export const templateCounts = { compiled: 0, rendered: 0 };

/** Templates kept per connection (a client alternating between a few URLs keeps one each). */
const TEMPLATES_MAX = 4;
/** A piece shorter than this is copied byte by byte (a call to set() costs more than the loop). */
const SHORT_PIECE = 24;

/** Writes one slot: the same writer call the formatter makes for that number. */
export function writeSlot(w: ByteWriter, kind: number, raw: Readonly<RawRecords>, i: number, j: number): void {
  switch (kind) {
    case SLOT_NUM:
      w.num(raw[i] as number);
      return;
    case SLOT_SEC6:
      w.sec6(raw[i] as number);
      return;
    case SLOT_SEC6_DIFF:
      w.sec6((raw[i] as number) - (j < 0 ? 0 : (raw[j] as number)));
      return;
    case SLOT_FIXED6:
      w.fixed6(raw[i] as number);
      return;
    default:
      w.num((raw[i] as number) + (raw[j] as number));
  }
}

/** One transaction's records in one format at one level, compiled (see above). */
export class RecordsTemplate {
  constructor(
    readonly json: boolean,
    readonly level: number,
    /** The raw records compiled from (a copy): what a transaction must equal outside the slots. */
    readonly raw: Readonly<RawRecords>,
    /** Per raw entry: 1 when it is a number the output writes (any number matches there), 0 when it must be `===`. */
    readonly slots: Uint8Array,
    /** Per slot: kind, i, j (writeSlot's arguments). */
    readonly ops: Int32Array,
    /** The bytes before each slot, and the last piece after them (ops / 3 + 1 pieces). */
    readonly pieces: readonly Uint8Array[],
    /** Bytes of all the pieces. */
    readonly fixedBytes: number,
    /** NDJSON: records written (the formatter's count after them). */
    readonly count: number,
  ) {}

  /** Whether `raw` has this template's shape. */
  matches(raw: Readonly<RawRecords>): boolean {
    const own = this.raw;
    const n = own.length;
    if (raw.length !== n) return false;
    const slots = this.slots;
    for (let i = 0; i < n; i++) {
      const x = raw[i];
      if (slots[i] === 1) {
        if (typeof x !== 'number') return false;
      } else if (x !== own[i]) return false;
    }
    return true;
  }

  /** The formatter's bytes for `raw` (which matches). */
  render(w: ByteWriter, raw: Readonly<RawRecords>): void {
    const pieces = this.pieces;
    const ops = this.ops;
    w.ensure(this.fixedBytes);
    const last = pieces.length - 1;
    for (let k = 0; k <= last; k++) {
      const p = pieces[k] as Uint8Array;
      const len = p.length;
      if (len >= SHORT_PIECE) {
        w.ensure(len);
        w.buf.set(p, w.n);
        w.n += len;
      } else if (len > 0) {
        w.ensure(len);
        const b = w.buf;
        let n = w.n;
        for (let i = 0; i < len; i++) b[n++] = p[i] as number;
        w.n = n;
      }
      if (k < last) writeSlot(w, ops[k * 3] as number, raw, ops[k * 3 + 1] as number, ops[k * 3 + 2] as number);
    }
  }
}

/** Whether two transactions' raw records have one shape: the same entries, numbers anywhere both have numbers. */
export function sameShape(a: Readonly<RawRecords>, b: Readonly<RawRecords>): boolean {
  const n = a.length;
  if (b.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x !== y && (typeof x !== 'number' || typeof y !== 'number')) return false;
  }
  return true;
}

/** A connection's templates (held by its Session transaction). */
export class TemplateHome {
  private readonly list: RecordsTemplate[] = [];
  private next = 0;
  /** The raw records of the last transaction no template matched, per format (0 text, 1 NDJSON). */
  private readonly missed: Array<Readonly<RawRecords> | undefined> = [undefined, undefined];

  /** A template for `raw` in that format and level, or undefined. */
  find(raw: Readonly<RawRecords>, json: boolean, level: number): RecordsTemplate | undefined {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const t = list[i] as RecordsTemplate;
      if (t.json === json && t.level === level && t.matches(raw)) return t;
    }
    return undefined;
  }

  /**
   * No template matched `raw`: whether one is worth compiling (the last miss had its shape, so the next transaction
   * likely will too). Remembers `raw` as the last miss (a transaction's raw records never change once it has ended).
   */
  worthCompiling(raw: Readonly<RawRecords>, json: boolean): boolean {
    const k = json ? 1 : 0;
    const prev = this.missed[k];
    this.missed[k] = raw;
    return prev !== undefined && sameShape(prev, raw);
  }

  add(t: RecordsTemplate): void {
    if (this.list.length < TEMPLATES_MAX) this.list.push(t);
    else this.list[this.next] = t;
    this.next = (this.next + 1) % TEMPLATES_MAX;
    this.missed[t.json ? 1 : 0] = undefined;
  }
}
