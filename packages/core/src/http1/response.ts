import http from 'node:http';
import type { Socket } from 'node:net';
import type { HeaderMap } from '../http/headers.js';
import { ProxyError } from '../errors.js';
import { FetchAbort, type AbortWatch } from '../cache/fetch-abort.js';
import { serializeHeaders } from './serialize-headers.js';

export { serializeHeaders };

/**
 * The response to one request on an HTTP/1.1 connection. It owns framing: Content-Length when the length is known,
 * chunked when it is not (HTTP/1.1), close-delimited for HTTP/1.0. Nothing is sent until the first write, end or
 * flushHeaders, so headers and the first bytes leave in one segment.
 *
 * Lifecycle: created -> headers set (writeHead) -> head sent -> body written -> finished (end) | destroyed.
 * `signal` aborts when the connection closes before the response finished (the client went away).
 */
const REASONS = http.STATUS_CODES;

/** Responses up to this size (head and body) are joined into one Buffer for one write (see joinSmall). */
const JOIN_MAX_BYTES = 16 * 1024;

/** Most interim responses forwarded before one final response (an origin could send any number). */
const MAX_INTERIM = 8;

export interface ResponseOwner {
  readonly socket: Socket;
  /** Whether the request body is still unread: the connection will close after this response. */
  requestBodyPending(): boolean;
  /** The response ended cleanly; the connection may serve the next request. */
  responseFinished(res: Http1Response): void;
  /** Longest wait for the client to take any byte while the socket buffer is full; then the connection is cut. */
  readonly sendTimeoutMs: number;
  /** `keep-alive: timeout=N\r\n` for persistent responses, or empty. */
  readonly keepAliveLine: string;
  /** Writes a whole response's bytes, in order; nothing of that response follows (see Connection.writeWhole). */
  writeWhole(bytes: Buffer | readonly Buffer[]): void;
  /**
   * Releases `o` once every byte written to the socket so far has left it, or can no longer be read (socket closed):
   * at once when nothing is queued (the kernel took every byte), else when the queue has drained.
   */
  releaseWhenWritten(o: Held): void;
}

/** What a response writes the bytes of, not to be reused before they left (a cache object); `needsHold` false: no wait. */
export interface Held {
  hold(): void;
  release(): void;
  readonly needsHold: boolean;
}

export class Http1Response {
  statusCode = 0;
  headersSent = false;
  finished = false;
  /** Bytes of the response head written to the socket. */
  headerBytes = 0;
  /** Body bytes written (payload, without chunked framing). */
  bodyBytes = 0;
  /** When the head was handed to the socket (performance.now() ms), for time-to-first-byte; 0 until then. */
  headSentAtMs = 0;
  /** Bytes announced by Content-Length, when one was sent. */
  announcedLength: number | undefined;
  private head: string | undefined;
  private chunked = false;
  private bodyAllowed = true;
  private readonly owner: ResponseOwner;
  private readonly socket: Socket;
  private readonly isHead: boolean;
  readonly version: string;
  /** Whether the connection stays open afterwards; writeHead may turn it off. */
  keepAlive: boolean;
  /** Created on first use of `signal` / `abortWatch`: most hits never wait, and an AbortSignal costs ~6 us. */
  private ac: AbortController | undefined;
  private watch: FetchAbort | undefined;
  private closedEarly = false;
  private dropped = false; // set by abandon(): this response no longer owns the connection
  private interimSent = 0; // interim responses written so far
  /** Held for this response's writes (holdObject), released once they have left the socket: the first, and any more. */
  private held: Held | undefined;
  private heldMore: Held[] | undefined;

  /** The request asked for the connection to close (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly clientAskedClose: boolean;

  constructor(owner: ResponseOwner, opts: { isHead: boolean; version: string; keepAlive: boolean }) {
    this.clientAskedClose = !opts.keepAlive;
    this.owner = owner;
    this.socket = owner.socket;
    this.isHead = opts.isHead;
    this.version = opts.version;
    this.keepAlive = opts.keepAlive;
  }

  /** Whether status and headers are decided (writeHead was called), sent or not. */
  get committed(): boolean {
    return this.head !== undefined || this.headersSent;
  }

