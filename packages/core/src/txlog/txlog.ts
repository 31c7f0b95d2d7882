import type { HeaderMap } from '../http/headers.js';

/**
 * The transaction log, after Varnish's VSL. Every client request and backend fetch is a transaction with an id
 * (vxid), `Begin` and `End` records, `Link` records tying a request to its fetch, and `Timestamp` records giving
 * absolute time, time since the transaction started and time since the previous timestamp (seconds, 6 decimals).
 * A request is handed to the sinks as one group (`varnishlog -g request`) once it and every fetch it started have
 * ended, so a background fetch's records join the request that started it.
 *
 * Record tags used (the same names and value layouts as varnishlog; shared/varnishlog/FORMAT.md describes them):
 *   Request: Begin, Timestamp, ReqStart, ReqMethod, ReqURL, ReqProtocol, ReqHeader, VCL_call, VCL_return, Hit,
 *            HitMiss, HitPass, Link, RespProtocol, RespStatus, RespReason, RespHeader, ReqAcct, End
 *   BeReq:   Begin, Timestamp, BereqMethod, BereqURL, BereqProtocol, BereqHeader, VCL_call, VCL_return,
 *            BerespProtocol, BerespStatus, BerespReason, BerespHeader, TTL, Storage, FetchError, Length, End
 */
export type TxType = 'Request' | 'BeReq';

export interface TxRecord {
  tag: string;
  value: string;
}

export class Transaction {
  readonly records: TxRecord[] = [];
  readonly children: Transaction[] = [];
  ended = false;
  private readonly startMs: number;
  private lastMs: number;

  constructor(
    private readonly log: TxLog,
    readonly vxid: number,
    readonly type: TxType,
    readonly parent: Transaction | undefined,
    begin: string,
  ) {
    this.startMs = log.now();
    this.lastMs = this.startMs;
    this.add('Begin', begin);
  }

  add(tag: string, value: string): void {
    if (!this.ended) this.records.push({ tag, value });
  }

  /** `Timestamp  Label: abs since-start since-last` (seconds). */
  timestamp(label: string): void {
    const now = this.log.now();
    this.add('Timestamp', `${label}: ${(now / 1000).toFixed(6)} ${((now - this.startMs) / 1000).toFixed(6)} ${((now - this.lastMs) / 1000).toFixed(6)}`);
    this.lastMs = now;
  }

  headers(tag: string, headers: HeaderMap): void {
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) this.add(tag, `${k}: ${one}`);
    }
  }

  end(): void {
    if (this.ended) return;
    this.add('End', '');
    this.ended = true;
    this.log.ended(this);
  }
}

/** Receives complete request groups. */
export interface TxSink {
  write(root: Transaction): void;
}

export class TxLog {
  private nextVxid = 1;
  readonly now: () => number;

  constructor(
    private readonly sinks: TxSink[],
    now: () => number = Date.now,
  ) {
    this.now = now;
  }

  beginRequest(sessionId: number, reason = 'rxreq'): Transaction {
    return new Transaction(this, this.nextVxid++, 'Request', undefined, `req ${sessionId} ${reason}`);
  }

  /** A backend fetch started by `parent` (reason: fetch, bgfetch, pass). */
  beginBereq(parent: Transaction, reason: string): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'BeReq', parent, `bereq ${parent.vxid} ${reason}`);
    parent.children.push(t);
    return t;
  }

  /** Called by a transaction when it ends: emits its group once the whole group has ended. */
  ended(t: Transaction): void {
    let root = t;
    while (root.parent !== undefined) root = root.parent;
    if (!allEnded(root)) return;
    for (const s of this.sinks) s.write(root);
  }
}

function allEnded(t: Transaction): boolean {
  return t.ended && t.children.every(allEnded);
}

/** `varnishlog -g request` text for one group: header line, then records, children nested one level deeper. */
export function formatVarnishlog(root: Transaction): string {
  let out = '';
  const walk = (t: Transaction, level: number): void => {
    const stars = level <= 3 ? '*'.repeat(level).padEnd(3) : `*${level}*`;
    const dashes = level <= 3 ? '-'.repeat(level).padEnd(3) : `-${level}-`;
    out += `${stars} << ${t.type.padEnd(8)} >> ${String(t.vxid).padEnd(10)}\n`;
    for (const r of t.records) out += `${dashes} ${r.tag.padEnd(14)} ${r.value}\n`;
    for (const c of t.children) walk(c, level + 1);
  };
  walk(root, 1);
  return `${out}\n`;
}

/** One JSON object per group: {vxid, type, records: [[tag, value], ...], children: [...]}. */
export function formatNdjson(root: Transaction): string {
  const obj = (t: Transaction): unknown => ({
    vxid: t.vxid,
    type: t.type,
    records: t.records.map((r) => [r.tag, r.value]),
    children: t.children.map(obj),
  });
  return `${JSON.stringify(obj(root))}\n`;
}

/** Keeps groups in memory (tests assert on records, not on text). */
export class MemorySink implements TxSink {
  readonly groups: Transaction[] = [];
  write(root: Transaction): void {
    this.groups.push(root);
  }
}

/**
 * Writes groups as text or NDJSON to a writable (stdout, a file). Groups are buffered and written once per turn of
 * the event loop (or at 64 KiB), so a busy proxy makes one write for many requests instead of one each.
 */
export class StreamSink implements TxSink {
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;

  constructor(
    private readonly out: { write(s: string): unknown },
    private readonly format: 'text' | 'ndjson',
  ) {}

  write(root: Transaction): void {
    const s = this.format === 'text' ? formatVarnishlog(root) : formatNdjson(root);
    this.pending.push(s);
    this.pendingBytes += s.length;
    if (this.pendingBytes >= 64 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const chunk = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    this.out.write(chunk);
  }
}
