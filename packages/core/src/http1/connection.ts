import type { Socket } from 'node:net';
import { BodyClock } from './body-clock.js';
import { ChunkedDecoder, ChunkedFramingError, LengthDecoder, type BodyDecoder } from './body-reader.js';
import { ProxyError } from '../errors.js';
import { isHeadError, oversizeStatus, parseRequestHead, REASONS, type RequestHead } from './parse-head.js';
import { afterWritten, writeDirect, type DirectWriteDone } from './direct-write.js';
import { IdleWatch } from './idle-clock.js';
import { isShared, owned, readIntoShared, sharedText, sharedView } from './read-buffer.js';
import { Http1Response, type Held, type ResponseOwner } from './response.js';
import type { ConnectionContext, Http1Request, Http1Server } from './server.js';

/** One client connection of the HTTP/1.1 server: parse loop, request bodies, refusals, keep-alive, closing (server.ts). */

let nextConnectionId = 1;

const CRLFCRLF = Buffer.from('\r\n\r\n');
/** How long a closing connection keeps reading (and dropping) what the client still sends (nginx: lingering_time). */
const LINGER_MS = 2_000;

const destroySocket = (s: Socket): void => void s.destroy();
const LFLF = Buffer.from('\n\n');
const noBodyBytes = (): number => 0;

type ConnState = 'idle' | 'head' | 'active' | 'tunnel' | 'closed';

export class Connection implements ResponseOwner {
  readonly socket: Socket;
  private pending: Buffer | undefined;
  private state: ConnState = 'idle';
  private decoder: BodyDecoder | undefined;
  /** Times the request body while it is still arriving. */
  private clock: BodyClock | undefined;
  private res: Http1Response | undefined;
  private readonly server: Http1Server;
  /** When the current request head started arriving (headers timeout); 0 until a read ends without the whole head. */
  private headStartMs = 0;
  /** Bytes read and dropped since the connection started closing. */
  private droppedBytes = 0;
  readonly context: ConnectionContext;
  /** Whether this connection's reads land in the shared read buffer (read-buffer.ts), rather than through 'data'. */
  readonly readsShared: boolean;
  private directPending = 0; // direct writes (direct-write.ts) not taken whole yet: the Writable does not count them
  /** The finished response's bytes are still in a direct write: the next request waits for it (see responseFinished). */
  private resumeWhenWritten = false;
  private directHeld: Held[] | undefined; // held until the direct writes left (releaseWhenWritten); one list, reused
  /** writeDirect's completion callback, one per connection (no closure per write); the idle clock's view (idle-clock.ts). */
  private readonly onDirectDone: DirectWriteDone;
  private readonly idle: IdleWatch;

  constructor(socket: Socket, server: Http1Server) {
    this.socket = socket;
    this.server = server;
    this.onDirectDone = (ok) => this.directWritten(ok);
    this.context = {
      id: nextConnectionId++,
      values: new Map(),
      onClose: new Set(),
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      openedMs: Date.now(),
      closeReason: undefined,
    };
    socket.setNoDelay(true);
    // Reads land in one shared buffer (read-buffer.ts) unless the server was told otherwise or this Node does not allow
    // it; then through 'data' like every socket. Either way onData sees each read's bytes.
    this.readsShared = server.sharedReadBuffer && readIntoShared(socket, (n) => this.onRead(n));
    if (!this.readsShared) socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
    this.idle = new IdleWatch(socket); // no socket timer: the server's idle clock (idle-clock.ts)
  }

  /** An idle clock tick (IdleWatch.expired): RX_CLOSE_IDLE (RX_TIMEOUT in a head), or TX_ERROR past the send timeout. */
  idleCheck(nowMs: number, keepAliveMs: number): void {
    const over = this.idle.expired(this.socket, nowMs, keepAliveMs, this.server.sendTimeoutMs, this.directPending);
    if (over === undefined || this.state === 'tunnel' || this.state === 'active') return;
    this.closeReason(over === 'send' ? 'TX_ERROR' : this.state === 'head' ? 'RX_TIMEOUT' : 'RX_CLOSE_IDLE');
    this.socket.destroy();
  }

