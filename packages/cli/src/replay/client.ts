import net from 'node:net';
import tls from 'node:tls';
import type { Outcome, ReplayRequest } from './trace.js';

/** What the target answered. */
export interface Observed {
  status: number | undefined;
  outcome: Outcome;
  detail?: string | undefined;
  /** From sending the request to the first response byte. */
  ttfbMs: number | undefined;
  /** From sending the request to the last body byte. */
  totalMs: number | undefined;
  bodyBytes: number;
  /** Set when the exchange did not end cleanly: refused, timed out, cut mid-body. */
  error?: string | undefined;
}

/**
 * A small HTTP/1.1 client for replay that writes each request exactly as recorded: the request line, header names in
 * their case and order, no Host added when the recording had none (seq 34 of the sample is such a request). undici
 * cannot send that, so this is a raw socket. Connections are kept alive and reused unless the request or response
 * says `Connection: close`; a reused connection that fails before any response byte is retried once on a new one.
 */
export class ReplayClient {
  private readonly idle: net.Socket[] = [];
  private readonly all = new Set<net.Socket>();
  /** The connection of each recorded session, so requests that shared a connection share one again. */
  private readonly sessions = new Map<string, net.Socket>();
  private readonly busy = new Set<net.Socket>();
  /** Connections opened so far. */
  connections = 0;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs = 30_000,
    /** Set for an https:// target: TLS with SNI, the certificate verified unless `rejectUnauthorized` is false. */
    private readonly tlsOptions?: { servername: string; ca?: string | undefined; rejectUnauthorized: boolean },
  ) {}

  /** Sends `req`; `wire` is its serialised form when the caller prepared it (see serialise). */
  async send(req: ReplayRequest, wire?: Buffer): Promise<Observed> {
    const head = wire ?? serialise(req);
    const session = req.session;
    let reused: net.Socket | undefined;
    if (session !== undefined) {
      const s = this.sessions.get(session);
      if (s !== undefined && !s.destroyed && !this.busy.has(s)) reused = s;
    } else {
      reused = this.idle.pop();
    }
    let sock = reused ?? this.connect(session);
    let r = await this.exchange(sock, head, req);
    if (reused !== undefined && r.retryable === true) {
      sock = this.connect(session);
      r = await this.exchange(sock, head, req);
    }
    return r;
  }

  close(): void {
    for (const s of this.all) s.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  private connect(session: string | undefined): net.Socket {
    const t = this.tlsOptions;
    let s: net.Socket;
    if (t === undefined) s = net.connect({ host: this.host, port: this.port, noDelay: true });
    else {
      const opts: tls.ConnectionOptions = { host: this.host, port: this.port, rejectUnauthorized: t.rejectUnauthorized };
      // SNI carries names, not addresses (RFC 6066 §3).
      if (net.isIP(t.servername) === 0) opts.servername = t.servername;
      if (t.ca !== undefined) opts.ca = t.ca;
      s = tls.connect(opts);
      s.setNoDelay(true);
    }
    this.connections++;
    this.all.add(s);
    // The session's connection, unless it already has one that is busy (concurrent replay): then this one is spare.
    const own = session !== undefined && (this.sessions.get(session)?.destroyed ?? true);
    if (own) this.sessions.set(session, s);
    s.on('close', () => {
      this.all.delete(s);
      if (own && this.sessions.get(session) === s) this.sessions.delete(session);
      const i = this.idle.indexOf(s);
      if (i >= 0) this.idle.splice(i, 1);
    });
    s.on('error', () => undefined);
    return s;
  }

  private exchange(sock: net.Socket, head: Buffer, req: ReplayRequest): Promise<Observed & { retryable?: boolean }> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      let ttfb: number | undefined;
      const parser = new ResponseParser(req.method === 'HEAD');
      let settled = false;
      const finish = (o: Observed & { retryable?: boolean }, keep: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.off('data', onData);
        sock.off('close', onClose);
        sock.off('error', onError);
        this.busy.delete(sock);
        const owned = req.session !== undefined && this.sessions.get(req.session) === sock;
        if (keep && !sock.destroyed) {
          if (!owned) this.idle.push(sock);
        } else sock.destroy();
        resolve(o);
      };
      const observed = (error?: string): Observed => ({
        status: parser.status,
        ...outcomeOf(parser.headers),
        ttfbMs: ttfb,
        totalMs: error === undefined ? performance.now() - t0 : undefined,
        bodyBytes: parser.bodyBytes,
        error,
      });
      const onData = (d: Buffer): void => {
        ttfb ??= performance.now() - t0;
        let done: boolean;
        try {
          done = parser.feed(d);
        } catch (e: unknown) {
          finish(observed(`bad response: ${(e as Error).message}`), false);
          return;
        }
        if (done) {
          const close = parser.closeAfter || wantsClose(req);
          finish(observed(), !close && parser.leftover === 0);
        }
      };
      const onClose = (): void => {
        if (parser.endsAtClose && parser.status !== undefined) finish(observed(), false);
        else if (ttfb === undefined) finish({ ...observed('connection closed before a response'), retryable: true }, false);
        else finish(observed(parser.status === undefined ? 'connection closed in the response head' : `connection closed mid-body after ${parser.bodyBytes} bytes${parser.expected === undefined ? '' : ` of ${parser.expected}`}`), false);
      };
      const onError = (e: Error): void => {
        if (ttfb === undefined) finish({ ...observed(`connection failed: ${e.message}`), retryable: (e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' }, false);
      };
      const timer = setTimeout(() => finish(observed(`no complete response within ${this.timeoutMs} ms`), false), this.timeoutMs);
      this.busy.add(sock);
      sock.on('data', onData);
      sock.on('close', onClose);
      sock.on('error', onError);
      sock.write(head);
    });
  }
}

