import { ByteWriter } from './bytes.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';
import { formatNcsa } from './ncsa.js';
import type { TxGrouping, TxView } from './format.js';
import type { HeaderMap } from '../http/headers.js';
import { blockRun, decodeRaw, joinRuns, pushHeaders, RAW_ACCT, RAW_BEGIN, RAW_BLOCK, RAW_HIT, RAW_LINKS, RAW_RUN, RAW_TIMESTAMP, RAW_WORDS, type RawRecords, RecordRun, type RequestRunCache, type TxRecord } from './raw.js';

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

export type { TxRecord } from './raw.js';
export { seconds6 } from './raw.js';
export { formatNdjson, formatVarnishlog, type TxGrouping, type TxView } from './format.js';

export class Transaction {
  /**
   * The records as appended on the request path (txlog/raw.ts: flat, numbers kept as numbers, header blocks unsplit);
   * `records` gives them as tag and value.
   */
  readonly raw: RawRecords = [];
  /** `records` once the transaction has ended (its records no longer change). */
  private decoded: TxRecord[] | undefined;
  readonly children: Transaction[] = [];
  ended = false;
  /** Order in which transactions ended (`-g vxid` prints them so). */
  endSeq = 0;
  /** For a client request: its session's vxid (0 when none was logged). */
  sessionVxid = 0;
  /** For a client request: its connection's Session transaction, when one was logged. */
  session: Transaction | undefined;
  /** For a Session: its last request as logged, and that request's records as a run once it recurs (raw.ts). */
  requestRuns: RequestRunCache | undefined;
  private readonly startMs: number;

  /** `word`, `of` and `reason` are the Begin record's three words (`req 1 rxreq`). */
  constructor(
    private readonly log: TxLog,
    readonly vxid: number,
    readonly type: TxType,
    readonly parent: Transaction | undefined,
    word: string,
    of: number,
    reason: string,
  ) {
    this.startMs = log.now();
    this.raw.push(RAW_BEGIN, word, of, reason, this.startMs);
  }

  /** The records as tag and value (built from `raw` when asked for: the formatters, tests, live filters). */
  get records(): TxRecord[] {
    if (this.decoded !== undefined) return this.decoded;
    const r = decodeRaw(this.raw);
    if (this.ended) this.decoded = r;
    return r;
  }

  /** Whether credentials are logged as they are (the log's setting). */
  get logSecrets(): boolean {
    return this.log.logSecrets;
  }

  add(tag: string, value: string): void {
    if (!this.ended) this.raw.push(tag, value);
  }

  /** A record of three words joined by spaces (`Link  req 5 rxreq`), joined when formatted. */
  words(tag: string, a: string | number, b: string | number, c: string | number): void {
    if (this.ended) return;
    if (tag !== 'Link' || typeof b !== 'number') {
      this.raw.push(RAW_WORDS, tag, a, b, c);
      return;
    }
    // A link right after a link of the same words joins its entry (raw.ts's RAW_LINKS).
    const raw = this.raw;
    const links = this.links;
    if (links !== undefined && this.linksEnd === raw.length && raw[raw.length - 3] === a && raw[raw.length - 2] === c) links.push(b);
    else raw.push(RAW_LINKS, a, c, (this.links = [b]));
    this.linksEnd = raw.length;
  }

  /** The middle words of the last RAW_LINKS entry, and the length `raw` had after it (it is last while they are equal). */
  private links: number[] | undefined;
  private linksEnd = -1;

  /** `Timestamp  Label: abs since-start since-last` (seconds; the differences are taken when formatted). */
  timestamp(label: string): void {
    // `Start` is the moment the transaction began, so its since-start is 0, as in Varnish.
    if (!this.ended) this.raw.push(RAW_TIMESTAMP, label, label === 'Start' ? this.startMs : this.log.now());
  }

  /**
   * `Timestamp  Label: ...` at the moment the transaction began (no clock read): a phase that ended as it began, such
   * as a client request's `Req` (its head was whole when its transaction began).
   */
  timestampAtStart(label: string): void {
    if (!this.ended) this.raw.push(RAW_TIMESTAMP, label, this.startMs);
  }

