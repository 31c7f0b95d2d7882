import { parseHttpDate } from './dates.js';
import { getHeader, type HeaderMap } from './headers.js';

/**
 * Range requests (RFC 9110 §14), pure. Parsing returns None / Invalid / Ranges like pingora's RangeType; resolving
 * against a length gives byte intervals (end inclusive) or "unsatisfiable".
 */
export type RangeSpec = { first: number; last: number | undefined } | { suffix: number };

export type ParsedRange = { kind: 'none' } | { kind: 'invalid' } | { kind: 'ranges'; specs: RangeSpec[] };

/**
 * Parses a Range field. §14.2: a recipient ignores a Range it does not understand (unknown unit) and a server MAY
 * ignore one with invalid syntax, answering 200; both come back as 'none' / 'invalid' and the caller sends 200.
 */
export function parseRange(value: string | undefined): ParsedRange {
  if (value === undefined) return { kind: 'none' };
  const eq = value.indexOf('=');
  if (eq < 0) return { kind: 'invalid' };
  if (value.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'none' };
  const specs: RangeSpec[] = [];
  for (const raw of value.slice(eq + 1).split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const m = /^(\d*)-(\d*)$/.exec(part);
    if (m === null) return { kind: 'invalid' };
    const [, a = '', b = ''] = m;
    if (a === '' && b === '') return { kind: 'invalid' };
    if (a === '') {
      specs.push({ suffix: Number(b) });
    } else {
      const first = Number(a);
      const last = b === '' ? undefined : Number(b);
      // §14.1.1: a range whose last-pos is less than its first-pos is invalid.
      if (last !== undefined && last < first) return { kind: 'invalid' };
      specs.push({ first, last });
    }
  }
  if (specs.length === 0) return { kind: 'invalid' };
  return { kind: 'ranges', specs };
}

/** An inclusive byte interval. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Satisfiable intervals of `specs` against a representation of `length` bytes (§14.1.2), sorted and with
 * overlapping or adjacent ranges coalesced (§14.2 allows it; it also defuses overlapping-range abuse). Empty result:
 * nothing is satisfiable (416).
 */
export function resolveRanges(specs: readonly RangeSpec[], length: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const s of specs) {
    if ('suffix' in s) {
      if (s.suffix === 0 || length === 0) continue;
      out.push({ start: Math.max(0, length - s.suffix), end: length - 1 });
    } else {
      if (s.first >= length) continue;
      out.push({ start: s.first, end: s.last === undefined ? length - 1 : Math.min(s.last, length - 1) });
    }
  }
  out.sort((x, y) => x.start - y.start);
  const merged: ByteRange[] = [];
  for (const r of out) {
    const prev = merged[merged.length - 1];
    if (prev !== undefined && r.start <= prev.end + 1) prev.end = Math.max(prev.end, r.end);
    else merged.push({ ...r });
  }
  return merged;
}

/**
 * If-Range (§13.1.5): true when the Range may be honoured. An entity-tag must match the stored ETag strongly; a date
 * must equal Last-Modified exactly and be a strong validator: a cache may deduce that only from a stored Date at least
 * one second after Last-Modified (§8.8.2.2), so without a Date the Range is ignored (as Varnish's vrg_ifrange does).
 */
export function ifRangeAllows(ifRange: string | undefined, stored: HeaderMap): boolean {
  if (ifRange === undefined) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) {
    const etag = getHeader(stored, 'etag');
    return etag !== undefined && !v.startsWith('W/') && !etag.startsWith('W/') && etag === v;
  }
  const lmRaw = getHeader(stored, 'last-modified');
  const lm = parseHttpDate(lmRaw);
  const since = parseHttpDate(v);
  if (lm === undefined || since === undefined || lm !== since) return false;
  const date = parseHttpDate(getHeader(stored, 'date'));
  return date !== undefined && date - lm >= 1000;
}

/** `bytes first-last/complete` or `bytes first-last/*` (§14.4). */
export function contentRange(r: ByteRange, length: number | undefined): string {
  return `bytes ${r.start}-${r.end}/${length === undefined ? '*' : length}`;
}

/** One part of a multipart/byteranges body: its header block, then the bytes of `range`. */
export interface MultipartPlan {
  boundary: string;
  parts: Array<{ head: Buffer; range: ByteRange }>;
  tail: Buffer;
  /** Total body length. */
  length: number;
}

/** Lays out a multipart/byteranges body (§14.6) for `ranges` of a representation of `length` bytes. */
export function planMultipart(ranges: readonly ByteRange[], length: number, contentType: string | undefined, boundary: string): MultipartPlan {
  const parts = ranges.map((range, i) => {
    let head = `${i === 0 ? '' : '\r\n'}--${boundary}\r\n`;
    if (contentType !== undefined) head += `content-type: ${contentType}\r\n`;
    head += `content-range: ${contentRange(range, length)}\r\n\r\n`;
    return { head: Buffer.from(head, 'latin1'), range };
  });
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
  let total = tail.length;
  for (const p of parts) total += p.head.length + (p.range.end - p.range.start + 1);
  return { boundary, parts, tail, length: total };
}