  /** Aborted when the client connection closes before this response finished. */
  get signal(): AbortSignal {
    if (this.ac === undefined) {
      this.ac = new AbortController();
      if (this.closedEarly) this.ac.abort(clientGone());
    }
    return this.ac.signal;
  }

  /** As `signal`, without an AbortSignal (cache/fetch-abort.ts): what a delivery's waits listen to (issue 16). */
  get abortWatch(): AbortWatch {
    if (this.watch === undefined) {
      this.watch = new FetchAbort();
      if (this.closedEarly) this.watch.abort(clientGone());
    }
    return this.watch;
  }

  /**
   * The connection took the exchange away (bad request-body framing; it answers by itself): the signal aborts and
   * every later write, head or end of this response is dropped.
   */
  abandon(): void {
    this.dropped = true;
    this.connectionClosed();
  }

  /** Holds `o` (a cache object: cache/slab-pool.ts) until what this response writes has left the socket, or it closed. */
  holdObject(o: Held): void {
    o.hold();
    if (this.held === undefined) this.held = o; // most responses hold one object (a hit's): a field, no list
    else (this.heldMore ??= []).push(o);
    if (this.finished || this.closedEarly) this.releaseHeld();
  }

  private releaseHeld(): void {
    // At end or close (nothing is written after): each is released once its bytes left, or at once (releaseWhenWritten).
    const first = this.held;
    if (first === undefined) return;
    const more = this.heldMore;
    this.held = this.heldMore = undefined;
    this.owner.releaseWhenWritten(first);
    if (more !== undefined) for (const o of more) this.owner.releaseWhenWritten(o);
  }

  /** Called by the connection when the socket closes. */
  connectionClosed(): void {
    this.releaseHeld();
    if (this.finished) return;
    this.closedEarly = true;
    this.ac?.abort(clientGone());
    this.watch?.abort(clientGone());
  }

