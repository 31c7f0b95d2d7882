import { isSecretField, maskHeaderLine, maskSecret } from './secrets.js';

/**
 * A transaction's records as the request path appends them: one flat array, as Varnish appends small binary records
 * to its shared log and leaves the text to the reader (varnishlog). A record is either a tag and its finished value
 * (two strings), or a kind code followed by the pieces its value is made of: numbers stay numbers (timestamps,
 * byte counts, TTLs), header lines stay name and value, the hit path's serialised header block stays one string.
 * No object and no joined string per record on the request path; `decodeRaw` builds the values when a sink wants
 * them (off the request path, or in the log file's writer thread), the same strings the old builders gave.
 */
export type RawRecords = Array<string | number | RecordRun | number[]>;

/** `Begin`: word, number, reason, start ms (`req 1 rxreq`); the start is where the timestamps count from. */
export const RAW_BEGIN = 0;
/** `Timestamp`: label, ms (`Label: abs since-start since-last`). */
export const RAW_TIMESTAMP = 1;
/** A header record: tag, name, value (already masked) -> `name: value`. */
export const RAW_HEADER = 2;
/**
 * Header records from a `name: value\r\n` block: tag, block, 1 to mask secrets (0 to log them as they are), the offset
 * its lines start at (0, or past a prefix logged as a RecordRun).
 */
export const RAW_BLOCK = 3;
/** Three words joined by spaces: tag, a, b, c (`Link  req 5 rxreq`, `ReqStart  127.0.0.1 5000 a0`). */
export const RAW_WORDS = 4;
/** `Hit`: fetch vxid, ttl, grace, keep (seconds, 6 decimals). */
export const RAW_HIT = 5;
/** `ReqAcct`: request head and body bytes, response head and body bytes (and the two sums). */
export const RAW_ACCT = 6;
/** A RecordRun: records that recur as they are, appended as one entry. */
export const RAW_RUN = 7;
/**
 * `Link` records that follow one another with the same first and last words: a, c, the middle words (a number[] that
 * later links are pushed onto) -> `Link  a b c` per number. A session's `Link req N rxreq`, once per request: a
 * keep-alive connection's session grows by one number per request, not by five entries.
 */
export const RAW_LINKS = 8;

/**
 * Records that recur exactly (a VCL call and its return, a response's protocol, status and reason, an object's stored
 * response headers): appended as one entry and, written to the log file, formatted once per format and level and
 * copied after that (txlog/format-bytes.ts fills `text` and `json`). Its records never change once made (`next` and
 * `prev` only remember joins, joinRuns).
 */
export class RecordRun {
  readonly tags: string[] = [];
  readonly values: string[] = [];
  /** The records as text lines, per nesting level. */
  readonly text: Array<Uint8Array | undefined> = [];
  /** The records as NDJSON `[tag,value]` pairs joined by commas. */
  json: Uint8Array | undefined;

  /** The run last appended right after this one, and the two as one run (joinRuns). */
  next: RecordRun | undefined;
  withNext: RecordRun | undefined;
  /** The run this one was last appended right after, and the two as one run. */
  prev: RecordRun | undefined;
  withPrev: RecordRun | undefined;

  constructor(records: ReadonlyArray<readonly [string, string]>) {
    for (const [tag, value] of records) {
      this.tags.push(tag);
      this.values.push(value);
    }
  }
}

/** Records a joined run holds at most (runs in a row past that stay apart: no run grows with a transaction). */
const JOINED_MAX = 64;

/**
 * `a` then `b` as one run, or undefined when they stay apart (too long together). A hit's runs follow one another
 * (its request then VCL_call RECV; VCL_call HIT, the status line, the object's headers, VCL_call DELIVER): appended
 * as one entry and copied as one piece. The join is kept on both runs (the last one each was joined with), so a run
 * followed or preceded by the same run again and again (the object's headers always after the same status line)
 * finds it whatever its other side does.
 */
export function joinRuns(a: RecordRun, b: RecordRun): RecordRun | undefined {
  if (a.next === b) return a.withNext;
  if (b.prev === a) return b.withPrev;
  const len = a.tags.length + b.tags.length;
  let j: RecordRun | undefined;
  if (len <= JOINED_MAX) {
    j = new RecordRun([]);
    for (const r of [a, b]) {
      for (let i = 0; i < r.tags.length; i++) {
        j.tags.push(r.tags[i] as string);
        j.values.push(r.values[i] as string);
      }
    }
  }
  a.next = b;
  a.withNext = j;
  b.prev = a;
  b.withPrev = j;
  return j;
}

export interface TxRecord {
  tag: string;
  value: string;
}