  /** Header records (`name: value`); credentials masked unless the log says `logSecrets` (txlog/secrets.ts). */
  headers(tag: string, headers: HeaderMap): void {
    if (!this.ended) pushHeaders(this.raw, tag, headers, !this.log.logSecrets);
  }

  /**
   * Header records from a serialised block (`name: value\r\n` lines), as the hit path holds them; split when formatted.
   * `stable`, when given, is a prefix of `block` ending at a line's end that recurs as it is (an object's stored
   * headers): its records are one run, made once per block (txlog/raw.ts).
   */
  headerBlock(tag: string, block: string, stable?: string): void {
    if (this.ended) return;
    const mask = !this.log.logSecrets;
    let from = 0;
    if (stable !== undefined && stable.length > 0 && stable.length <= block.length && stable.charCodeAt(stable.length - 1) === 10 && stable.charCodeAt(stable.length - 2) === 13) {
      this.run(blockRun(tag, stable, mask));
      from = stable.length;
    }
    // (A block that is all run has no lines left.)
    if (from < block.length) this.raw.push(RAW_BLOCK, tag, block, mask ? 1 : 0, from);
  }

  /** Records that recur as they are (txlog/raw.ts's RecordRun), as one entry; joined with a run just before it. */
  run(r: RecordRun): void {
    if (this.ended) return;
    const raw = this.raw;
    // Only a RAW_RUN entry holds a RecordRun.
    const last = raw[raw.length - 1];
    if (last instanceof RecordRun) {
      const j = joinRuns(last, r);
      if (j !== undefined) {
        raw[raw.length - 1] = j;
        return;
      }
    }
    raw.push(RAW_RUN, r);
  }

  /** `Hit  <fetch vxid> <ttl> <grace> <keep>` (seconds, 6 decimals when formatted). */
  hit(fetchVxid: number, ttlSec: number, graceSec: number, keepSec: number): void {
    if (!this.ended) this.raw.push(RAW_HIT, fetchVxid, ttlSec, graceSec, keepSec);
  }

  /** `ReqAcct`: request head and body bytes, response head and body bytes (the sums added when formatted). */
  acct(headBytes: number, bodyBytes: number, respHeadBytes: number, respBodyBytes: number): void {
    if (!this.ended) this.raw.push(RAW_ACCT, headBytes, bodyBytes, respHeadBytes, respBodyBytes);
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
    // performance.timeOrigin is a getter that calls into C++ each time; it never changes, so it is read once. The
    // global `performance` is itself a getter in Node 20 (a lazy property, never replaced): the object is taken once.
    const perf = performance;
    const origin = perf.timeOrigin;
    this.now = o.now ?? (() => origin + perf.now());
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
    const t = new Transaction(this, this.nextVxid++, 'Session', undefined, 'sess', 0, 'HTTP/1');
    t.add('SessOpen', `${open.remoteAddress} ${open.remotePort} a0 ${open.localAddress} ${open.localPort} ${(open.openedMs / 1000).toFixed(6)} 0`);
    return t;
  }

  /** A client request on `session` (a vxid, or the Session transaction, which then links to it). */
  beginRequest(session: Transaction | number, reason = 'rxreq'): Transaction {
    const sessVxid = typeof session === 'number' ? session : session.vxid;
    const t = new Transaction(this, this.nextVxid++, 'Request', undefined, 'req', sessVxid, reason);
    t.sessionVxid = sessVxid;
    if (typeof session !== 'number') {
      t.session = session;
      session.words('Link', 'req', t.vxid, reason);
    }
    return t;
  }