  /**
   * A read into the shared buffer: `view` is valid only until this returns, so what the connection keeps of it (the
   * bytes waiting to be parsed) is copied here; body bytes are copied in feedBody, a tunnel's first bytes in
   * startTunnel. A tunnel gets its bytes through the socket's Readable, as with 'data'.
   */
  private onRead(n: number): boolean {
    if (this.state === 'tunnel') return this.socket.push(Buffer.from(sharedView(n)));
    if (this.state === 'idle' && this.pending === undefined && this.parseWhole(n)) return true;
    this.onData(sharedView(n));
    if (this.pending !== undefined && isShared(this.pending)) this.pending = Buffer.from(this.pending);
    return true;
  }

  /**
   * A read that is one whole request head on an idle connection, parsed from the shared buffer's text with no Buffer
   * view (a typed array per read). Anything else returns false with nothing changed: parse() decides as always.
   */
  private parseWhole(n: number): boolean {
    if (n < 4 || n > this.server.maxHeadBytes) return false;
    const text = sharedText(n);
    const end = text.indexOf('\r\n\r\n');
    if (end + 4 !== n || text.charCodeAt(0) === 13 || text.charCodeAt(0) === 10) return false;
    const head = parseRequestHead(text.slice(0, end));
    if (isHeadError(head) || head.method === 'CONNECT') return false;
    this.startRequest(head, undefined, n);
    return true;
  }

  private onData(d: Buffer): void {
    // After a refusal or a response that ended the exchange, nothing more is parsed or kept: the bytes are read and
    // dropped until the client closes or the linger time ends (closing with unread bytes would reset the connection
    // and could lose the response before the client read it).
    if (this.state === 'closed') {
      // A client that keeps sending while it does not take its response (which holds off the idle timeout) is cut
      // once it sent more than a request head's worth: the linger time only starts when the response has left.
      this.droppedBytes += d.length;
      if (this.droppedBytes > this.server.maxHeadBytes && !this.socket.writableFinished) this.socket.destroy();
      return;
    }
    if (this.state === 'active') {
      if (this.decoder !== undefined && !this.decoder.done) {
        this.feedBody(d);
      } else {
        this.append(d);
        // Pipelined requests wait; do not buffer without bound.
        if (this.pending !== undefined && this.pending.length > this.server.maxHeadBytes) this.socket.pause();
      }
      return;
    }
    this.append(d);
    this.parse();
  }

  private append(d: Buffer): void {
    this.pending = this.pending === undefined ? d : Buffer.concat([this.pending, d]);
  }

  private feedBody(shared: Buffer): void {
    const decoder = this.decoder as BodyDecoder;
    // The decoder hands slices of what it is fed to the body stream: never views of the shared read buffer.
    const d = owned(shared);
    let rest: Buffer | undefined;
    try {
      rest = decoder.feed(d);
    } catch (e: unknown) {
      this.bodyFault(decoder, 400, e instanceof ChunkedFramingError ? e.message : 'invalid request body framing');
      return;
    }
    if (decoder.bytes > this.server.maxBodyBytes) {
      this.bodyFault(decoder, 413, `request body over ${this.server.maxBodyBytes} bytes`);
      return;
    }
    this.clock?.progress(d.length - (rest?.length ?? 0));
    if (decoder.done) this.stopClock();
    if (rest !== undefined) this.append(rest);
    if (!decoder.wantsMore) this.socket.pause();
  }

  private stopClock(): void {
    this.clock?.stop();
    this.clock = undefined;
  }

