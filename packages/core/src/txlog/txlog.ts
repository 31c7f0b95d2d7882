import { formatNcsa } from './ncsa.js';
import type { HeaderMap } from '../http/headers.js';
import { isSecretField, maskHeaderLine, maskSecret } from './secrets.js';

/**
 * The transaction log, after Varnish's VSL. Every client request and backend fetch is a transaction with an id
 * (vxid), `Begin` and `End` records, `Link` records tying a request to its fetch, and `Timestamp` records giving
 * absolute time, time since the transaction started and time since the previous timestamp (seconds, 6 decimals).
 * A request is handed to the sinks as one group (`varnishlog -g request`) once it and every fetch it started have
 * ended, so a background fetch's records join the request that started it.
 *
 * The records, their values and where they differ from Varnish 7.1 are listed in docs/txlog.md.
 */
export type TxType = 'Session' | 'Request' | 'BeReq';

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

export class Transaction {
  readonly records: TxRecord[] = [];
  readonly children: Transaction[] = [];
  ended = false;
  /** Order in which transactions ended (`-g vxid` prints them so). */
  endSeq = 0;
  /** For a client request: its session's vxid (0 when none was logged). */
  sessionVxid = 0;
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
    // `Start` is the moment the transaction began, so its since-start is 0, as in Varnish.
    const now = label === 'Start' ? this.startMs : this.log.now();
    this.add('Timestamp', `${label}: ${seconds6(now)} ${seconds6(now - this.startMs)} ${seconds6(now - this.lastMs)}`);
    this.lastMs = now;
  }

  /** Header records (`name: value`); credentials masked unless the log says `logSecrets` (txlog/secrets.ts). */
  headers(tag: string, headers: HeaderMap): void {
    const mask = !this.log.logSecrets;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      const secret = mask && isSecretField(k);
      for (const one of Array.isArray(v) ? v : [v]) this.add(tag, `${k}: ${secret ? maskSecret(k, one) : one}`);
    }
  }

  /** Header records from a serialised block (`name: value\r\n` lines), as the hit path holds them. */
  headerBlock(tag: string, block: string): void {
    let start = 0;
    for (let i = block.indexOf('\r\n'); i >= 0; i = block.indexOf('\r\n', start)) {
      if (i > start) this.add(tag, this.log.logSecrets ? block.slice(start, i) : maskHeaderLine(block.slice(start, i)));
      start = i + 2;
    }
  }

  end(): void {
    if (this.ended) return;
    this.add('End', '');
    this.ended = true;
    this.log.ended(this);
  }
}

/** Receives complete request groups, and session transactions when they end. */
export interface TxSink {
  write(root: Transaction): void;
  session?(t: Transaction): void;
  /** False while the sink wants nothing (a live tail with no one attached); undefined = always active. */
  readonly active?: boolean;
}

/** Settings of a TxLog. */
export interface TxLogOptions {
  /** Clock in epoch ms (default: the high-resolution clock). */
  now?: (() => number) | undefined;
  /**
   * Log Authorization, Proxy-Authorization, Cookie and Set-Cookie values as they are (default false: masked,
   * `Basic ***`, `sid=***`; see txlog/secrets.ts).
   */
  logSecrets?: boolean | undefined;
}

export class TxLog {
  private nextVxid = 1;
  readonly now: () => number;
  /** Whether credentials are logged as they are (else masked). */
  readonly logSecrets: boolean;

  /** `opts` may be the clock alone (as before the options existed). */
  constructor(
    private readonly sinks: TxSink[],
    opts: TxLogOptions | (() => number) = {},
  ) {
    const o = typeof opts === 'function' ? { now: opts } : opts;
    this.now = o.now ?? (() => performance.timeOrigin + performance.now());
    this.logSecrets = o.logSecrets === true;
  }

  private endCount = 0;

  /** Whether any sink wants records now; the proxy builds none when this is false. */
  get enabled(): boolean {
    for (const s of this.sinks) if (s.active !== false) return true;
    return false;
  }