  /**
   * Sends an interim response (RFC 9110 §15.2: 103 Early Hints) before the final one: only to HTTP/1.1 clients, only
   * while the final head is not decided, at most MAX_INTERIM per response. Framing fields are never sent on it.
   */
  writeInterim(status: number, headers: HeaderMap): void {
    if (this.dropped || this.committed || this.finished || this.version !== '1.1' || status < 102 || status > 199) return;
    if (this.interimSent++ >= MAX_INTERIM) return;
    const { 'content-length': _cl, 'transfer-encoding': _te, connection: _c, ...rest } = headers;
    let block: string;
    try {
      block = serializeHeaders(rest);
    } catch {
      return; // a field that would break framing: the hint is dropped, the final response is unaffected
    }
    this.socket.write(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Informational'}\r\n${block}\r\n`, 'latin1');
  }

  /** Sets status and headers, decides framing; content-length, the only framing field allowed, is exact. */
  writeHead(status: number, headers: HeaderMap): void {
    const { connection, ...rest } = headers;
    const cl = rest['content-length'];
    const close = connection !== undefined && /close/i.test(Array.isArray(connection) ? connection.join(',') : connection);
    if (cl !== undefined) delete rest['content-length'];
    let block = serializeHeaders(rest);
    if (typeof cl === 'string') block += `content-length: ${cl}\r\n`;
    this.writeHeadBlock(status, block, typeof cl === 'string' ? cl : undefined, close);
  }

  /** writeHead with a block of `name: value\r\n` lines validated by the caller (content-length in it when given). */
  writeHeadBlock(status: number, block: string, contentLength?: string, close = false): void {
    if (this.dropped) return;
    if (this.head !== undefined || this.headersSent) throw internal('writeHead called twice');
    this.statusCode = status;
    const noBodyStatus = status === 204 || status === 304 || (status >= 100 && status < 200);
    this.bodyAllowed = !(this.isHead || noBodyStatus);
    let framing = '';
    if (contentLength !== undefined && !noBodyStatus) {
      this.announcedLength = Number(contentLength);
    } else if (this.bodyAllowed) {
      if (this.version === '1.1') {
        this.chunked = true;
        framing = 'transfer-encoding: chunked\r\n';
      } else {
        // HTTP/1.0 without a length: the body ends when the connection closes.
        this.keepAlive = false;
      }
    }
    this.head = responseHead(status, `${block}${framing}`, this.persistenceLines(close));
    this.headerBytes = this.head.length;
  }

  /**
   * The lines that say whether the connection persists after this response (`connection: close`, the Keep-Alive
   * hint, or `connection: keep-alive` for HTTP/1.0), deciding it: keep-alive goes off when `close` is asked or the
   * request body is still unread. A response with Content-Length needs nothing else after its fields.
   */
  persistenceLines(close: boolean): string {
    if (close || this.owner.requestBodyPending()) this.keepAlive = false;
    if (!this.keepAlive) return 'connection: close\r\n';
    if (this.version === '1.0') return `connection: keep-alive\r\n${this.owner.keepAliveLine}`;
    return this.owner.keepAliveLine;
  }

  /** Whether endPrepared may answer: nothing decided or sent yet, and a body allowed (not a HEAD request). */
  get preparable(): boolean {
    return !this.dropped && !this.finished && this.head === undefined && !this.headersSent && !this.isHead;
  }

  /**
   * Ends the response with bytes the caller prepared (a cached object's hit: see deliver/head.ts): `bytes` is the
   * whole head (from responseHead, with the lines persistenceLines gave and Content-Length `contentLength`), followed
   * by the body when `body` is undefined, else the body is `body`'s chunks. One write or one writev, straight to the
   * socket's handle when nothing else is queued on it (the owner's writeWhole). Only while `preparable`, for a status
   * that has a body.
   */
  endPrepared(status: number, contentLength: number, bytes: Buffer, headBytes: number, body?: readonly Buffer[]): void {
    this.statusCode = status;
    this.announcedLength = contentLength;
    this.headerBytes = headBytes;
    this.bodyBytes += contentLength;
    this.headersSent = true;
    this.headSentAtMs = performance.now();
    this.owner.writeWhole(body === undefined ? bytes : [bytes, ...body]);
    this.finished = true;
    this.releaseHeld();
    this.owner.responseFinished(this);
  }

  /** Sends the head now (streaming responses: the client sees headers before the first body byte). */
  flushHeaders(): void {
    if (this.dropped || this.head === undefined || this.headersSent) return;
    this.socket.write(this.head, 'latin1');
    this.head = undefined;
    this.headersSent = true;
    this.headSentAtMs = performance.now();
  }

  // flushHeaders for a head that leaves under a cork with body Buffers: a Buffer too, so the writev is all Buffers
  // (with a string among them Node sizes, allocates and encodes separate storage for the strings on every writev).
  private flushHeadBuffer(): void {
    if (this.dropped || this.head === undefined || this.headersSent) return;
    this.socket.write(Buffer.from(this.head, 'latin1'));
    this.head = undefined;
    this.headersSent = true;
    this.headSentAtMs = performance.now();
  }

  /** Bytes written and not yet taken by the kernel (the socket's writable buffer). */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Writes body bytes; false: the socket buffer is full (or dropped: the wait for drain rejects at once). */
  write(chunk: Buffer): boolean {
    if (this.dropped) return false;
    if (this.finished) throw internal('write after end');
    if (!this.bodyAllowed || chunk.length === 0) {
      this.flushHeaders();
      return !this.socket.writableNeedDrain;
    }
    const s = this.socket;
    s.cork();
    if (this.head !== undefined) this.flushHeaders();
    this.bodyBytes += chunk.length;
    let ok: boolean;
    if (this.chunked) {
      s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
    } else {
      ok = s.write(chunk);
    }
    process.nextTick(uncork, s);
    return ok;
  }

  /** Ends the response (terminating chunk when chunked). */
  end(chunk?: Buffer): void {
    if (this.finished || this.dropped) return;
    if (this.head === undefined && !this.headersSent) throw internal('end before writeHead');
    const s = this.socket;
    s.cork();
    if (chunk !== undefined && chunk.length > 0 && this.bodyAllowed) {
      this.bodyBytes += chunk.length;
      if (this.chunked) {
        if (this.head !== undefined) {
          s.write(`${this.head}${chunk.length.toString(16)}\r\n`, 'latin1');
          this.head = undefined;
          this.headersSent = true;
          this.headSentAtMs = performance.now();
        } else {
          s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        }
        s.write(chunk);
        s.write('\r\n0\r\n\r\n', 'latin1');
      } else {
        if (this.head !== undefined) {
          // Head and body leave together: two writes under one cork become one writev, without copying the body.
          this.flushHeadBuffer();
          s.write(chunk);
        } else {
          s.write(chunk);
        }
      }
    } else {
      this.flushHeaders();
      if (this.chunked) s.write('0\r\n\r\n', 'latin1');
    }
    s.uncork();
    this.finished = true;
    this.releaseHeld();
    this.owner.responseFinished(this);
  }

  /**
   * Ends the response with a complete body held as several chunks: head and every chunk leave under one cork (one
   * writev), without copying. With Content-Length the chunks must add up to the announced length.
   */
  endChunks(chunks: readonly Buffer[]): void {
    if (this.finished || this.dropped) return;
    const s = this.socket;
    if (this.head !== undefined && !this.chunked && this.bodyAllowed && this.joinSmall(chunks)) return;
    s.cork();
    if (!this.chunked) this.flushHeadBuffer();
    else this.flushHeaders();
    if (this.bodyAllowed) {
      for (const c of chunks) {
        if (c.length === 0) continue;
        this.bodyBytes += c.length;
        if (this.chunked) s.write(`${c.length.toString(16)}\r\n`, 'latin1');
        s.write(c);
        if (this.chunked) s.write('\r\n', 'latin1');
      }
      if (this.chunked) s.write('0\r\n\r\n', 'latin1');
    }
    s.uncork();
    this.finished = true;
    this.releaseHeld();
    this.owner.responseFinished(this);
  }

  /**
   * A small response (head and body up to JOIN_MAX_BYTES) leaves as one Buffer in one socket write: copying a few KiB
   * costs less than the cork, the writev and its per-chunk bookkeeping (a 1 KiB hit's profile); the owner's writeWhole
   * skips the Writable. Larger bodies keep endChunks' writev, which never copies them. False when not small.
   */
  private joinSmall(chunks: readonly Buffer[]): boolean {
    const head = this.head as string;
    let total = head.length;
    for (const c of chunks) total += c.length;
    if (total > JOIN_MAX_BYTES) return false;
    const out = Buffer.allocUnsafe(total);
    let at = out.write(head, 0, 'latin1');
    for (const c of chunks) at += c.copy(out, at);
    this.bodyBytes += total - head.length;
    this.head = undefined;
    this.headersSent = true;
    this.headSentAtMs = performance.now();
    this.owner.writeWhole(out); // as endPrepared: to the socket's handle when nothing is queued (issue 16)
    this.finished = true;
    this.releaseHeld();
    this.owner.responseFinished(this);
    return true;
  }

  /** Cuts the connection: the client can tell the body is incomplete (no terminating chunk, or short of length). */
  destroy(): void {
    if (this.dropped) return;
    this.socket.destroy();
  }

  // Resolves when the socket can take more; rejects if the client goes away first. A client that takes nothing for the
  // owner's send timeout is cut off (the signal then aborts), so it cannot hold the fetch behind it forever.
  drained(signal: AbortWatch): Promise<void> {
    signal.throwIfAborted();
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const socket = this.socket;
      const timer = setTimeout(() => socket.destroy(), this.owner.sendTimeoutMs);
      const onAbort = (): void => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        reject(signal.reason as Error);
      };
      const onDrain = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      socket.once('drain', onDrain);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** A response used out of order: a bug in the caller, coded like every other failure. */
function internal(message: string): ProxyError {
  return new ProxyError('CORE_ERR_INTERNAL', message, { source: 'internal' });
}

function clientGone(): ProxyError {
  return new ProxyError('CORE_ERR_CLIENT_GONE', 'client connection closed', { source: 'downstream' });
}

function uncork(s: Socket): void {
  s.uncork();
}

/** A response head: status line, `block` (the `name: value\r\n` lines), `persistence` (see persistenceLines), blank line. */
export function responseHead(status: number, block: string, persistence: string): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\n${block}${persistence}\r\n`;
}