  private parse(): void {
    if (this.state === 'closed' || this.pending === undefined) return;
    let buf = this.pending;
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let start = 0;
    while (start < buf.length && (buf[start] === 13 || buf[start] === 10)) start++;
    if (start > 0) buf = buf.subarray(start);
    if (buf.length === 0) {
      this.pending = undefined;
      return;
    }
    if (this.state === 'idle') {
      this.state = 'head';
      // Read from the clock only when the head is not complete in this first read (below): most heads are.
      this.headStartMs = 0;
    }
    // The head is searched in its text: one latin1 decode of at most a head's worth of bytes, then a string search
    // (cheaper than a Buffer search plus a decode of the head: a 1 KiB hit's profile). Past that window, or when the
    // window holds no CRLFCRLF but more bytes follow, the Buffer search decides exactly as before.
    const window = Math.min(buf.length, this.server.maxHeadBytes + 4);
    const text = buf.toString('latin1', 0, window);
    let end = text.indexOf('\r\n\r\n');
    let sepLen = 4;
    if (end < 0 && window < buf.length) end = buf.indexOf(CRLFCRLF);
    if (end < 0) {
      end = window < buf.length ? buf.indexOf(LFLF) : text.indexOf('\n\n');
      sepLen = 2;
    }
    if (end < 0) {
      this.pending = buf;
      if (buf.length > this.server.maxHeadBytes) this.reject(oversizeStatus(text, this.server.maxHeadBytes), 'request head too large');
      // A head trickling in (slowloris) is cut once it has taken longer than the headers timeout.
      else {
        const now = Date.now();
        if (this.headStartMs === 0) this.headStartMs = now;
        if (now - this.headStartMs > this.server.headersTimeoutMs) this.reject(408, 'request head timeout');
      }
      return;
    }
    if (end > this.server.maxHeadBytes) return this.reject(oversizeStatus(text, this.server.maxHeadBytes), 'request head too large');
    const head = parseRequestHead(end <= window ? text.slice(0, end) : buf.toString('latin1', 0, end));
    if (isHeadError(head)) return this.reject(head.status, head.reason);
    if (head.method === 'CONNECT') return this.startTunnel(head, buf.subarray(end + sepLen));
    this.startRequest(head, buf.length > end + sepLen ? buf.subarray(end + sepLen) : undefined, end + sepLen);
  }

  /** CONNECT: the connection becomes a tunnel, no more HTTP parsing on it. */
  private startTunnel(head: RequestHead, rest: Buffer): void {
    const onConnect = this.server.onConnectHandler;
    if (onConnect === undefined) return this.reject(405, 'CONNECT is not enabled');
    this.state = 'tunnel';
    this.closeReason('TX_PIPE');
    this.pending = undefined;
    this.socket.removeAllListeners('data');
    // The socket's Readable may be flowing (resumed after an earlier response on this connection, or by the 'data'
    // listener just removed): with no listener left, what the client sends before the tunnel listens would be
    // emitted to no one and lost. Back to neither flowing nor paused, as Node's http server does before 'connect':
    // bytes are buffered (reads go on until the Readable is full) and the first 'data' listener or pipe resumes it.
    (this.socket as { readableFlowing: boolean | null }).readableFlowing = null;
    onConnect({ target: head.target, headers: head.headers, remoteAddress: this.socket.remoteAddress ?? '' }, this.socket, owned(rest));
  }

  /** A parsed head: the body decoder, the response, and the handler; `rest` is what arrived past the head. */
  private startRequest(head: RequestHead, rest: Buffer | undefined, headBytes: number): void {
    this.pending = undefined;
    this.state = 'active';
    if (head.body.kind === 'length' && head.body.length > this.server.maxBodyBytes) {
      return this.reject(413, `request body over ${this.server.maxBodyBytes} bytes`);
    }
    const decoder = head.body.kind === 'none' ? undefined : this.bodyDecoder(head, rest);
    this.decoder = decoder;
    if (decoder !== undefined) {
      this.clock = new BodyClock(this.server.bodyClock, () => decoder.wantsMore && !decoder.done, (reason) => this.bodyFault(decoder, 408, reason));
      this.clock.start();
    }
    const res = new Http1Response(this, { isHead: head.method === 'HEAD', version: head.version, keepAlive: head.keepAlive && !this.server.closing });
    this.res = res;
    if (decoder !== undefined && rest !== undefined) {
      this.feedBody(rest);
      // Bad framing in the bytes that came with the head: already answered 400, the handler never runs.
      if ((this.state as ConnState) === 'closed') return;
    } else if (rest !== undefined) {
      this.pending = rest;
    }
    const req: Http1Request = {
      method: head.method,
      url: head.target,
      httpVersion: head.version,
      headers: head.headers,
      body: decoder === undefined ? null : decoder.stream,
      remoteAddress: this.context.remoteAddress,
      connection: this.context,
      headBytes,
      bodyBytes: decoder === undefined ? noBodyBytes : () => decoder.bytes,
    };
    this.server.handler(req, res);
  }