  /**
   * A client connection (`Begin sess 0 HTTP/1`, `SessOpen`); the caller ends it with `SessClose` when it closes.
   * Its requests name it in their `Begin` and it links to each (`Link req N rxreq`), but request groups do not
   * contain it (as `varnishlog -g request`).
   */
  beginSession(open: { remoteAddress: string; remotePort: number; localAddress: string; localPort: number; openedMs: number }): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'Session', undefined, 'sess 0 HTTP/1');
    t.add('SessOpen', `${open.remoteAddress} ${open.remotePort} a0 ${open.localAddress} ${open.localPort} ${(open.openedMs / 1000).toFixed(6)} 0`);
    return t;
  }

  /** A client request on `session` (a vxid, or the Session transaction, which then links to it). */
  beginRequest(session: Transaction | number, reason = 'rxreq'): Transaction {
    const sessVxid = typeof session === 'number' ? session : session.vxid;
    const t = new Transaction(this, this.nextVxid++, 'Request', undefined, `req ${sessVxid} ${reason}`);
    t.sessionVxid = sessVxid;
    if (typeof session !== 'number') session.add('Link', `req ${t.vxid} ${reason}`);
    return t;
  }

  /** A request made by `parent` itself (reason: slice), printed one level below it in its group. */
  beginSubrequest(parent: Transaction, reason: string): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'Request', parent, `req ${parent.vxid} ${reason}`);
    parent.children.push(t);
    parent.add('Link', `req ${t.vxid} ${reason}`);
    return t;
  }

  /**
   * The request `old` restarted into (`Link req N restart` on the old one, `Begin req <old> restart`): a child of the
   * old transaction in the group, printed at the same level as it (as varnishlog does).
   */
  beginRestart(old: Transaction): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'Request', old, `req ${old.vxid} restart`);
    t.sessionVxid = old.sessionVxid;
    old.add('Link', `req ${t.vxid} restart`);
    old.children.push(t);
    return t;
  }

  /** A backend fetch started by `parent` (reason: fetch, bgfetch, pass). */
  beginBereq(parent: Transaction, reason: string): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'BeReq', parent, `bereq ${parent.vxid} ${reason}`);
    parent.children.push(t);
    return t;
  }

  /** Called by a transaction when it ends: emits its group once the whole group has ended. */
  ended(t: Transaction): void {
    t.endSeq = ++this.endCount;
    if (t.type === 'Session') {
      for (const s of this.sinks) s.session?.(t);
      return;
    }
    let root = t;
    while (root.parent !== undefined) root = root.parent;
    if (!allEnded(root)) return;
    for (const s of this.sinks) s.write(root);
  }
}

function allEnded(t: Transaction): boolean {
  return t.ended && t.children.every(allEnded);
}

/** What the formatters need of a transaction (a live Transaction, or one read back from NDJSON). */
export interface TxView {
  vxid: number;
  type: string;
  records: readonly TxRecord[];
  children: readonly TxView[];
  endSeq?: number;
}

/**
 * `request`: one block per client request with its fetches nested (`varnishlog -g request`); `vxid`: one per
 * transaction; `session`: one per client connection, its requests and their fetches nested, printed when it closes.
 */
export type TxGrouping = 'request' | 'vxid' | 'session';

/**
 * `-g session`: holds each request group until its connection closes, then hands out the session with its requests
 * as children. At most `limit` groups are held per connection; past that they go out on their own (as varnishlog's
 * store overflow forces groups out). Requests whose connection was not logged go out at once.
 */
export class SessionGroups {
  private readonly held = new Map<number, Transaction[]>();

  constructor(
    private readonly emit: (v: TxView) => void,
    private readonly limit = 1000,
  ) {}

  request(root: Transaction): void {
    if (root.sessionVxid === 0) return this.emit(root);
    let list = this.held.get(root.sessionVxid);
    if (list === undefined) this.held.set(root.sessionVxid, (list = []));
    list.push(root);
    if (list.length >= this.limit) {
      for (const g of list) this.emit(g);
      list.length = 0;
    }
  }

  session(t: Transaction): void {
    const list = this.held.get(t.vxid) ?? [];
    this.held.delete(t.vxid);
    this.emit({ vxid: t.vxid, type: t.type, records: t.records, children: list, endSeq: t.endSeq });
  }
}

/** Per nesting level, each tag's line prefix (`--  BerespStatus   `): built once, not per record. */
const prefixes: Array<Map<string, string>> = [];

function txBlock(t: TxView, level: number): string {
  const stars = level <= 3 ? '*'.repeat(level).padEnd(3) : `*${level}*`;
  let cache = prefixes[level];
  if (cache === undefined) prefixes[level] = cache = new Map();
  let out = `${stars} << ${t.type.padEnd(8)} >> ${String(t.vxid).padEnd(10)}\n`;
  for (const r of t.records) {
    let prefix = cache.get(r.tag);
    if (prefix === undefined) {
      const dashes = level <= 3 ? '-'.repeat(level).padEnd(3) : `-${level}-`;
      cache.set(r.tag, (prefix = `${dashes} ${r.tag.padEnd(14)} `));
    }
    out += `${prefix}${r.value}\n`;
  }
  return out;
}

/**
 * varnishlog text for one group. `request`: header line, then records, children one level deeper, breadth-first as
 * varnishlog prints them. `vxid`: every transaction of the group as its own level-1 block, in the order they ended.
 */
