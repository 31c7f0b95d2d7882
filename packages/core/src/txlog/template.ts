import type { ByteWriter } from './bytes.js';
import { RecordRun, type RawRecords } from './raw.js';

/**
 * A transaction's formatted records as a template with slots (issue 16, a log that costs almost nothing). A hit logs
 * the same records as the hit before it: the same tags, the same kinds of record, the same strings; what differs is
 * numbers (timestamps, vxids, byte counts, the Hit's ttl) and which runs it holds (its connection's request run, the
 * prepared hit's header block, which changes with Age every second and with the object). Its bytes are then the last
 * one's bytes with those numbers and runs written in. txlog/format-bytes.ts compiles a template by running its
 * formatter once in a mode that writes every piece but the numbers and the runs and notes where each goes and how it
 * is written; later transactions whose raw records have the same shape (every entry that is not a slot identical,
 * `===`; a number wherever a number was written, a non-empty run wherever a run was copied) are rendered by copying
 * the pieces, writing the numbers by the same digit writers and copying each run's own formatted bytes (the walker's
 * own copy). The output is the formatter's own, byte for byte, by construction: the formatter's output depends on
 * nothing else (template.fuzz.test.ts compares the two).
 *
 * Session 9 (v2): runs are slots, so a template survives the second ticking (Age), a new object, another URL or
 * another connection; templates are shared by the whole process (TemplateCache, at most TEMPLATES_MAX per format),
 * and one is compiled when a transaction no template matched has the shape of the previous such transaction.
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
/** `raw[i]` is a RecordRun with records: its formatted bytes (in NDJSON the comma before it is in the piece). */
export const SLOT_RUN = 5;

/** In RecordsTemplate.slots: the entry must be `===` the template's. */
export const MUST_EQUAL = 0;
/** ... must be a number (any). */
export const ANY_NUMBER = 1;
/** ... must be a RecordRun with at least one record (any). */
export const ANY_RUN = 2;

/** Templates compiled and transactions rendered from one, since the process started (tests read them). */
export const templateCounts = { compiled: 0, rendered: 0 };

/** Templates kept per format and level (a proxy's common transactions have a handful of shapes). */
const TEMPLATES_MAX = 8;

/** Writes one number slot: the same writer call the formatter makes for that number. */
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
    /** Per raw entry: MUST_EQUAL, ANY_NUMBER or ANY_RUN. */
    readonly slots: Uint8Array,
    /** Per slot: kind, i, j (writeSlot's arguments; SLOT_RUN: the run's index). */
    readonly ops: Int32Array,
    /** The bytes before each slot, and the last piece after them (ops / 3 + 1 pieces). */
    readonly pieces: readonly Uint8Array[],
    /** Bytes of all the pieces. */
    readonly fixedBytes: number,
    /** NDJSON: records written, those of the run slots left out (the formatter's count after them, less theirs). */
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
      const s = slots[i];
      if (s === MUST_EQUAL) {
        if (x !== own[i]) return false;
      } else if (s === ANY_NUMBER) {
        if (typeof x !== 'number') return false;
      } else if (!(x instanceof RecordRun) || x.tags.length === 0) return false;
    }
    return true;
  }
}

/** Whether two transactions' raw records have one shape: the same entries, numbers where both have numbers, runs where both have runs. */
export function sameShape(a: Readonly<RawRecords>, b: Readonly<RawRecords>): boolean {
  const n = a.length;
  if (b.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') continue;
    if (x instanceof RecordRun && y instanceof RecordRun) continue;
    return false;
  }
  return true;
}

/** The process's templates for one format and level: the last one used first. */
export class TemplateCache {
  private readonly list: RecordsTemplate[] = [];
  /** The raw records of the last transaction no template matched. */
  private missed: Readonly<RawRecords> | undefined;

  /** A template for `raw`, or undefined. */
  find(raw: Readonly<RawRecords>): RecordsTemplate | undefined {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const t = list[i] as RecordsTemplate;
      if (t.matches(raw)) {
        if (i > 0) {
          // Move to the front: the next transaction most likely has the same shape.
          list.copyWithin(1, 0, i);
          list[0] = t;
        }
        return t;
      }
    }
    return undefined;
  }

  /**
   * No template matched `raw`: whether one is worth compiling (the last miss had its shape, so later transactions
   * likely will too). Remembers `raw` as the last miss (a transaction's raw records never change once it has ended).
   */
  worthCompiling(raw: Readonly<RawRecords>): boolean {
    const prev = this.missed;
    this.missed = raw;
    return prev !== undefined && sameShape(prev, raw);
  }

  add(t: RecordsTemplate): void {
    // The least recently used goes.
    if (this.list.length >= TEMPLATES_MAX) this.list.pop();
    this.list.unshift(t);
    this.missed = undefined;
  }

  /** Templates held (tests). */
  get size(): number {
    return this.list.length;
  }
}

/** The process's templates: [NDJSON, text level 0, text level 1, ...]. */
const caches: TemplateCache[] = [];

/** The templates for NDJSON (`json`) or for text at `level`. */
export function templatesFor(json: boolean, level: number): TemplateCache {
  const k = json ? 0 : level + 1;
  let c = caches[k];
  if (c === undefined) caches[k] = c = new TemplateCache();
  return c;
}
