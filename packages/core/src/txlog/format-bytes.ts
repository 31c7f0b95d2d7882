import { ByteWriter } from './bytes.js';
import { isRestart, type TxGrouping, type TxView } from './format.js';
import { RAW_ACCT, RAW_BEGIN, RAW_BLOCK, RAW_HEADER, RAW_HIT, RAW_RUN, RAW_TIMESTAMP, RAW_WORDS, type RawRecords, type RecordRun } from './raw.js';
import { maskHeaderLine } from './secrets.js';
import { ANY_NUMBER, ANY_RUN, RecordsTemplate, SLOT_FIXED6, SLOT_NUM, SLOT_RUN, SLOT_SEC6, SLOT_SEC6_DIFF, SLOT_SUM, templateCounts, templatesFor, writeSlot } from './template.js';

/**
 * The log's text formats written as bytes (txlog/bytes.ts), for the log file: the same bytes as formatVarnishlog and
 * formatNdjson (txlog/format.ts, the reference, which the admin API, `sluice log` and stdout use), without a string
 * per record. A live transaction's records are read as the request path appended them (txlog/raw.ts): a record's
 * line prefix (`-   ReqHeader      `, `["ReqHeader","`) is a preformatted piece, numbers are written digit by digit,
 * header names and values are copied from the strings they are, a header block is split and masked while copied.
 */

/** Per nesting level, each tag's text line prefix (`--  BerespStatus   `), as bytes. */
const textPrefixes: Array<Map<string, Uint8Array>> = [];
/** Per nesting level, each transaction type's header line up to the vxid (`**  << BeReq    >> `), as bytes. */
const headPrefixes: Array<Map<string, Uint8Array>> = [];
/** Each tag's NDJSON record opening (`["BerespStatus","`), as bytes. */
const jsonPrefixes = new Map<string, Uint8Array>();

function textPrefix(level: number): Map<string, Uint8Array> {
  let m = textPrefixes[level];
  if (m === undefined) textPrefixes[level] = m = new Map();
  return m;
}

/** A record's line prefix in text at `level`. */
function textTag(cache: Map<string, Uint8Array>, level: number, tag: string): Uint8Array {
  let p = cache.get(tag);
  if (p === undefined) {
    const dashes = level <= 3 ? '-'.repeat(level).padEnd(3) : `-${level}-`;
    cache.set(tag, (p = Buffer.from(`${dashes} ${tag.padEnd(14)} `)));
  }
  return p;
}

/** A record's opening in NDJSON. */
function jsonTag(tag: string): Uint8Array {
  let p = jsonPrefixes.get(tag);
  if (p === undefined) jsonPrefixes.set(tag, (p = Buffer.from(`[${JSON.stringify(tag)},"`)));
  return p;
}

/**
 * Where a record's value goes: `open` writes the record's opening (prefix, or `,[tag,"`), the value is written by
 * the walker through `w` (`json` or not), `close` ends the record.
 */
interface Out {
  w: ByteWriter;
  json: boolean;
  /** Text: the level's prefixes. */
  prefixes: Map<string, Uint8Array>;
  level: number;
  /** NDJSON: records written so far in the current transaction (a comma before every one but the first). */
  count: number;
  /** Compiling a template (txlog/template.ts): numbers are noted as slots, not written. */
  c?: Compiling | undefined;
}

/** A template being compiled: which raw entries are slots, each slot's writer call and where it goes. */
interface Compiling {
  slots: Uint8Array;
  ops: number[];
  /** The output offset of each slot. */
  cuts: number[];
  /** Records in the run slots (the template's own count leaves them out). */
  runRecords: number;
}

function open(o: Out, tag: string): void {
  if (o.json) {
    if (o.count++ > 0) o.w.byte(0x2c);
    o.w.bytes(jsonTag(tag));
  } else o.w.bytes(textTag(o.prefixes, o.level, tag));
}

function close(o: Out): void {
  if (o.json) {
    o.w.ensure(2);
    o.w.buf[o.w.n++] = 0x22;
    o.w.buf[o.w.n++] = 0x5d;
  } else o.w.byte(0x0a);
}

/** A piece of a value: escaped for NDJSON, as it is for text. */
function str(o: Out, s: string): void {
  if (o.json) o.w.json(s);
  else o.w.str(s);
}

/** A number from the raw records (`raw[i]`, with `raw[j]`: see template.ts's slot kinds); a slot when compiling. */
function slot(o: Out, kind: number, raw: RawRecords, i: number, j: number): void {
  const c = o.c;
  if (c === undefined) return writeSlot(o.w, kind, raw, i, j);
  c.slots[i] = ANY_NUMBER;
  if (j >= 0) c.slots[j] = ANY_NUMBER;
  c.ops.push(kind, i, j);
  c.cuts.push(o.w.n);
}