function wantsClose(req: ReplayRequest): boolean {
  const conn = req.headers.find(([n]) => n.toLowerCase() === 'connection')?.[1]?.toLowerCase() ?? '';
  if (conn.includes('close')) return true;
  return req.protocol === 'HTTP/1.0' && !conn.includes('keep-alive');
}

/** Request line, recorded headers and a made-up body of the recorded size (logs never keep body bytes). */
export function serialise(req: ReplayRequest): Buffer {
  let head = `${req.method} ${req.url} ${req.protocol}\r\n`;
  let chunked = false;
  let length: number | undefined;
  for (const [name, value] of req.headers) {
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding' && /chunked/i.test(value)) chunked = true;
    if (lower === 'content-length') length = Number(value);
    head += `${name}: ${value}\r\n`;
  }
  head += '\r\n';
  const n = chunked ? req.bodyBytes : Math.min(req.bodyBytes, length ?? 0);
  // Header values were logged as UTF-8 text; sending them as UTF-8 gives back the client's bytes.
  const headBuf = Buffer.from(head, 'utf8');
  if (n <= 0) return headBuf;
  const body = Buffer.alloc(n, 0x78);
  if (!chunked) return Buffer.concat([headBuf, body]);
  return Buffer.concat([headBuf, Buffer.from(`${n.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
}

/**
 * Response framing (RFC 9112 §6.3): no body for HEAD, 1xx, 204 and 304; chunked; Content-Length; else until close.
 * Interim 1xx responses are skipped. Body bytes are counted, not kept.
 */
class ResponseParser {
  status: number | undefined;
  headers: Record<string, string> = {};
  bodyBytes = 0;
  expected: number | undefined;
  closeAfter = false;
  endsAtClose = false;
  leftover = 0;
  private headBuf: Buffer = Buffer.alloc(0);
  private inHead = true;
  private chunk: ChunkCounter | undefined;

  constructor(private readonly isHead: boolean) {}

  /** Returns true once the response is complete. */
  feed(d: Buffer): boolean {
    if (this.inHead) {
      this.headBuf = this.headBuf.length === 0 ? d : Buffer.concat([this.headBuf, d]);
      const end = this.headBuf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.headBuf.length > 64 * 1024) throw new Error('response head over 64 KiB');
        return false;
      }
      const rest = this.headBuf.subarray(end + 4);
      this.parseHead(this.headBuf.subarray(0, end).toString('latin1'));
      this.headBuf = Buffer.alloc(0);
      if (this.status !== undefined && this.status >= 100 && this.status < 200 && this.status !== 101) {
        this.status = undefined;
        this.headers = {};
        return rest.length > 0 ? this.feed(rest) : false;
      }
      this.inHead = false;
      const s = this.status as number;
      if (this.isHead || s === 204 || s === 304 || (s >= 100 && s < 200)) {
        this.leftover = rest.length;
        return true;
      }
      const te = this.headers['transfer-encoding'];
      if (te !== undefined && /chunked/i.test(te)) this.chunk = new ChunkCounter();
      else if (this.headers['content-length'] !== undefined) this.expected = Number(this.headers['content-length']);
      else this.endsAtClose = true;
      if (this.expected === 0) {
        this.leftover = rest.length;
        return true;
      }
      return rest.length > 0 ? this.body(rest) : false;
    }
    return this.body(d);
  }

  private body(d: Buffer): boolean {
    if (this.chunk !== undefined) {
      const r = this.chunk.feed(d);
      this.bodyBytes += r.payload;
      this.leftover = r.leftover;
      return r.done;
    }
    if (this.expected !== undefined) {
      const take = Math.min(d.length, this.expected - this.bodyBytes);
      this.bodyBytes += take;
      this.leftover = d.length - take;
      return this.bodyBytes >= this.expected;
    }
    this.bodyBytes += d.length;
    return false;
  }

  private parseHead(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})/.exec(lines[0] ?? '');
    if (m === null) throw new Error(`status line ${JSON.stringify((lines[0] ?? '').slice(0, 60))}`);
    this.status = Number(m[2]);
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      this.headers[name] = this.headers[name] === undefined ? value : `${this.headers[name]}, ${value}`;
    }
    const conn = (this.headers['connection'] ?? '').toLowerCase();
    this.closeAfter = conn.includes('close') || (m[1] === '1.0' && !conn.includes('keep-alive'));
  }
}

/** Counts chunked payload bytes and finds the end (last chunk, trailers, CRLF). */
class ChunkCounter {
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  private line = '';
  private remaining = 0;

  feed(d: Buffer): { payload: number; done: boolean; leftover: number } {
    let payload = 0;
    let i = 0;
    while (i < d.length) {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, d.length - i);
        payload += take;
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 'data-crlf';
        continue;
      }
      const c = d[i++] as number;
      if (c !== 0x0a) {
        if (c !== 0x0d) this.line += String.fromCharCode(c);
        if (this.line.length > 4096) throw new Error('chunk line too long');
        continue;
      }
      const line = this.line;
      this.line = '';
      if (this.state === 'data-crlf') {
        this.state = 'size';
      } else if (this.state === 'size') {
        const size = parseInt(line.split(';')[0] ?? '', 16);
        if (!Number.isFinite(size) || size < 0) throw new Error(`bad chunk size ${JSON.stringify(line.slice(0, 20))}`);
        if (size === 0) this.state = 'trailer';
        else {
          this.remaining = size;
          this.state = 'data';
        }
      } else if (line === '') {
        return { payload, done: true, leftover: d.length - i };
      }
    }
    return { payload, done: false, leftover: 0 };
  }
}

/**
 * The target's cache outcome from its response headers: RFC 9211 Cache-Status (Sluice and others; the last entry is
 * the target's own), else an `X-Cache` header (hit / miss / uncacheable as the sample VCL sets it), else Varnish's
 * `X-Varnish` (two vxids = hit).
 */
export function outcomeOf(h: Record<string, string>): { outcome: Outcome; detail?: string | undefined } {
  const cs = h['cache-status'];
  if (cs !== undefined) {
    const entry = cs.split(',').pop() ?? '';
    const params = new Map<string, string>();
    for (const p of entry.split(';').slice(1)) {
      const [k, v = ''] = p.trim().split('=');
      if (k !== undefined && k !== '') params.set(k.toLowerCase(), v.replace(/^"|"$/g, ''));
    }
    const detail = params.get('detail');
    if (params.has('hit')) return { outcome: 'hit', detail };
    if (detail === 'synth' || detail === 'purge') return { outcome: 'synth', detail };
    if (detail === 'pipe') return { outcome: 'pipe', detail };
    if (detail === 'pass' || detail === 'hit-for-pass' || detail === 'pinned') return { outcome: 'pass', detail };
    const fwd = params.get('fwd');
    if (fwd === 'bypass' || fwd === 'method') return { outcome: 'pass', detail: detail ?? fwd };
    // uri-miss and miss are plain misses; vary-miss, stale (revalidation) and request say more.
    if (fwd !== undefined) return { outcome: 'miss', detail: detail ?? (fwd === 'miss' || fwd === 'uri-miss' ? undefined : fwd) };
  }
  const xc = h['x-cache']?.toLowerCase();
  if (xc !== undefined) {
    if (xc.startsWith('hit')) return { outcome: 'hit' };
    if (xc.startsWith('miss')) return { outcome: 'miss' };
    if (xc.includes('pass') || xc.includes('uncacheable')) return { outcome: 'pass', detail: 'uncacheable' };
  }
  const xv = h['x-varnish'];
  if (xv !== undefined && xv.trim().split(/\s+/).length === 2) return { outcome: 'hit' };
  return { outcome: 'unknown' };
}
