import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  first,
  isBinaryVsl,
  isGroupedText,
  isRawText,
  last,
  parseBinaryVsl,
  parseGroupedText,
  parseNdjson,
  parseRawText,
  timestamp,
  type ParsedLog,
  type VslTx,
} from './vsl.js';

export type Outcome = 'hit' | 'miss' | 'pass' | 'synth' | 'pipe' | 'unknown';

/** One client request to re-issue, as the client sent it, with what the recording says happened. */
export interface ReplayRequest {
  /** 1-based, in arrival order. */
  seq: number;
  /** Where it came from: "request.log line 120 (vxid 2)". */
  ref: string;
  /** Arrival time in epoch ms (recorded clock), when known. */
  startMs: number | undefined;
  method: string;
  url: string;
  protocol: string;
  /** Header lines in the client's order and spelling. */
  headers: Array<[string, string]>;
  /** Size of the request body to make up (logs keep the size, never the bytes). */
  bodyBytes: number;
  /** The recorded client connection (session vxid), when the log names it: replay reuses one connection per session. */
  session?: string | undefined;
  recorded: {
    status: number | undefined;
    outcome: Outcome;
    /** grace, waitinglist, hit-for-miss, hit-for-pass, … */
    detail?: string | undefined;
    /** Time to response headers (`Timestamp Process`), ms. */
    ttfbMs?: number | undefined;
    /** Response body bytes sent (`ReqAcct` field 5, or the NCSA size). */
    bodyBytes?: number | undefined;
  };
  /** What the replay could not take verbatim: "url may be truncated (254 bytes)", "incomplete group", … */
  notes: string[];
}

export interface Skipped {
  ref: string;
  reason: string;
}

export interface Trace {
  format: 'varnishlog' | 'varnishlog-raw' | 'varnishlog-binary' | 'ndjson' | 'ncsa';
  requests: ReplayRequest[];
  skipped: Skipped[];
}

/** vsl_reclen 255 minus the NUL: a value this long may have been cut (FORMAT.md §6). */
const VSL_MAX_VALUE = 254;

export function readTrace(file: string): Trace {
  const buf = readFileSync(file);
  return parseTrace(buf, path.basename(file));
}

/** Detects the format from the content, not the name. */
export function parseTrace(buf: Buffer, name: string): Trace {
  if (isBinaryVsl(buf)) return fromVsl(parseBinaryVsl(buf, name), 'varnishlog-binary');
  const text = buf.toString('utf8');
  const firstLine = text.split('\n', 20).find((l) => l.trim() !== '') ?? '';
  if (firstLine.trimStart().startsWith('{')) return fromVsl(parseNdjson(text, name), 'ndjson');
  if (isGroupedText(text)) return fromVsl(parseGroupedText(text, name), 'varnishlog');
  if (isRawText(text)) return fromVsl(parseRawText(text, name), 'varnishlog-raw');
  if (NCSA.test(firstLine)) return parseNcsa(text, name);
  throw new TraceFormatError(
    `${name}: not a trace Sluice can read (expected varnishlog text or binary, Sluice NDJSON, or an NCSA combined log); first line: ${JSON.stringify(firstLine.slice(0, 80))}`,
  );
}

export class TraceFormatError extends Error {}

/**
 * The trace with every recorded Host replaced by `host` (replaying production traffic against a test host, whose
 * cache keys then match). Requests recorded without Host stay without.
 */
export function withHost(trace: Trace, host: string): Trace {
  return {
    ...trace,
    requests: trace.requests.map((r) => ({ ...r, headers: r.headers.map(([n, v]): [string, string] => (n.toLowerCase() === 'host' ? [n, host] : [n, v])) })),
  };
}

/**
 * Client requests from VSL transactions (FORMAT.md §5): each Request begun by `rxreq` is one client request. Its
 * request line and headers are the first request's records before its first `VCL_call`; status and outcome come from
 * the last Request of its restart chain. ESI subrequests, restarts and backend fetches are the target's business
 * when it replays the parent, so they are listed as skipped with that reason; so is anything that cannot be rebuilt.
 */
function fromVsl(log: ParsedLog, format: Trace['format']): Trace {
  const skipped: Skipped[] = log.problems.map((p) => ({ ref: p.ref, reason: p.reason }));
  const requests: ReplayRequest[] = [];
  for (const tx of log.transactions) {
    if (tx.type !== 'Request') continue;
    const ref = `${tx.ref} (vxid ${tx.vxid})`;
    if (tx.reason === 'esi') {
      skipped.push({ ref, reason: `ESI subrequest of request ${tx.parentVxid ?? '?'}: the target makes it when it replays the parent` });
      continue;
    }
    if (tx.reason === 'slice') {
      skipped.push({ ref, reason: `slicer segment subrequest of request ${tx.parentVxid ?? '?'}: the target makes it when it replays the parent` });
      continue;
    }
    if (tx.reason === 'restart') continue; // part of its parent's chain, reported there
    if (tx.reason !== undefined && tx.reason !== 'rxreq') {
      skipped.push({ ref, reason: `request begun by "${tx.reason}", not by a client` });
      continue;
    }
    if (tx.reason === undefined) {
      skipped.push({ ref, reason: 'no Begin record: the group started before the log did' });
      continue;
    }
    const r = rebuild(tx, ref);
    if (typeof r === 'string') skipped.push({ ref, reason: r });
    else requests.push(r);
  }
  return { format, requests: ordered(requests), skipped };
}