  /** The request body's decoder; it asks for more bytes (and sends 100 Continue when expected) as the body is read. */
  private bodyDecoder(head: RequestHead, rest: Buffer | undefined): BodyDecoder {
    // RFC 9110 §10.1.1: with Expect: 100-continue, tell the client to send the body once someone reads it.
    let needContinue = head.expectContinue && head.version === '1.1' && rest === undefined;
    const onRead = (): void => {
      if (needContinue) {
        needContinue = false;
        if (this.res !== undefined && !this.res.committed) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      }
      this.clock?.resumed();
      this.socket.resume();
    };
    return head.body.kind === 'length' ? new LengthDecoder(head.body.length, onRead) : new ChunkedDecoder(onRead);
  }

  /**
   * Writes a whole response's bytes (`bytes`, or the Buffers in order): straight to the socket's handle when allowed and
   * nothing is queued on the socket (direct-write.ts), else through its Writable under one cork. Nothing comes after.
   */
  writeWhole(bytes: Buffer | readonly Buffer[]): void {
    const s = this.socket;
    if (this.server.directWrites) {
      const r = writeDirect(s, bytes, this.onDirectDone);
      if (r === 'done') return;
      if (r === 'pending') return void this.directPending++;
    }
    if (Buffer.isBuffer(bytes)) return void s.write(bytes);
    s.cork();
    for (const c of bytes) if (c.length > 0) s.write(c);
    s.uncork();
  }

  /** A direct write that did not finish at once has left (or failed: the socket is destroyed then). */
  private directWritten(ok: boolean): void {
    this.directPending--;
    const held = this.directHeld;
    if ((!ok || this.directPending === 0) && held !== undefined && held.length > 0) {
      for (const o of held) this.releaseWhenWritten(o); // (never adds to the list: none pending, or the socket gone)
      held.length = 0;
    }
    if (!ok || this.directPending > 0 || !this.resumeWhenWritten) return;
    this.resumeWhenWritten = false;
    this.afterResponseWritten();
  }

  /**
   * Releases `o` once every byte written so far has left the socket or can no longer be read: now without slabs, a socket
   * gone, or nothing queued (the kernel took it all); else after pending direct writes, then the Writable's bytes.
   */
  releaseWhenWritten(o: Held): void {
    const s = this.socket;
    if (!o.needsHold || s.destroyed) return o.release();
    if (this.directPending > 0) return void (this.directHeld ??= []).push(o);
    if (s.writableLength === 0) return o.release();
    afterWritten(s, () => o.release());
  }

  /** Whether the current request's body is still arriving (a response decided now must close the connection). */
  requestBodyPending(): boolean {
    return this.decoder !== undefined && !this.decoder.done;
  }

  responseFinished(res: Http1Response): void {
    if (res !== this.res || this.state === 'closed') return;
    this.res = undefined;
    const bodyUnread = this.decoder !== undefined && !this.decoder.done;
    if (!res.keepAlive || bodyUnread || this.server.closing) {
      this.closeReason(res.clientAskedClose ? (res.version === '1.0' ? 'REQ_HTTP10' : 'REQ_CLOSE') : 'RESP_CLOSE');
      // A body left unread cannot be skipped safely (where would the next request start?): the connection closes.
      this.decoder?.abort(new ProxyError('CORE_ERR_BODY_UNREAD', 'response finished before the request body was read', { source: 'downstream' }));
      this.endAndLinger();
      return;
    }
    this.decoder = undefined;
    this.state = 'idle';
    if (this.directPending > 0) {
      // The kernel has not taken the whole response yet (a direct write): as with a full Writable below, read and
      // answer no further request until it has.
      this.socket.pause();
      this.resumeWhenWritten = true;
      return;
    }
    this.afterResponseWritten();
  }

  /** The finished response was handed to the socket: go on with the next request once the client takes it. */
  private afterResponseWritten(): void {
    if (this.socket.writableNeedDrain) {
      // The client has not taken this response: answer no further (pipelined) request until it has, so one that never
      // reads cannot make us queue responses without bound (idleCheck closes it after the send timeout).
      this.socket.pause();
      this.socket.once('drain', () => this.resumeAfterResponse());
      return;
    }
    this.resumeAfterResponse();
  }