/** `raw[i]`, a string or a number, as a template literal gives it. */
function val(o: Out, raw: RawRecords, i: number): void {
  const x = raw[i] as string | number;
  if (typeof x === 'string') str(o, x);
  else slot(o, SLOT_NUM, raw, i, -1);
}

/** A value's separator or a fixed piece with nothing to escape (`: `, a space). */
function ascii(o: Out, c: number): void {
  o.w.byte(c);
}

/** One record given as tag and value. */
function record(o: Out, tag: string, value: string): void {
  open(o, tag);
  str(o, value);
  close(o);
}

/**
 * The records of a transaction (as appended, or as tag/value), each through `o`. A live transaction is rendered from
 * a template when one of its format and level matches (txlog/template.ts); a transaction no template matched that has
 * the shape of the previous such one compiles a template.
 */
function records(o: Out, t: TxView): void {
  const raw = t.raw;
  if (raw === undefined) {
    for (const r of t.records) record(o, r.tag, r.value);
    return;
  }
  const cache = templatesFor(o.json, o.level);
  let tp = cache.find(raw);
  if (tp === undefined) {
    if (!cache.worthCompiling(raw)) return walk(o, raw);
    tp = compile(raw, o.json, o.level, o.prefixes);
    templateCounts.compiled++;
    cache.add(tp);
  }
  templateCounts.rendered++;
  render(o, tp, raw);
}

/** Scratch space of compile (the pieces are copied out). */
const scratch = new ByteWriter(4096);

/** A template of `raw`'s records (txlog/template.ts): the formatter run once with its numbers and runs noted as slots. */
function compile(raw: RawRecords, json: boolean, level: number, prefixes: Map<string, Uint8Array>): RecordsTemplate {
  const c: Compiling = { slots: new Uint8Array(raw.length), ops: [], cuts: [], runRecords: 0 };
  const w = scratch;
  w.n = 0;
  const o: Out = { w, json, prefixes, level, count: 0, c };
  walk(o, raw);
  // One buffer for all the pieces, each a view of it.
  const all = new Uint8Array(w.buf.subarray(0, w.n));
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...c.cuts, w.n]) {
    pieces.push(all.subarray(from, cut));
    from = cut;
  }
  return new RecordsTemplate(json, level, raw.slice(), c.slots, Int32Array.from(c.ops), pieces, w.n, o.count - c.runRecords);
}

/** The formatter's bytes for `raw`, which matches `tp`: the pieces, the numbers written in, the runs copied in. */
function render(o: Out, tp: RecordsTemplate, raw: RawRecords): void {
  const w = o.w;
  const pieces = tp.pieces;
  const ops = tp.ops;
  w.ensure(tp.fixedBytes);
  o.count += tp.count;
  const last = pieces.length - 1;
  for (let k = 0; ; k++) {
    w.bytes(pieces[k] as Uint8Array);
    if (k === last) break;
    const kind = ops[k * 3] as number;
    const i = ops[k * 3 + 1] as number;
    if (kind === SLOT_RUN) {
      const r = raw[i] as RecordRun;
      o.count += r.tags.length;
      w.bytes(runBytes(o, r));
    } else writeSlot(w, kind, raw, i, ops[k * 3 + 2] as number);
  }
}

/** txlog/raw.ts's visitRaw, writing each record instead of building its value. */
function walk(o: Out, raw: RawRecords): void {
  // Where the Begin's start time and the last timestamp are (-1: none, taken as 0).
  let start = -1;
  let last = -1;
  let i = 0;
  const len = raw.length;
  while (i < len) {
    const k = raw[i] as string | number;
    if (typeof k === 'string') {
      record(o, k, raw[i + 1] as string);
      i += 2;
      continue;
    }
    switch (k) {
      case RAW_BEGIN:
        start = last = i + 4;
        words(o, 'Begin', raw, i + 1);
        i += 5;
        break;
      case RAW_TIMESTAMP:
        timestamp(o, raw, i + 1, start, last);
        last = i + 2;
        i += 3;
        break;
      case RAW_HEADER:
        header(o, raw[i + 1] as string, raw, i + 2);
        i += 4;
        break;
      case RAW_BLOCK:
        block(o, raw[i + 1] as string, raw[i + 2] as string, raw[i + 3] === 1, raw[i + 4] as number);
        i += 5;
        break;
      case RAW_RUN:
        run(o, raw[i + 1] as RecordRun, i + 1);
        i += 2;
        break;
      case RAW_WORDS:
        words(o, raw[i + 1] as string, raw, i + 2);
        i += 5;
        break;
      case RAW_HIT:
        hit(o, raw, i + 1);
        i += 5;
        break;
      case RAW_ACCT:
        acct(o, raw, i + 1);
        i += 5;
        break;
      default:
        throw new Error(`txlog: unknown raw record kind ${k}`);
    }
  }
}

