import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { HeaderMap } from '../http/headers.js';
import { DEFAULT_BODY_CLOCK, type BodyClockOptions } from './body-clock.js';
import { directWriteAvailable } from './direct-write.js';
import { Connection } from './connection.js';
import type { Http1Response } from './response.js';

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
   * TX_PIPE (became a tunnel), TX_ERROR (a finished response's queued bytes not taken for the send timeout). Set once,
   * when known.
   */
  closeReason: string | undefined;
}


export type Http1Handler = (req: Http1Request, res: Http1Response) => void;

/**
 * Takes over a connection after a `CONNECT host:port` request head: the handler owns `socket` from then on (it
 * answers, then relays bytes both ways). `head` holds bytes the client already sent past the request head.
 */
export type Http1ConnectHandler = (req: { target: string; headers: HeaderMap; remoteAddress: string }, socket: Socket, head: Buffer) => void;

export interface Http1ServerOptions {
  keepAliveTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** Request-body idle timeout and minimum rate (see body-clock.ts); a slow body gets 408. */
  bodyClock?: { [K in keyof BodyClockOptions]?: BodyClockOptions[K] | undefined } | undefined;
  /** Largest request body accepted, bytes (default 100 MiB); more gets 413. */
  maxBodyBytes?: number | undefined;
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
  /**
   * Read client sockets into one shared buffer instead of through their Readable (read-buffer.ts; default true). False
   * reads through 'data' like every socket: the same behaviour, for comparison and tests.
   */
  sharedReadBuffer?: boolean | undefined;
  /**
   * Write a whole response (Http1Response.endPrepared) straight to the socket's handle when nothing else is queued on
   * it (direct-write.ts; default true). False writes through the socket's Writable: the same bytes and behaviour.
   */
  directWrites?: boolean | undefined;
}

export class Http1Server {
  readonly handler: Http1Handler;
  readonly keepAliveTimeoutMs: number;
  /**
   * The `keep-alive: timeout=N` line sent on persistent responses (RFC 9112 appendix: the Keep-Alive hint): Node's
   * agent and undici close an idle connection a second before N, so a client does not send a request on a connection
   * our idle timeout is closing (the suite's occasional `read ECONNRESET` on PUT /config: Node 20's global agent also
   * idles out at 5 s).
   */
  readonly keepAliveLine: string;
  readonly headersTimeoutMs: number;
  readonly maxHeadBytes: number;
  readonly maxBodyBytes: number;
  readonly bodyClock: BodyClockOptions;
  /** See Http1ServerOptions.sendTimeoutMs; may be changed on a running server (applies to later waits). */
  sendTimeoutMs: number;
  readonly onBadRequest: (status: number, reason: string, info: BadRequestInfo) => void;
  readonly onConnectHandler: Http1ConnectHandler | undefined;
  readonly sharedReadBuffer: boolean;
  readonly directWrites: boolean;
  readonly connections = new Set<Connection>();
  closing = false;
  private readonly server: net.Server;
  /** The idle clock's next tick (armIdleClock), while there are connections. */
  private idleTimer: NodeJS.Timeout | undefined;
  /** Resolves when the listener and every connection are closed (set by the first close()). */
  private closed: Promise<void> | undefined;

  constructor(handler: Http1Handler, opts: Http1ServerOptions = {}) {
    this.handler = handler;
    this.keepAliveTimeoutMs = opts.keepAliveTimeoutMs ?? 5_000;
    const hintSec = Math.floor(this.keepAliveTimeoutMs / 1000);
    this.keepAliveLine = hintSec >= 1 ? `keep-alive: timeout=${hintSec}\r\n` : '';
    this.headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;
    this.maxHeadBytes = opts.maxHeadBytes ?? 64 * 1024;
    this.maxBodyBytes = opts.maxBodyBytes ?? 100 * 1024 * 1024;
    this.bodyClock = { ...DEFAULT_BODY_CLOCK, ...definedOnly(opts.bodyClock ?? {}) };
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 60_000;
    this.onBadRequest = opts.onBadRequest ?? (() => undefined);
    this.onConnectHandler = opts.onConnect;
    this.sharedReadBuffer = opts.sharedReadBuffer ?? true;
    this.directWrites = (opts.directWrites ?? true) && directWriteAvailable;
    const onConnection = opts.onConnection;
    this.server = net.createServer((socket) => {
      const c = new Connection(socket, this);
      this.connections.add(c);
      this.armIdleClock();
      onConnection?.(c.context);
    });
  }

  /**
   * The idle clock: one timer for all connections while there are any (as nginx and Varnish keep idle deadlines),
   * instead of a socket timer per connection that Node refreshes on every read and write. Each tick every connection
   * compares its handle's counters with the last tick's (Connection.idleCheck): the keep-alive timeout for one with
   * nothing left to send, the send timeout for one whose finished response is still queued. A tick is an eighth of the
   * shorter of the two (10 ms to 1 s), read again at every tick, so a changed timeout applies from the next one.
   */
  private armIdleClock(): void {
    if (this.idleTimer !== undefined || this.connections.size === 0 || !(this.keepAliveTimeoutMs > 0)) return;
    const shorter = this.sendTimeoutMs > 0 ? Math.min(this.keepAliveTimeoutMs, this.sendTimeoutMs) : this.keepAliveTimeoutMs;
    const tick = Math.min(1000, Math.max(10, Math.floor(shorter / 8)));
    this.idleTimer = setTimeout(this.onIdleTick, tick);
    this.idleTimer.unref();
  }

  private readonly onIdleTick = (): void => {
    this.idleTimer = undefined;
    const now = performance.now();
    const timeout = this.keepAliveTimeoutMs;
    for (const c of this.connections) c.idleCheck(now, timeout);
    this.armIdleClock();
  };

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
    // Once closing, a later call (a forced one after a graceful one) shares the same end.
    this.closed ??= new Promise<void>((resolve) => this.server.close(() => resolve()));
    const closed = this.closed;
    for (const c of this.connections) {
      if (force) c.socket.destroy();
      else c.closeIfIdle();
    }
    return closed;
  }
}

/** The fields of `o` that are set (so `{ idleMs: undefined }` keeps the default). */
function definedOnly<T extends object>(o: { [K in keyof T]?: T[K] | undefined }): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