  private resumeAfterResponse(): void {
    if (this.state !== 'idle') return;
    this.socket.resume();
    if (this.pending !== undefined) setImmediate(() => this.parse());
  }

  /** The Keep-Alive hint line of persistent responses (see Http1Server.keepAliveLine). */
  get keepAliveLine(): string {
    return this.server.keepAliveLine;
  }

  /** How long a response may wait for the client to take any byte (see Http1Server.sendTimeoutMs). */
  get sendTimeoutMs(): number {
    return this.server.sendTimeoutMs;
  }

  private closeReason(reason: string): void {
    this.context.closeReason ??= reason;
  }

  private reject(status: number, reason: string): void {
    this.closeReason(status === 431 || status === 414 ? 'RX_OVERFLOW' : status === 408 ? 'RX_TIMEOUT' : 'RX_JUNK');
    this.state = 'closed';
    const text = `${status} ${reason}\n`;
    const reasonPhrase = REASONS[status] ?? 'Bad Request';
    const response = `HTTP/1.1 ${status} ${reasonPhrase}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${text.length}\r\n\r\n${text}`;
    const received = this.pending === undefined ? Buffer.alloc(0) : owned(this.pending.subarray(0, 256));
    this.server.onBadRequest(status, reason, { connection: this.context, received, responseBytes: response.length, reasonPhrase });
    this.pending = undefined;
    this.endAndLinger(response);
  }

  /**
   * A fault in the request body (bad framing 400, too slow 408, too large 413): the request's handler loses its
   * response (its signal aborts, its writes are dropped) and the client gets the status when no response head was
   * decided yet, else a cut connection. The body stream errors for whoever reads it (a pass drops its origin request).
   */
  private bodyFault(decoder: BodyDecoder, status: 400 | 408 | 413, reason: string): void {
    this.stopClock();
    if (this.state === 'closed') return;
    const res = this.res;
    decoder.abort(new ProxyError(status === 400 ? 'CORE_ERR_BAD_REQUEST' : status === 408 ? 'CORE_ERR_BODY_TIMEOUT' : 'CORE_ERR_BODY_TOO_LARGE', reason, { source: 'downstream', status }));
    if (res !== undefined && !res.committed) {
      this.res = undefined;
      res.abandon();
      this.reject(status, reason);
      return;
    }
    this.closeReason(status === 408 ? 'RX_TIMEOUT' : 'RX_JUNK');
    this.state = 'closed';
    this.server.onBadRequest(status, reason, { connection: this.context, received: Buffer.alloc(0), responseBytes: 0, reasonPhrase: REASONS[status] ?? 'Bad Request' });
    this.socket.destroy();
  }

  /**
   * Ends the connection after `last`, reading and dropping what still arrives for at most the linger time, which
   * starts once everything written was handed to the kernel: a response on its way to a slow reader is not cut (a
   * client that takes nothing for the send timeout is closed by the idle clock, see idleCheck).
   */
  private endAndLinger(last?: string): void {
    this.stopClock();
    this.state = 'closed';
    const s = this.socket;
    if (last === undefined) s.end();
    else s.end(last);
    s.resume();
    if (s.writableFinished) setTimeout(destroySocket, LINGER_MS, s).unref();
    else s.once('finish', () => setTimeout(destroySocket, LINGER_MS, s).unref());
  }

  private onClose(): void {
    this.stopClock();
    this.closeReason('REM_CLOSE');
    this.state = 'closed';
    for (const cb of this.context.onClose) cb();
    this.context.onClose.clear();
    this.decoder?.abort(new ProxyError('CORE_ERR_CLIENT_GONE', 'client connection closed', { source: 'downstream' }));
    this.res?.connectionClosed();
    this.server.connections.delete(this);
  }

  /** Closes now if idle; otherwise after the current response (keep-alive is off while closing). */
  closeIfIdle(): void {
    if (this.state === 'idle') {
      this.closeReason('RX_CLOSE_IDLE');
      this.endAndLinger();
    }
  }
}
