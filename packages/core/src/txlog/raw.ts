import { maskHeaderLine } from './secrets.js';

/**
 * A transaction's records as the request path appends them: one flat array, as Varnish appends small binary records
 * to its shared log and leaves the text to the reader (varnishlog). A record is either a tag and its finished value
 * (two strings), or a kind code followed by the pieces its value is made of: numbers stay numbers (timestamps,
 * byte counts, TTLs), header lines stay name and value, the hit path's serialised header block stays one string.
 * No object and no joined string per record on the request path; `decodeRaw` builds the values when a sink wants
 * them (off the request path, or in the log file's writer thread), the same strings the old builders gave.
 */
export type RawRecords = Array<string | number>;

/** `Begin`: word, number, reason, start ms (`req 1 rxreq`); the start is where the timestamps count from. */
export const RAW_BEGIN = 0;
/** `Timestamp`: label, ms (`Label: abs since-start since-last`). */
export const RAW_TIMESTAMP = 1;
/** A header record: tag, name, value (already masked) -> `name: value`. */
export const RAW_HEADER = 2;
/** Header records from a `name: value\r\n` block: tag, block, 1 to mask secrets (0 to log them as they are). */
export const RAW_BLOCK = 3;
/** Three words joined by spaces: tag, a, b, c (`Link  req 5 rxreq`, `ReqStart  127.0.0.1 5000 a0`). */
export const RAW_WORDS = 4;
/** `Hit`: fetch vxid, ttl, grace, keep (seconds, 6 decimals). */
export const RAW_HIT = 5;
/** `ReqAcct`: request head and body bytes, response head and body bytes (and the two sums). */
export const RAW_ACCT = 6;

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
export function decodeRaw(raw: readonly (string | number)[]): TxRecord[] {
  const out: TxRecord[] = [];
  visitRaw(raw, (tag, value) => out.push({ tag, value }));
  return out;
}

/** Calls `fn` with each record's tag and value, in order (one decoder for the record objects and the formatters). */
export function visitRaw(raw: readonly (string | number)[], fn: (tag: string, value: string) => void): void {
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
        visitBlock(raw[i + 1] as string, raw[i + 2] as string, raw[i + 3] === 1, fn);
        i += 4;
        break;
      case RAW_WORDS:
        fn(raw[i + 1] as string, `${raw[i + 2]} ${raw[i + 3]} ${raw[i + 4]}`);
        i += 5;
        break;
      case RAW_HIT:
        fn('Hit', `${raw[i + 1]} ${(raw[i + 2] as number).toFixed(6)} ${(raw[i + 3] as number).toFixed(6)} ${(raw[i + 4] as number).toFixed(6)}`);
        i += 5;
        break;
      case RAW_ACCT: {
        const hb = raw[i + 1] as number;
        const bb = raw[i + 2] as number;
        const rh = raw[i + 3] as number;
        const rb = raw[i + 4] as number;
        fn('ReqAcct', `${hb} ${bb} ${hb + bb} ${rh} ${rb} ${rh + rb}`);
        i += 5;
        break;
      }
      default:
        throw new Error(`txlog: unknown raw record kind ${k}`);
    }
  }
}

/** A header block's records: a line each (empty lines skipped), secrets masked when `mask`. */
function visitBlock(tag: string, block: string, mask: boolean, fn: (tag: string, value: string) => void): void {
  let s = 0;
  for (let e = block.indexOf('\r\n'); e >= 0; e = block.indexOf('\r\n', s)) {
    if (e > s) fn(tag, mask ? maskHeaderLine(block.slice(s, e)) : block.slice(s, e));
    s = e + 2;
  }
}
