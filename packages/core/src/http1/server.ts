import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { HeaderMap } from '../http/headers.js';
import { ChunkedDecoder, ChunkedFramingError, LengthDecoder, type BodyDecoder } from './body-reader.js';
import { isHeadError, parseRequestHead } from './parse-head.js';
import { Http1Response, type ResponseOwner } from './response.js';

/**
 * A small HTTP/1.1 server on node:net, built for the proxy's needs: it hands each request to the handler with a body
 * stream (or null) and an Http1Response that controls framing byte for byte.
 *
 * Connection lifecycle:
 *   idle    waiting for a request (keep-alive timeout runs)
 *   head    bytes of a request head arrived (headers timeout runs); at most `maxHeadBytes`, else 431
 *   active  the handler owns the exchange; further bytes are the request body, then pipelined requests (buffered,
 *           parsed only after this response finished)
 *   closed
 * A malformed head is answered with 400 (or 414/431/501/505) and the connection closes; the server keeps serving
 * other connections. A response that finished while its request body was still unread closes the connection
 * rather than guess where the next request starts.
 */
export interface Http1Request {
  method: string;
  url: string;
  httpVersion: string;
  headers: HeaderMap;
  /** The request body, or null when the request has none. */
  body: Readable | null;
  remoteAddress: string;
  /** State that lives as long as the client connection (shared by its requests). */
  connection: ConnectionContext;
  /** Bytes of the request head as received (request line, headers, blank line). */
  headBytes: number;
  /** Request body bytes read so far (payload, without chunked framing). */
  bodyBytes(): number;
}

/** What is known of a request the parser refused. */
export interface BadRequestInfo {
  connection: ConnectionContext;
  /** The start of what was received (at most 256 bytes). */
  received: Buffer;
  /** Bytes of the 4xx/5xx response written back. */
  responseBytes: number;
  reasonPhrase: string;
}

/** Per-connection state handed to every request of that connection. */
export interface ConnectionContext {
  readonly id: number;
  /** Values keyed by their owner; `onClose` callbacks run when the connection closes. */
  readonly values: Map<string, unknown>;
  readonly onClose: Set<() => void>;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Epoch ms when the connection was accepted. */
  readonly openedMs: number;
  /**
   * Why the connection ended, in varnishlog's SessClose words: REM_CLOSE (the client closed), REQ_CLOSE (the client
   * asked with Connection: close), REQ_HTTP10 (HTTP/1.0 without keep-alive), RESP_CLOSE (we closed after a
   * response), RX_CLOSE_IDLE (idle timeout), RX_TIMEOUT (request head too slow), RX_JUNK / RX_OVERFLOW (bad request),
   * TX_PIPE (became a tunnel). Set once, when known.
   */
  closeReason: string | undefined;
}

let nextConnectionId = 1;

export type Http1Handler = (req: Http1Request, res: Http1Response) => void;

/**
 * Takes over a connection after a `CONNECT host:port` request head: the handler owns `socket` from then on (it
 * answers, then relays bytes both ways). `head` holds bytes the client already sent past the request head.
 */
export type Http1ConnectHandler = (req: { target: string; headers: HeaderMap; remoteAddress: string }, socket: Socket, head: Buffer) => void;

export interface Http1ServerOptions {
  keepAliveTimeoutMs?: number;
  headersTimeoutMs?: number;
  maxHeadBytes?: number;
  /** Told about every malformed request (for counters and logs). */
  onBadRequest?: (status: number, reason: string, info: BadRequestInfo) => void;
  /** Handles CONNECT; without one CONNECT is answered 405. */
  onConnect?: Http1ConnectHandler | undefined;
  /** Told about every accepted connection before its first byte is read (session logging). */
  onConnection?: ((ctx: ConnectionContext) => void) | undefined;
  /**
   * Longest wait for a client to take any byte of a response it is sent (its socket buffer full): past it the
   * connection is cut, so a client that stops reading cannot hold an origin fetch forever. Default 60 s (Varnish's
   * idle_send_timeout).
   */
  sendTimeoutMs?: number | undefined;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
/** How long a closing connection keeps reading (and dropping) what the client still sends (nginx: lingering_time). */
const LINGER_MS = 2_000;

function destroySocket(s: Socket): void {
  s.destroy();
}
const LFLF = Buffer.from('\n\n');

type ConnState = 'idle' | 'head' | 'active' | 'tunnel' | 'closed';

class Connection implements ResponseOwner {
  readonly socket: Socket;
  private pending: Buffer | undefined;
  private state: ConnState = 'idle';
  private decoder: BodyDecoder | undefined;
  private res: Http1Response | undefined;
  private readonly server: Http1Server;
  /** When the current request head started arriving (headers timeout). */
  private headStartMs = 0;
  /** Bytes read and dropped since the connection started closing. */
  private droppedBytes = 0;
  readonly context: ConnectionContext;