export function formatVarnishlog(root: TxView, grouping: TxGrouping = 'request'): string {
  if (grouping === 'vxid') {
    const all: TxView[] = [];
    const collect = (t: TxView): void => {
      all.push(t);
      t.children.forEach(collect);
    };
    collect(root);
    all.sort((a, b) => (a.endSeq ?? 0) - (b.endSeq ?? 0));
    return all.map((t) => `${txBlock(t, 1)}\n`).join('');
  }
  // Breadth-first by tree depth; a restarted request is a child of the one it restarted but printed at that one's
  // level (vsl_dispatch.c: "Restarts stay at the same level as parent").
  let out = '';
  let level: Array<{ t: TxView; stars: number }> = [{ t: root, stars: 1 }];
  while (level.length > 0) {
    const next: Array<{ t: TxView; stars: number }> = [];
    for (const { t, stars } of level) {
      out += txBlock(t, stars);
      for (const c of t.children) next.push({ t: c, stars: isRestart(c) ? stars : stars + 1 });
    }
    level = next;
  }
  return `${out}\n`;
}

/** A request begun by a restart (`Begin req <old> restart`). */
function isRestart(t: TxView): boolean {
  const begin = t.records[0];
  return t.type === 'Request' && begin !== undefined && begin.tag === 'Begin' && begin.value.endsWith(' restart');
}

/** One JSON object per group: {vxid, type, records: [[tag, value], ...], children: [...]}. */
export function formatNdjson(root: TxView): string {
  return `${JSON.stringify(toJson(root))}\n`;
}

function toJson(t: TxView): unknown {
  return { vxid: t.vxid, type: t.type, records: t.records.map((r) => [r.tag, r.value]), children: t.children.map(toJson) };
}

/** The inverse of formatNdjson for one line; undefined when the line is not a group. */
export function parseNdjsonGroup(line: string): TxView | undefined {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return undefined;
  }
  const walk = (x: unknown, seq: { n: number }): TxView | undefined => {
    const g = x as { vxid?: unknown; type?: unknown; records?: unknown; children?: unknown } | null;
    if (typeof g !== 'object' || g === null || typeof g.vxid !== 'number' || !Array.isArray(g.records)) return undefined;
    const children: TxView[] = [];
    for (const c of Array.isArray(g.children) ? g.children : []) {
      const v = walk(c, seq);
      if (v !== undefined) children.push(v);
    }
    return {
      vxid: g.vxid,
      type: typeof g.type === 'string' ? g.type : 'Unknown',
      records: (g.records as unknown[]).filter(Array.isArray).map((r) => ({ tag: String((r as unknown[])[0]), value: String((r as unknown[])[1] ?? '') })),
      children,
      // Children end before their parent (a request group is emitted when its last fetch ends).
      endSeq: ++seq.n,
    };
  };
  return walk(o, { n: 0 });
}

/** Keeps groups in memory (tests assert on records, not on text). */
export class MemorySink implements TxSink {
  readonly groups: Transaction[] = [];
  readonly sessions: Transaction[] = [];
  write(root: Transaction): void {
    this.groups.push(root);
  }
  session(t: Transaction): void {
    this.sessions.push(t);
  }
}

/**
 * Writes groups as text or NDJSON to a writable (stdout, a file). Groups are buffered and written every 20 ms (or at
 * 64 KiB), so a busy proxy makes one write for many requests instead of one each; `flush` writes what is pending.
 */
export class StreamSink implements TxSink {
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;

  private readonly sessions: SessionGroups | undefined;

  constructor(
    private readonly out: { write(s: string): unknown },
    private readonly format: 'text' | 'ndjson' | 'ncsa',
    private readonly grouping: TxGrouping = 'request',
  ) {
    this.sessions = grouping === 'session' ? new SessionGroups((v) => this.emit(v)) : undefined;
  }

  /** Sessions: their own block with `-g vxid`, the root of their block with `-g session`, not shown with `-g request`. */
  session(t: Transaction): void {
    // An access log has a line per request, none per connection.
    if (this.format === 'ncsa') return;
    if (this.sessions !== undefined) this.sessions.session(t);
    else if (this.grouping === 'vxid') this.emit(t);
  }

  write(root: Transaction): void {
    if (this.format === 'ncsa') this.emit(root);
    else if (this.sessions !== undefined) this.sessions.request(root);
    else this.emit(root);
  }

  private emit(root: TxView): void {
    const s = this.format === 'text' ? formatVarnishlog(root, this.grouping) : this.format === 'ncsa' ? formatNcsa(root) : formatNdjson(root);
    this.pending.push(s);
    this.pendingBytes += s.length;
    if (this.pendingBytes >= 64 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 20).unref();
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