/** `tag  a b c`, from raw[i], raw[i + 1], raw[i + 2]. */
function words(o: Out, tag: string, raw: RawRecords, i: number): void {
  open(o, tag);
  val(o, raw, i);
  ascii(o, 0x20);
  val(o, raw, i + 1);
  ascii(o, 0x20);
  val(o, raw, i + 2);
  close(o);
}

/** `Timestamp  Label: abs since-start since-last`: label raw[i], time raw[i + 1], start and last where they are. */
function timestamp(o: Out, raw: RawRecords, i: number, start: number, last: number): void {
  const w = o.w;
  open(o, 'Timestamp');
  val(o, raw, i);
  w.ensure(2);
  w.buf[w.n++] = 0x3a;
  w.buf[w.n++] = 0x20;
  slot(o, SLOT_SEC6, raw, i + 1, -1);
  ascii(o, 0x20);
  slot(o, SLOT_SEC6_DIFF, raw, i + 1, start);
  ascii(o, 0x20);
  slot(o, SLOT_SEC6_DIFF, raw, i + 1, last);
  close(o);
}

/** `tag  name: value`, name raw[i], value raw[i + 1]. */
function header(o: Out, tag: string, raw: RawRecords, i: number): void {
  const w = o.w;
  open(o, tag);
  val(o, raw, i);
  w.ensure(2);
  w.buf[w.n++] = 0x3a;
  w.buf[w.n++] = 0x20;
  val(o, raw, i + 1);
  close(o);
}

/** `Hit  <vxid> <ttl> <grace> <keep>` from raw[i..i + 3]. */
function hit(o: Out, raw: RawRecords, i: number): void {
  open(o, 'Hit');
  val(o, raw, i);
  ascii(o, 0x20);
  slot(o, SLOT_FIXED6, raw, i + 1, -1);
  ascii(o, 0x20);
  slot(o, SLOT_FIXED6, raw, i + 2, -1);
  ascii(o, 0x20);
  slot(o, SLOT_FIXED6, raw, i + 3, -1);
  close(o);
}

/** `ReqAcct  hb bb hb+bb rh rb rh+rb` from raw[i..i + 3]. */
function acct(o: Out, raw: RawRecords, i: number): void {
  open(o, 'ReqAcct');
  slot(o, SLOT_NUM, raw, i, -1);
  ascii(o, 0x20);
  slot(o, SLOT_NUM, raw, i + 1, -1);
  ascii(o, 0x20);
  slot(o, SLOT_SUM, raw, i, i + 1);
  ascii(o, 0x20);
  slot(o, SLOT_NUM, raw, i + 2, -1);
  ascii(o, 0x20);
  slot(o, SLOT_NUM, raw, i + 3, -1);
  ascii(o, 0x20);
  slot(o, SLOT_SUM, raw, i + 2, i + 3);
  close(o);
}

/**
 * A header block's records (raw.ts's visitBlock): a record per `\r\n`-ended line, empty lines skipped, text after
 * the last `\r\n` dropped, a secret value masked when `mask`. Only a name of a secret field's length (cookie,
 * set-cookie, authorization, proxy-authorization) goes through maskHeaderLine; every other line is copied as it is.
 */
function block(o: Out, tag: string, b: string, mask: boolean, from: number): void {
  let s = from;
  for (let e = b.indexOf('\r\n', s); e >= 0; e = b.indexOf('\r\n', s)) {
    if (e > s) {
      open(o, tag);
      let whole = true;
      if (mask) {
        const colon = b.indexOf(':', s);
        const nameLen = colon < 0 || colon > e ? -1 : colon - s;
        if (nameLen === 6 || nameLen === 10 || nameLen === 13 || nameLen === 19) {
          str(o, maskHeaderLine(b.slice(s, e)));
          whole = false;
        }
      }
      if (whole) {
        if (o.json) o.w.json(s === 0 && e === b.length ? b : b.slice(s, e));
        else o.w.range(b, s, e);
      }
      close(o);
    }
    s = e + 2;
  }
}

/** A run's records: formatted once per format and level (kept on the run), copied after that; a slot when compiling. */
function run(o: Out, r: RecordRun, i: number): void {
  const len = r.tags.length;
  if (len === 0) return;
  if (o.json && o.count > 0) o.w.byte(0x2c);
  o.count += len;
  const c = o.c;
  if (c !== undefined) {
    c.runRecords += len;
    // (NDJSON: the comma is the piece's; a run slot only matches a run with records, which gets one the same.)
    c.slots[i] = ANY_RUN;
    c.ops.push(SLOT_RUN, i, -1);
    c.cuts.push(o.w.n);
    return;
  }
  o.w.bytes(runBytes(o, r));
}