function rebuild(tx: VslTx, ref: string): ReplayRequest | string {
  if (first(tx, 'HttpGarbage') !== undefined) return 'rejected by the recorder as unparseable (HttpGarbage): no request to rebuild';
  const method = first(tx, 'ReqMethod');
  const url = first(tx, 'ReqURL');
  if (method === undefined || url === undefined) return tx.complete ? 'no ReqMethod/ReqURL record' : 'incomplete group: the request line was never logged';
  const notes: string[] = [];
  // Headers as the client sent them: ReqHeader/ReqUnset before the first VCL_call.
  const headers: Array<[string, string]> = [];
  let sawVcl = false;
  for (const r of tx.records) {
    if (r.tag === 'VCL_call') {
      sawVcl = true;
      break;
    }
    if (r.tag === 'ReqHeader' || r.tag === 'ReqUnset') {
      const i = r.value.indexOf(':');
      if (i <= 0) continue;
      const name = r.value.slice(0, i);
      const value = r.value.slice(i + 1).replace(/^[ \t]+/, '');
      if (r.tag === 'ReqHeader') headers.push([name, value]);
      else {
        const at = headers.findIndex(([n, v]) => n.toLowerCase() === name.toLowerCase() && v === value);
        if (at >= 0) headers.splice(at, 1);
      }
      if (r.value.length >= VSL_MAX_VALUE) notes.push(`header ${name} may be truncated (${r.value.length} bytes logged)`);
    }
  }
  if (!sawVcl) {
    if (!tx.complete) return 'incomplete group: its headers were not all logged';
    notes.push('no VCL_call: the headers may be incomplete');
  }
  dropRecorderForwardedFor(headers, first(tx, 'ReqStart')?.split(' ')[0]);
  if (url.length >= VSL_MAX_VALUE) notes.push(`url may be truncated (${url.length} bytes logged, vsl_reclen cuts at ${VSL_MAX_VALUE})`);

  // Follow restarts to the request whose response the client got.
  let final = tx;
  const seen = new Set<VslTx>([tx]);
  for (;;) {
    const next = final.children.find((c) => c.type === 'Request' && c.reason === 'restart');
    if (next === undefined || seen.has(next)) break;
    seen.add(next);
    final = next;
    notes.push(`restarted into request ${next.vxid}`);
  }
  if (!tx.complete || !final.complete) notes.push('incomplete group: recorded status and outcome may be missing');

  const status = last(final, 'RespStatus');
  const acct = (last(final, 'ReqAcct') ?? '').split(' ').map(Number);
  const clen = headers.find(([n]) => n.toLowerCase() === 'content-length')?.[1];
  const bodyBytes = Number.isFinite(acct[1]) ? (acct[1] as number) : clen !== undefined && /^\d+$/.test(clen) ? Number(clen) : 0;
  const start = timestamp(tx, 'Start') ?? timestamp(tx, 'Req');
  const process = timestamp(final, 'Process');
  const { outcome, detail } = classify(final);
  return {
    seq: 0,
    ref,
    startMs: start === undefined ? undefined : start[0] * 1000,
    method,
    url,
    protocol: first(tx, 'ReqProtocol') ?? 'HTTP/1.1',
    headers,
    bodyBytes,
    session: tx.parentVxid === undefined || tx.parentVxid === 0 ? undefined : String(tx.parentVxid),
    recorded: {
      status: status === undefined ? undefined : Number(status),
      outcome,
      detail,
      ttfbMs: process === undefined || final !== tx ? undefined : process[1] * 1000,
      bodyBytes: Number.isFinite(acct[4]) ? acct[4] : undefined,
    },
    notes,
  };
}

/**
 * Varnish (and Sluice) log the X-Forwarded-For they add as the last header before VCL runs (FORMAT.md §5.3). Undo
 * it: drop it when it is the client's address alone, or cut the address off a list the client had sent.
 */
function dropRecorderForwardedFor(headers: Array<[string, string]>, clientIp: string | undefined): void {
  if (clientIp === undefined) return;
  for (let i = headers.length - 1; i >= 0; i--) {
    const [name, value] = headers[i] as [string, string];
    if (name.toLowerCase() !== 'x-forwarded-for') continue;
    if (value === clientIp) headers.splice(i, 1);
    else if (value.endsWith(`, ${clientIp}`)) headers[i] = [name, value.slice(0, -(clientIp.length + 2))];
    return;
  }
}

