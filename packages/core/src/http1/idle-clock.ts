import type { Socket } from 'node:net';

/**
 * A connection's side of the server's idle clock (Http1Server.armIdleClock): instead of a socket timer, which Node
 * refreshes on every read and write (a timer-list re-insert and a clock read per hit), each tick compares the TCP
 * handle's counters with the last tick's. Activity is what refreshed Node's timer or held off its _onTimeout: bytes
 * read, bytes handed to the handle, a queued write moving (its writeQueueSize). It is noticed at the first tick after
 * it, so an idle close is never early and at most two ticks late.
 *
 * Which limit applies (Connection.idleCheck): a connection with response bytes still queued (in the Writable, in
 * libuv's write queue, or a direct write the kernel has not taken) is held to the send timeout, as Varnish's
 * idle_send_timeout and nginx's send_timeout govern a response a slow client has not taken yet; only a connection
 * with nothing left to send gets the keep-alive timeout. (Until session 10 the keep-alive timeout, 5 s, also cut a
 * response whose last bytes were queued to a client that paused reading: a Content-Length body cut short with a clean
 * FIN, the slab tests' rare sha mismatches under load.)
 */

/** The handle's counters (accessors of Node's StreamBase / LibuvStreamWrap). */
interface HandleCounters {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly writeQueueSize: number;
}

const handleOf = (socket: Socket): HandleCounters | null => (socket as unknown as { _handle: HandleCounters | null })._handle;

export class IdleWatch {
  private read: number;
  private written: number;
  private queue: number;
  /** When the counters were last seen to change (performance.now() ms). */
  private activeAtMs: number;

  constructor(socket: Socket) {
    const h = handleOf(socket);
    this.read = h?.bytesRead ?? 0;
    this.written = h?.bytesWritten ?? 0;
    this.queue = h?.writeQueueSize ?? 0;
    this.activeAtMs = performance.now();
  }

  /**
   * Whether the idle clock closes `socket` at `nowMs` (Connection.idleCheck, which leaves a response in progress and a
   * tunnel alone): 'keep-alive' when it has nothing left to send and was idle for `keepAliveMs`; 'send' when bytes of a
   * response are still queued (its Writable, the handle's write queue, or `directPending` direct writes) and none left
   * for `sendTimeoutMs` (the time a client may take between two reads, as Varnish's idle_send_timeout or nginx's
   * send_timeout); else undefined. The counters are read at every call.
   */
  expired(socket: Socket, nowMs: number, keepAliveMs: number, sendTimeoutMs: number, directPending: number): 'keep-alive' | 'send' | undefined {
    const idle = this.idleMs(socket, nowMs);
    if (idle < keepAliveMs) return undefined;
    if (directPending === 0 && queuedBytes(socket) === 0) return 'keep-alive';
    return idle < sendTimeoutMs ? undefined : 'send';
  }

  /** How long `socket` has been seen idle at `nowMs`; 0 when it moved since the last look, or has no handle left. */
  idleMs(socket: Socket, nowMs: number): number {
    const h = handleOf(socket);
    if (h === null) return 0;
    const read = h.bytesRead;
    const written = h.bytesWritten;
    const queue = h.writeQueueSize;
    if (read === this.read && written === this.written && queue === this.queue) return nowMs - this.activeAtMs;
    this.read = read;
    this.written = written;
    this.queue = queue;
    this.activeAtMs = nowMs;
    return 0;
  }
}

/** Response bytes handed to `socket` that it has not passed to the kernel yet: its Writable's and libuv's write queue. */
export function queuedBytes(socket: Socket): number {
  return socket.writableLength + (handleOf(socket)?.writeQueueSize ?? 0);
}