/** A run's records as bytes in `o`'s format and level (made once, kept on the run). */
function runBytes(o: Out, r: RecordRun): Uint8Array {
  const len = r.tags.length;
  if (o.json) {
    let bytes = r.json;
    if (bytes === undefined) {
      const w = new ByteWriter(256);
      const inner: Out = { w, json: true, prefixes: jsonPrefixes, level: 0, count: 0 };
      for (let j = 0; j < len; j++) record(inner, r.tags[j] as string, r.values[j] as string);
      r.json = bytes = w.buf.subarray(0, w.n);
    }
    return bytes;
  }
  let bytes = r.text[o.level];
  if (bytes === undefined) {
    const w = new ByteWriter(256);
    const inner: Out = { w, json: false, prefixes: textPrefix(o.level), level: o.level, count: 0 };
    for (let j = 0; j < len; j++) record(inner, r.tags[j] as string, r.values[j] as string);
    r.text[o.level] = bytes = w.buf.subarray(0, w.n);
  }
  return bytes;
}

/** `t`'s block at `level` (its header line, its records), as formatVarnishlog's txBlock. */
function textBlock(w: ByteWriter, t: TxView, level: number): void {
  // `*   << Request  >> ` made once per level and type; the vxid padded to 10.
  let heads = headPrefixes[level];
  if (heads === undefined) headPrefixes[level] = heads = new Map();
  let head = heads.get(t.type);
  if (head === undefined) {
    const stars = level <= 3 ? '*'.repeat(level).padEnd(3) : `*${level}*`;
    heads.set(t.type, (head = Buffer.from(`${stars} << ${t.type.padEnd(8)} >> `)));
  }
  w.bytes(head);
  const vxid = t.vxid;
  if (vxid >= 0 && vxid <= 0x7fffffff && (vxid | 0) === vxid) {
    const n0 = w.n;
    w.int(vxid);
    w.ensure(11);
    for (let i = w.n - n0; i < 10; i++) w.buf[w.n++] = 0x20;
    w.buf[w.n++] = 0x0a;
  } else w.str(`${String(vxid).padEnd(10)}\n`);
  records({ w, json: false, prefixes: textPrefix(level), level, count: 0 }, t);
}

/** formatVarnishlog(root, grouping), written to `w`. */
export function writeVarnishlog(w: ByteWriter, root: TxView, grouping: TxGrouping = 'request'): void {
  if (grouping === 'vxid') {
    const all: TxView[] = [];
    const collect = (t: TxView): void => {
      all.push(t);
      t.children.forEach(collect);
    };
    collect(root);
    all.sort((a, b) => (a.endSeq ?? 0) - (b.endSeq ?? 0));
    for (const t of all) {
      textBlock(w, t, 1);
      w.byte(0x0a);
    }
    return;
  }
  if (root.children.length === 0) {
    // One transaction alone (a hit): no walk by levels.
    textBlock(w, root, 1);
    w.byte(0x0a);
    return;
  }
  let level: Array<{ t: TxView; stars: number }> = [{ t: root, stars: 1 }];
  while (level.length > 0) {
    const next: Array<{ t: TxView; stars: number }> = [];
    for (const { t, stars } of level) {
      textBlock(w, t, stars);
      for (const c of t.children) next.push({ t: c, stars: isRestart(c) ? stars : stars + 1 });
    }
    level = next;
  }
  w.byte(0x0a);
}

const VXID = Buffer.from('{"vxid":');
const TYPE = Buffer.from(',"type":"');
const RECORDS = Buffer.from('","records":[');
const CHILDREN = Buffer.from('],"children":[');

/** One transaction as formatNdjson's JSON object. */
function jsonTx(w: ByteWriter, t: TxView): void {
  w.bytes(VXID);
  // JSON.stringify's number: null for NaN and the infinities.
  if (Number.isFinite(t.vxid)) w.num(t.vxid);
  else w.str('null');
  w.bytes(TYPE);
  w.json(t.type);
  w.bytes(RECORDS);
  records({ w, json: true, prefixes: jsonPrefixes, level: 0, count: 0 }, t);
  w.bytes(CHILDREN);
  const kids = t.children;
  for (let i = 0; i < kids.length; i++) {
    if (i > 0) w.byte(0x2c);
    jsonTx(w, kids[i] as TxView);
  }
  w.ensure(2);
  w.buf[w.n++] = 0x5d;
  w.buf[w.n++] = 0x7d;
}

/** formatNdjson(root), written to `w`. */
export function writeNdjson(w: ByteWriter, root: TxView): void {
  jsonTx(w, root);
  w.byte(0x0a);
}