  constructor(socket: Socket, server: Http1Server) {
    this.socket = socket;
    this.server = server;
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
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
    // One idle timer for the connection's life (re-arming it per request is measurable on the hit path). It fires
    // after keepAliveTimeoutMs without any socket activity; a response in progress is not idle.
    socket.on('timeout', () => {
      if (this.state === 'active') return;
      this.closeReason(this.state === 'head' ? 'RX_TIMEOUT' : 'RX_CLOSE_IDLE');
      socket.destroy();
    });
    socket.setTimeout(server.keepAliveTimeoutMs);
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

  private feedBody(d: Buffer): void {
    const decoder = this.decoder as BodyDecoder;
    let rest: Buffer | undefined;
    try {
      rest = decoder.feed(d);
    } catch (e: unknown) {
      this.bodyFramingError(decoder, e instanceof ChunkedFramingError ? e.message : 'invalid request body framing');
      return;
    }
    if (rest !== undefined) this.append(rest);
    if (!decoder.wantsMore) this.socket.pause();
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
      this.headStartMs = Date.now();
    }
    let end = buf.indexOf(CRLFCRLF);
    let sepLen = 4;
    if (end < 0) {
      end = buf.indexOf(LFLF);
      sepLen = 2;
    }
    if (end < 0) {
      this.pending = buf;
      if (buf.length > this.server.maxHeadBytes) this.reject(431, 'request head too large');
      // A head trickling in (slowloris) is cut once it has taken longer than the headers timeout.
      else if (Date.now() - this.headStartMs > this.server.headersTimeoutMs) this.reject(408, 'request head timeout');
      return;
    }
    if (end > this.server.maxHeadBytes) return this.reject(431, 'request head too large');
    const head = parseRequestHead(buf.toString('latin1', 0, end));
    if (isHeadError(head)) return this.reject(head.status, head.reason);
    if (head.method === 'CONNECT') {
      const onConnect = this.server.onConnectHandler;
      if (onConnect === undefined) return this.reject(405, 'CONNECT is not enabled');
      // The connection becomes a tunnel: no more HTTP parsing on it.
      this.state = 'tunnel';
      this.closeReason('TX_PIPE');
      this.pending = undefined;
      this.socket.removeAllListeners('data');
      this.socket.removeAllListeners('timeout');
      this.socket.setTimeout(0);
      onConnect({ target: head.target, headers: head.headers, remoteAddress: this.socket.remoteAddress ?? '' }, this.socket, buf.subarray(end + sepLen));
      return;
    }
    let rest: Buffer | undefined = buf.length > end + sepLen ? buf.subarray(end + sepLen) : undefined;
    this.pending = undefined;
    this.state = 'active';

    let body: Readable | null = null;
    // RFC 9110 §10.1.1: with Expect: 100-continue, tell the client to send the body once someone reads it.
    let needContinue = head.expectContinue && head.version === '1.1' && rest === undefined;
    const onRead = (): void => {
      if (needContinue) {
        needContinue = false;
        if (this.res !== undefined && !this.res.committed) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      }
      this.socket.resume();
    };
    if (head.body.kind === 'length') this.decoder = new LengthDecoder(head.body.length, onRead);
    else if (head.body.kind === 'chunked') this.decoder = new ChunkedDecoder(onRead);
    else this.decoder = undefined;
    const decoder = this.decoder;
    const res = new Http1Response(this, {
      isHead: head.method === 'HEAD',
      version: head.version,
      keepAlive: head.keepAlive && !this.server.closing,
    });
    this.res = res;
    if (this.decoder !== undefined) {
      body = this.decoder.stream;
      if (rest !== undefined) {
        const r = rest;
        rest = undefined;
        this.feedBody(r);
        // Bad framing in the bytes that came with the head: already answered 400, the handler never runs.
        if ((this.state as ConnState) === 'closed') return;
      }
    } else if (rest !== undefined) {
      this.pending = rest;
    }
    this.server.handler(
      {
        method: head.method,
        url: head.target,
        httpVersion: head.version,
        headers: head.headers,
        body,
        remoteAddress: this.socket.remoteAddress ?? '',
        connection: this.context,
        headBytes: end + sepLen,
        bodyBytes: () => decoder?.bytes ?? 0,
      },
      res,
    );
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
      this.decoder?.abort(new Error('response finished before the request body was read'));
      this.endAndLinger();
      return;
    }
    this.decoder = undefined;
    this.state = 'idle';
    if (this.socket.writableNeedDrain) {
      // The client has not taken this response yet: read and answer no further (pipelined) request until it has, so
      // a client that pipelines requests and never reads cannot make us queue responses without bound. The idle
      // timeout still runs meanwhile and closes a client that never reads.
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
    const reasonPhrase = status === 405 ? 'Method Not Allowed' : status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : status === 414 ? 'URI Too Long' : status === 501 ? 'Not Implemented' : status === 505 ? 'HTTP Version Not Supported' : 'Bad Request';
    const response = `HTTP/1.1 ${status} ${reasonPhrase}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${text.length}\r\n\r\n${text}`;
    const received = this.pending === undefined ? Buffer.alloc(0) : this.pending.subarray(0, 256);
    this.server.onBadRequest(status, reason, { connection: this.context, received, responseBytes: response.length, reasonPhrase });
    this.pending = undefined;
    this.endAndLinger(response);
  }

