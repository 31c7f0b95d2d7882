import { ByteWriter } from './bytes.js';
import { isRestart, type TxGrouping, type TxView } from './format.js';
import { RAW_ACCT, RAW_BEGIN, RAW_BLOCK, RAW_HEADER, RAW_HIT, RAW_LINKS, RAW_RUN, RAW_TIMESTAMP, RAW_WORDS, type RawRecords, type RecordRun } from './raw.js';
import { maskHeaderLine } from './secrets.js';

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

/** The openings of the tags every request writes (no lookup by tag for them), per level and for NDJSON. */
interface Fixed {
  Begin: Uint8Array;
  Timestamp: Uint8Array;
  Hit: Uint8Array;
  ReqAcct: Uint8Array;
  End: Uint8Array;
  Link: Uint8Array;
}

function fixedOf(tag: (t: string) => Uint8Array): Fixed {
  return { Begin: tag('Begin'), Timestamp: tag('Timestamp'), Hit: tag('Hit'), ReqAcct: tag('ReqAcct'), End: tag('End'), Link: tag('Link') };
}

const textFixed: Array<Fixed | undefined> = [];
const jsonFixed = fixedOf(jsonTag);

/** The fixed openings at `level` (text). */
function textFixedOf(level: number): Fixed {
  let f = textFixed[level];
  if (f === undefined) {
    const cache = textPrefix(level);
    textFixed[level] = f = fixedOf((t) => textTag(cache, level, t));
  }
  return f;
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
  /** The openings of the usual tags (the level's, or NDJSON's). */
  fixed: Fixed;
  /** Where the current transaction's last Timestamp's absolute time was written in `w`, and its length (0: none yet). */
  absAt: number;
  absLen: number;
}

function open(o: Out, tag: string): void {
  if (tag === 'End') return openFixed(o, o.fixed.End);
  if (o.json) {
    if (o.count++ > 0) o.w.byte(0x2c);
    o.w.bytes(jsonTag(tag));
  } else o.w.bytes(textTag(o.prefixes, o.level, tag));
}

/** A record's opening given as its bytes (one of `o.fixed`). */
function openFixed(o: Out, prefix: Uint8Array): void {
  if (o.json && o.count++ > 0) o.w.byte(0x2c);
  o.w.bytes(prefix);
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

function val(o: Out, x: string | number): void {
  if (typeof x === 'string') str(o, x);
  else o.w.num(x);
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

/** The records of a transaction (as appended, or as tag/value), each through `o`. */
function records(o: Out, t: TxView): void {
  if (t.raw !== undefined) walk(o, t.raw);
  else for (const r of t.records) record(o, r.tag, r.value);
}

/** txlog/raw.ts's visitRaw, writing each record instead of building its value. */
function walk(o: Out, raw: RawRecords): void {
  let start = 0;
  let last = 0;
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
        start = last = raw[i + 4] as number;
        words(o, o.fixed.Begin, raw[i + 1] as string | number, raw[i + 2] as string | number, raw[i + 3] as string | number);
        i += 5;
        break;
      case RAW_TIMESTAMP:
        last = timestamp(o, raw[i + 1] as string | number, raw[i + 2] as number, start, last);
        i += 3;
        break;
      case RAW_HEADER:
        header(o, raw[i + 1] as string, raw[i + 2] as string | number, raw[i + 3] as string | number);
        i += 4;
        break;
      case RAW_BLOCK:
        block(o, raw[i + 1] as string, raw[i + 2] as string, raw[i + 3] === 1, raw[i + 4] as number);
        i += 5;
        break;
      case RAW_RUN:
        run(o, raw[i + 1] as RecordRun);
        i += 2;
        break;
      case RAW_WORDS:
        words(o, raw[i + 1] as string, raw[i + 2] as string | number, raw[i + 3] as string | number, raw[i + 4] as string | number);
        i += 5;
        break;
      case RAW_HIT:
        hit(o, raw[i + 1] as string | number, raw[i + 2] as number, raw[i + 3] as number, raw[i + 4] as number);
        i += 5;
        break;
      case RAW_LINKS:
        for (const b of raw[i + 3] as number[]) words(o, o.fixed.Link, raw[i + 1] as string | number, b, raw[i + 2] as string | number);
        i += 4;
        break;
      case RAW_ACCT:
        acct(o, raw[i + 1] as number, raw[i + 2] as number, raw[i + 3] as number, raw[i + 4] as number);
        i += 5;
        break;
      default:
        throw new Error(`txlog: unknown raw record kind ${k}`);
    }
  }
}

/** `tag  a b c` (`tag` as its opening's bytes for the usual tags). */
function words(o: Out, tag: string | Uint8Array, a: string | number, b: string | number, c: string | number): void {
  if (typeof tag === 'string') open(o, tag);
  else openFixed(o, tag);
  val(o, a);
  ascii(o, 0x20);
  val(o, b);
  ascii(o, 0x20);
  val(o, c);
  close(o);
}