  /** A request made by `parent` itself (reason: slice), printed one level below it in its group. */
  beginSubrequest(parent: Transaction, reason: string): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'Request', parent, 'req', parent.vxid, reason);
    parent.children.push(t);
    parent.words('Link', 'req', t.vxid, reason);
    return t;
  }

  /**
   * The request `old` restarted into (`Link req N restart` on the old one, `Begin req <old> restart`): a child of the
   * old transaction in the group, printed at the same level as it (as varnishlog does).
   */
  beginRestart(old: Transaction): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'Request', old, 'req', old.vxid, 'restart');
    t.sessionVxid = old.sessionVxid;
    old.words('Link', 'req', t.vxid, 'restart');
    old.children.push(t);
    return t;
  }

  /** A backend fetch started by `parent` (reason: fetch, bgfetch, pass). */
  beginBereq(parent: Transaction, reason: string): Transaction {
    const t = new Transaction(this, this.nextVxid++, 'BeReq', parent, 'bereq', parent.vxid, reason);
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


/**
 * `-g session`: holds each request group until its connection closes, then hands out the session with its requests
 * as children. At most `limit` groups are held per connection; past that they go out on their own (as varnishlog's
 * store overflow forces groups out). Requests whose connection was not logged go out at once, and so does a group
 * that ends after its connection's Session was handed out (a background fetch outliving the connection: varnishlog
 * prints such late transactions on their own), never held.
 */
export class SessionGroups {
  private readonly held = new Map<number, Transaction[]>();

  constructor(
    private readonly emit: (v: TxView) => void,
    private readonly limit = 1000,
  ) {}

  request(root: Transaction): void {
    if (root.sessionVxid === 0 || root.session === undefined || root.session.ended) return this.emit(root);
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
    this.emit({ vxid: t.vxid, type: t.type, records: t.records, raw: t.raw, children: list, endSeq: t.endSeq });
  }
}

/**
 * Request groups in a block as a sink hands it out, for `log_dropped`: one, or for a `-g session` block its requests
 * plus the session itself.
 */
export function groupCount(v: TxView): number {
  return v.type === 'Session' ? 1 + v.children.length : 1;
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
 * Writes groups as text or NDJSON to a writable (stdout, a file). Off the request path, as Varnish's log is formatted
 * by its reader: an ended group is only queued; every 20 ms (or at 128 groups) the queue is formatted and written in
 * one write, so a busy proxy makes one write for many requests. `flush` formats and writes what is pending.
 */
export class StreamSink implements TxSink {
  private pending: TxView[] = [];
  private scheduled = false;

  private readonly sessions: SessionGroups | undefined;
  /** Request groups not written because `mayWrite` said no (counted as FileSink counts: groupCount). */
  dropped = 0;

  constructor(
    /** Given a Buffer for text and NDJSON (UTF-8), a string for the access log. */
    private readonly out: { write(s: string | Uint8Array): unknown },
    protected readonly format: 'text' | 'ndjson' | 'ncsa',
    protected readonly grouping: TxGrouping = 'request',
    /** False while the output holds too much (a pipe nobody reads): a block that goes out then is dropped. */
    private readonly mayWrite: () => boolean = () => true,
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

  /** Queues an ended group (its records no longer change). */
  private emit(root: TxView): void {
    if (!this.mayWrite()) {
      this.dropped += groupCount(root);
      return;
    }
    this.pending.push(root);
    if (this.pending.length >= 128) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 20).unref();
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const groups = this.pending;
    this.pending = [];
    this.writeGroups(groups);
  }

  /**
   * Formats the groups and writes them in one write: text and NDJSON as bytes (txlog/format-bytes.ts, the same bytes as
   * the string formatters), one Buffer per write; the access log as a string.
   */
  protected writeGroups(groups: readonly TxView[]): void {
    if (this.format !== 'ncsa') {
      const w = new ByteWriter(16 * 1024);
      for (const g of groups) {
        if (this.format === 'text') writeVarnishlog(w, g, this.grouping);
        else writeNdjson(w, g);
      }
      this.out.write(w.buf.subarray(0, w.n));
      return;
    }
    let chunk = '';
    for (const g of groups) chunk += formatNcsa(g);
    this.out.write(chunk);
  }
}