  /**
   * Bad framing in a request body: the request's handler loses its response (its signal aborts, its writes are
   * dropped) and the client gets a 400 when no response head was decided yet, else a cut connection. The body
   * stream errors for whoever reads it (a pass drops its origin request).
   */
  private bodyFramingError(decoder: BodyDecoder, reason: string): void {
    const res = this.res;
    decoder.abort(new ChunkedFramingError(reason));
    if (res !== undefined && !res.committed) {
      this.res = undefined;
      res.abandon();
      this.reject(400, reason);
      return;
    }
    this.closeReason('RX_JUNK');
    this.state = 'closed';
    this.server.onBadRequest(400, reason, { connection: this.context, received: Buffer.alloc(0), responseBytes: 0, reasonPhrase: 'Bad Request' });
    this.socket.destroy();
  }

  /**
   * Ends the connection after `last`, reading and dropping what still arrives for at most the linger time. The linger
   * time starts once everything written was handed to the kernel: a response still on its way to a slow or late
   * reader is not cut (a client that takes nothing is closed by the idle timeout, which Node holds off only while the
   * write queue moves).
   */
  private endAndLinger(last?: string): void {
    this.state = 'closed';
    const s = this.socket;
    if (last === undefined) s.end();
    else s.end(last);
    s.resume();
    if (s.writableFinished) setTimeout(destroySocket, LINGER_MS, s).unref();
    else s.once('finish', () => setTimeout(destroySocket, LINGER_MS, s).unref());
  }

  private onClose(): void {
    this.closeReason('REM_CLOSE');
    this.state = 'closed';
    for (const cb of this.context.onClose) cb();
    this.context.onClose.clear();
    this.decoder?.abort(new Error('client connection closed'));
    this.res?.connectionClosed();
    this.server.connections.delete(this);
  }

  /** Closes now if idle; otherwise after the current response (keep-alive is off while closing). */
  closeIfIdle(): void {
    if (this.state === 'idle') this.socket.end();
  }
}

export class Http1Server {
  readonly handler: Http1Handler;
  readonly keepAliveTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly maxHeadBytes: number;
  /** See Http1ServerOptions.sendTimeoutMs; may be changed on a running server (applies to later waits). */
  sendTimeoutMs: number;
  readonly onBadRequest: (status: number, reason: string, info: BadRequestInfo) => void;
  readonly onConnectHandler: Http1ConnectHandler | undefined;
  readonly connections = new Set<Connection>();
  closing = false;
  private readonly server: net.Server;

  constructor(handler: Http1Handler, opts: Http1ServerOptions = {}) {
    this.handler = handler;
    this.keepAliveTimeoutMs = opts.keepAliveTimeoutMs ?? 5_000;
    this.headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;
    this.maxHeadBytes = opts.maxHeadBytes ?? 64 * 1024;
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 60_000;
    this.onBadRequest = opts.onBadRequest ?? (() => undefined);
    this.onConnectHandler = opts.onConnect;
    const onConnection = opts.onConnection;
    this.server = net.createServer((socket) => {
      const c = new Connection(socket, this);
      this.connections.add(c);
      onConnection?.(c.context);
    });
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting; idle connections close now, busy ones after their response; `force` cuts them all. */
  close(force = true): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) {
      if (force) c.socket.destroy();
      else c.closeIfIdle();
    }
    return closed;
  }
}