/**
 * `Timestamp  Label: abs since-start since-last`; returns `now` (the next one's last). The absolute time of a
 * timestamp at the same time as the one before (a request's Req is its Start) is that one's digits again; a
 * difference of 0 is `0.000000`.
 */
function timestamp(o: Out, label: string | number, now: number, start: number, last: number): number {
  const w = o.w;
  openFixed(o, o.fixed.Timestamp);
  val(o, label);
  w.ensure(2);
  w.buf[w.n++] = 0x3a;
  w.buf[w.n++] = 0x20;
  if (now === last && o.absLen > 0) {
    const len = o.absLen;
    w.ensure(len);
    const b = w.buf;
    let n = w.n;
    // (Earlier bytes of this transaction: they stay where they are when the buffer grows.)
    for (let i = o.absAt, end = i + len; i < end; i++) b[n++] = b[i] as number;
    w.n = n;
  } else {
    const at = w.n;
    w.sec6(now);
    o.absAt = at;
    o.absLen = w.n - at;
  }
  ascii(o, 0x20);
  since(w, now - start);
  ascii(o, 0x20);
  since(w, now - last);
  close(o);
  return now;
}

/** seconds6(ms) for a difference of two times: `0.000000` for none (the usual since-last of Start and Req). */
function since(w: ByteWriter, ms: number): void {
  if (ms !== 0) return w.sec6(ms);
  w.ensure(8);
  const b = w.buf;
  let n = w.n;
  b[n++] = 0x30;
  b[n++] = 0x2e;
  for (let i = 0; i < 6; i++) b[n++] = 0x30;
  w.n = n;
}

/** `tag  name: value`. */
function header(o: Out, tag: string, name: string | number, value: string | number): void {
  const w = o.w;
  open(o, tag);
  val(o, name);
  w.ensure(2);
  w.buf[w.n++] = 0x3a;
  w.buf[w.n++] = 0x20;
  val(o, value);
  close(o);
}

/** `Hit  <vxid> <ttl> <grace> <keep>`. */
function hit(o: Out, vxid: string | number, ttl: number, grace: number, keep: number): void {
  openFixed(o, o.fixed.Hit);
  val(o, vxid);
  ascii(o, 0x20);
  o.w.fixed6(ttl);
  ascii(o, 0x20);
  o.w.fixed6(grace);
  ascii(o, 0x20);
  o.w.fixed6(keep);
  close(o);
}

/** `ReqAcct  hb bb hb+bb rh rb rh+rb`. */
function acct(o: Out, hb: number, bb: number, rh: number, rb: number): void {
  const w = o.w;
  openFixed(o, o.fixed.ReqAcct);
  w.num(hb);
  ascii(o, 0x20);
  w.num(bb);
  ascii(o, 0x20);
  w.num(hb + bb);
  ascii(o, 0x20);
  w.num(rh);
  ascii(o, 0x20);
  w.num(rb);
  ascii(o, 0x20);
  w.num(rh + rb);
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

/** A run's records: formatted once per format and level (kept on the run), copied after that. */
function run(o: Out, r: RecordRun): void {
  const len = r.tags.length;
  if (len === 0) return;
  if (o.json) {
    let bytes = r.json;
    if (bytes === undefined) {
      const w = new ByteWriter(256);
      const inner: Out = { w, json: true, prefixes: jsonPrefixes, level: 0, count: 0, fixed: jsonFixed, absAt: 0, absLen: 0 };
      for (let j = 0; j < len; j++) record(inner, r.tags[j] as string, r.values[j] as string);
      r.json = bytes = w.buf.subarray(0, w.n);
    }
    if (o.count > 0) o.w.byte(0x2c);
    o.count += len;
    o.w.bytes(bytes);
    return;
  }
  let bytes = r.text[o.level];
  if (bytes === undefined) {
    const w = new ByteWriter(256);
    const inner: Out = { w, json: false, prefixes: o.prefixes, level: o.level, count: 0, fixed: o.fixed, absAt: 0, absLen: 0 };
    for (let j = 0; j < len; j++) record(inner, r.tags[j] as string, r.values[j] as string);
    r.text[o.level] = bytes = w.buf.subarray(0, w.n);
  }
  o.w.bytes(bytes);
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
  records({ w, json: false, prefixes: textPrefix(level), level, count: 0, fixed: textFixedOf(level), absAt: 0, absLen: 0 }, t);
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
  records({ w, json: true, prefixes: jsonPrefixes, level: 0, count: 0, fixed: jsonFixed, absAt: 0, absLen: 0 }, t);
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