/** Milliseconds as seconds with 6 decimals (what toFixed(6) gives, in about half the time: it runs 15 times a request). */
export function seconds6(ms: number): string {
  const us = Math.round(ms * 1000);
  const neg = us < 0;
  const a = neg ? -us : us;
  const sec = Math.floor(a / 1e6);
  const frac = a - sec * 1e6;
  return `${neg ? '-' : ''}${sec}.${frac < 100_000 ? String(frac).padStart(6, '0') : frac}`;
}

/** The records as tag and value, built from what the request path appended. */
export function decodeRaw(raw: Readonly<RawRecords>): TxRecord[] {
  const out: TxRecord[] = [];
  visitRaw(raw, (tag, value) => out.push({ tag, value }));
  return out;
}

/** Calls `fn` with each record's tag and value, in order (one decoder for the record objects and the formatters). */
export function visitRaw(raw: Readonly<RawRecords>, fn: (tag: string, value: string) => void): void {
  let start = 0;
  let last = 0;
  let i = 0;
  while (i < raw.length) {
    const k = raw[i] as string | number;
    if (typeof k === 'string') {
      fn(k, raw[i + 1] as string);
      i += 2;
      continue;
    }
    switch (k) {
      case RAW_BEGIN:
        start = last = raw[i + 4] as number;
        fn('Begin', `${raw[i + 1]} ${raw[i + 2]} ${raw[i + 3]}`);
        i += 5;
        break;
      case RAW_TIMESTAMP: {
        const now = raw[i + 2] as number;
        fn('Timestamp', `${raw[i + 1]}: ${seconds6(now)} ${seconds6(now - start)} ${seconds6(now - last)}`);
        last = now;
        i += 3;
        break;
      }
      case RAW_HEADER:
        fn(raw[i + 1] as string, `${raw[i + 2]}: ${raw[i + 3]}`);
        i += 4;
        break;
      case RAW_BLOCK:
        visitBlock(raw[i + 1] as string, raw[i + 2] as string, raw[i + 3] === 1, raw[i + 4] as number, fn);
        i += 5;
        break;
      case RAW_RUN: {
        const run = raw[i + 1] as unknown as RecordRun;
        for (let j = 0; j < run.tags.length; j++) fn(run.tags[j] as string, run.values[j] as string);
        i += 2;
        break;
      }
      case RAW_WORDS:
        fn(raw[i + 1] as string, `${raw[i + 2]} ${raw[i + 3]} ${raw[i + 4]}`);
        i += 5;
        break;
      case RAW_HIT:
        fn('Hit', `${raw[i + 1]} ${(raw[i + 2] as number).toFixed(6)} ${(raw[i + 3] as number).toFixed(6)} ${(raw[i + 4] as number).toFixed(6)}`);
        i += 5;
        break;
      case RAW_LINKS:
        for (const b of raw[i + 3] as number[]) fn('Link', `${raw[i + 1]} ${b} ${raw[i + 2]}`);
        i += 4;
        break;
      case RAW_ACCT:
        fn('ReqAcct', acctValue(raw[i + 1] as number, raw[i + 2] as number, raw[i + 3] as number, raw[i + 4] as number));
        i += 5;
        break;
      default:
        throw new Error(`txlog: unknown raw record kind ${k}`);
    }
  }
}

/** ReqAcct's value: request head and body bytes and their sum, response head and body bytes and their sum. */
function acctValue(hb: number, bb: number, rh: number, rb: number): string {
  return `${hb} ${bb} ${hb + bb} ${rh} ${rb} ${rh + rb}`;
}

/** A header block's records from offset `from`: a line each (empty lines skipped), secrets masked when `mask`. */
export function visitBlock(tag: string, block: string, mask: boolean, from: number, fn: (tag: string, value: string) => void): void {
  let s = from;
  for (let e = block.indexOf('\r\n', s); e >= 0; e = block.indexOf('\r\n', s)) {
    if (e > s) fn(tag, mask ? maskHeaderLine(block.slice(s, e)) : block.slice(s, e));
    s = e + 2;
  }
}

/** Runs of a VCL call and its return (`VCL_call HIT`, `VCL_return deliver`), by call then return. */
const vclRuns = new Map<string, Map<string, RecordRun>>();

/** The run of `VCL_call <call>` and `VCL_return <ret>` (made once per pair; the pairs are a small fixed set). */
export function vclRun(call: string, ret: string): RecordRun {
  let byRet = vclRuns.get(call);
  if (byRet === undefined) vclRuns.set(call, (byRet = new Map()));
  let run = byRet.get(ret);
  if (run === undefined) {
    run = new RecordRun([
      ['VCL_call', call],
      ['VCL_return', ret],
    ]);
    // Bounded however it is called (the pairs are literals today).
    if (byRet.size < 64) byRet.set(ret, run);
  }
  return run;
}

/** Runs of `RespProtocol HTTP/1.1`, `RespStatus <status>`, `RespReason <reason>`, by status. */
const statusRuns: Array<RecordRun | undefined> = [];