/** FORMAT.md §5.2: the first lookup or VCL decision decides the class. */
export function classify(t: VslTx): { outcome: Outcome; detail?: string | undefined } {
  const waited = timestamp(t, 'Waitinglist') !== undefined;
  for (const r of t.records) {
    switch (r.tag) {
      case 'Hit': {
        const ttl = Number(r.value.split(' ')[1]);
        return { outcome: 'hit', detail: ttl < 0 ? 'grace' : waited ? 'waitinglist' : undefined };
      }
      case 'HitMiss':
        return { outcome: 'miss', detail: 'hit-for-miss' };
      case 'HitPass':
        return { outcome: 'pass', detail: 'hit-for-pass' };
      case 'VCL_call':
        if (r.value === 'MISS') return { outcome: 'miss' };
        if (r.value === 'PASS') return { outcome: 'pass' };
        if (r.value === 'PIPE') return { outcome: 'pipe' };
        if (r.value === 'SYNTH') return { outcome: 'synth' };
        break;
      case 'Link':
        if (r.value.startsWith('bereq ') && r.value.endsWith(' pipe')) return { outcome: 'pipe' };
        break;
    }
  }
  // A sliced request (Sluice): a hit when every segment subrequest was one, else a miss.
  const segments = t.children.filter((c) => c.type === 'Request' && c.reason === 'slice');
  if (segments.length > 0) return { outcome: segments.every((c) => classify(c).outcome === 'hit') ? 'hit' : 'miss', detail: 'slice' };
  return { outcome: 'unknown' };
}

/** Arrival order (blocks come in completion order); requests without a Start keep their place after the previous one. */
function ordered(reqs: ReplayRequest[]): ReplayRequest[] {
  let prev: number | undefined;
  const keyed = reqs.map((r, i) => {
    if (r.startMs !== undefined) prev = r.startMs;
    return { r, k: r.startMs ?? prev ?? 0, i };
  });
  keyed.sort((a, b) => a.k - b.k || a.i - b.i);
  return keyed.map(({ r }, i) => ({ ...r, seq: i + 1 }));
}

// --- NCSA combined log -------------------------------------------------------------------------------------------

const NCSA = /^(\S+) \S+ (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}|-) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?/;
const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/** `21/Nov/2026:21:05:18 +0000` → epoch ms. */
function ncsaTime(s: string): number | undefined {
  const m = /^(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
  if (m === null || MONTHS[m[2] as string] === undefined) return undefined;
  const utc = Date.UTC(Number(m[3]), MONTHS[m[2] as string] as number, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  const off = (Number(m[8]) * 60 + Number(m[9])) * 60_000 * (m[7] === '-' ? -1 : 1);
  return utc - off;
}

/**
 * `varnishncsa` / Apache combined format: `host - user [time] "METHOD URL PROTO" status bytes "referer" "ua"`.
 * varnishncsa prints the URL absolute (`http://host/path`); its host becomes the Host header (`localhost` is what
 * varnishncsa prints when there was none, so no Host is sent then). The log has no cache outcome and times to the
 * second.
 */
export function parseNcsa(text: string, name = 'log'): Trace {
  const requests: ReplayRequest[] = [];
  const skipped: Skipped[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '');
    if (line.trim() === '') continue;
    const ref = `${name} line ${i + 1}`;
    const m = NCSA.exec(line);
    if (m === null) {
      skipped.push({ ref, reason: 'not an NCSA combined log line' });
      continue;
    }
    const reqLine = (m[4] as string).replace(/\\(.)/g, '$1');
    const parts = reqLine.split(' ');
    if (parts.length < 2 || parts.length > 3) {
      skipped.push({ ref, reason: `request line ${JSON.stringify(reqLine.slice(0, 60))} is not METHOD URL [PROTOCOL]` });
      continue;
    }
    const [method, target, protocol = 'HTTP/1.0'] = parts as [string, string, string?];
    const headers: Array<[string, string]> = [];
    let url = target;
    const abs = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
    const notes: string[] = [];
    if (abs !== null) {
      url = abs[2] === '' ? '/' : (abs[2] as string);
      if (abs[1] === 'localhost') notes.push('varnishncsa host "localhost": the request may have had no Host header; none is sent');
      else headers.push(['Host', abs[1] as string]);
    }
    const referer = m[7];
    const ua = m[8];
    if (referer !== undefined && referer !== '-') headers.push(['Referer', referer.replace(/\\(.)/g, '$1')]);
    if (ua !== undefined && ua !== '-') headers.push(['User-Agent', ua.replace(/\\(.)/g, '$1')]);
    notes.push('NCSA log: only Host, Referer and User-Agent are known; times are to the second');
    requests.push({
      seq: requests.length + 1,
      ref,
      startMs: ncsaTime(m[3] as string),
      method,
      url,
      protocol,
      headers,
      bodyBytes: 0,
      recorded: {
        status: m[5] === '-' ? undefined : Number(m[5]),
        outcome: 'unknown',
        bodyBytes: m[6] === '-' ? undefined : Number(m[6]),
      },
      notes,
    });
  }
  return { format: 'ncsa', requests: ordered(requests), skipped };
}