/** The response's status line records (`reason` is the status's standard phrase, so one run per status). */
export function statusRun(status: number, reason: string): RecordRun {
  const cached = status >= 100 && status <= 999 && Number.isInteger(status) ? statusRuns[status] : undefined;
  if (cached !== undefined && cached.values[2] === reason) return cached;
  const run = new RecordRun([
    ['RespProtocol', 'HTTP/1.1'],
    ['RespStatus', String(status)],
    ['RespReason', reason],
  ]);
  if (status >= 100 && status <= 999 && Number.isInteger(status)) statusRuns[status] = run;
  return run;
}

/** Header blocks' runs (an object's stored headers, served by every hit on it), masked and not, by block. */
const blockRuns = [new Map<string, RecordRun>(), new Map<string, RecordRun>()];
/** Blocks remembered at most (then the cache starts over): a run is made again at worst. */
const BLOCK_RUNS_MAX = 4096;

/** The header records of `block` (`name: value\r\n` lines) under `tag`, as one run made once per block. */
export function blockRun(tag: string, block: string, mask: boolean): RecordRun {
  const cache = blockRuns[mask ? 1 : 0] as Map<string, RecordRun>;
  let run = cache.get(block);
  if (run === undefined || run.tags[0] !== tag) {
    const records: Array<[string, string]> = [];
    visitBlock(tag, block, mask, 0, (t, v) => records.push([t, v]));
    run = new RecordRun(records);
    if (cache.size >= BLOCK_RUNS_MAX) cache.clear();
    cache.set(block, run);
  }
  return run;
}

/**
 * Header records (`name: value` under `tag`) appended to `raw`, credentials masked when `mask` (txlog/secrets.ts): the
 * one implementation behind Transaction.headers and the request runs below.
 */
export function pushHeaders(raw: RawRecords, tag: string, headers: Readonly<Record<string, string | readonly string[] | undefined>>, mask: boolean): void {
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    const secret = mask && isSecretField(k);
    if (typeof v === 'string') raw.push(RAW_HEADER, tag, k, secret ? maskSecret(k, v) : v);
    else for (const one of v) raw.push(RAW_HEADER, tag, k, secret ? maskSecret(k, one) : one);
  }
}

/** What a client request's opening records are made of (records.ts's logClientRequest). */
export interface ClientRequestInput {
  method: string;
  url: string;
  httpVersion: string;
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

/**
 * A connection's last request as logged: what its records were made of (a copy, taken when it was logged) and, once
 * the same request came again, its records as one run. A keep-alive client sends the same request head again and
 * again (the same URL, the same header lines): its ReqStart, request line, ReqHeader and X-Forwarded-For records are
 * then one run, formatted once and copied after that (issue 16), as a hit's stored response headers are. Anything
 * different (a header's value, a header more or less, their order, the URL, the client's address or port) is a new
 * request: logged record by record and remembered in place of the last one.
 */
export class RequestRunCache {
  private method = '';
  private url = '';
  private version = '';
  private remote = '';
  private port = -1;
  private names: string[] = [];
  /** Each header's value as it was (an array copied: a hook may change the request's own later). */
  private values: Array<string | readonly string[]> = [];
  /** The records as one run, made on the first repeat. */
  run: RecordRun | undefined;

  /** Whether `req` from `remote`:`port` is the remembered request, header for header in the same order. */
  matches(remote: string, port: number, req: ClientRequestInput): boolean {
    if (this.port !== port || this.url !== req.url || this.method !== req.method || this.version !== req.httpVersion || this.remote !== remote) return false;
    const names = this.names;
    const values = this.values;
    const n = names.length;
    const headers = req.headers;
    let i = 0;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      if (i >= n || names[i] !== k) return false;
      const p = values[i++] as string | readonly string[];
      if (typeof v === 'string') {
        if (p !== v) return false;
      } else {
        if (typeof p === 'string' || p.length !== v.length) return false;
        for (let j = 0; j < v.length; j++) if (p[j] !== v[j]) return false;
      }
    }
    return i === n;
  }

  /** Remembers `req` as the connection's last request (its run is made when it comes again). */
  remember(remote: string, port: number, req: ClientRequestInput): void {
    this.method = req.method;
    this.url = req.url;
    this.version = req.httpVersion;
    this.remote = remote;
    this.port = port;
    const names: string[] = [];
    const values: Array<string | readonly string[]> = [];
    const headers = req.headers;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      names.push(k);
      values.push(typeof v === 'string' ? v : v.slice());
    }
    this.names = names;
    this.values = values;
    this.run = undefined;
  }
}

/** A run of the records that `append` appends (made through the same code as the records it stands for). */
export function runOf(append: (raw: RawRecords) => void): RecordRun {
  const scratch: RawRecords = [];
  append(scratch);
  const records: Array<[string, string]> = [];
  visitRaw(scratch, (tag, value) => records.push([tag, value]));
  return new RecordRun(records);
}
