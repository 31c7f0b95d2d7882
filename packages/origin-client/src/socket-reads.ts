import { Socket } from 'node:net';
import { buildConnector } from 'undici';

/**
 * Origin sockets that read more than 64 KiB at a time (issue 16, bulk miss). Node reads a TCP socket 64 KiB per
 * read(2), each into a Buffer of its own, and every read costs a JS callback, a push through the socket's Readable, a
 * 'readable' event, undici's readMore and one llhttp execute, a body callback, and in Sluice one chunk through the
 * cache object and one client write. With Node's `onread` option the socket reads into a buffer we hand it: a read
 * that fills it makes the next one twice as large, up to MAX_READ_BYTES, so a bulk body arrives in 256 KiB chunks.
 *
 * The bytes still go through the socket's Readable (`push`), so undici reads the socket as before (`socket.read()`
 * on 'readable', `unshift` when its parser pauses) and backpressure is the stream's: a push over the highWaterMark
 * returns false, which stops the socket's reading until the next read() (Node's net.Socket restarts a socket with a
 * user buffer from read() and _read()).
 *
 * Chunks handed to undici are never overwritten: a read that fills at least 7/8 of the buffer hands the buffer itself
 * over (views of it may stay in a cache object or a transit buffer) and the next read goes into a new one; a smaller
 * read is copied out to a Buffer of its size and the buffer is reused. So a held chunk pins at most 1/7 more memory
 * than its bytes (a small object stored as its one chunk is not charged for a 256 KiB buffer), and an idle
 * connection holds one buffer (64 to 256 KiB).
 *
 * Only plain http: connections: a TLS socket reads through its own layer (and undici's https connector is used as it
 * is). A Node whose net.Socket ignores `onread` reads the socket as before: the callback is never called.
 */
export const FIRST_READ_BYTES = 64 * 1024;
export const MAX_READ_BYTES = 256 * 1024;

/** One connection's read buffer: Node's `onread` buffer function and callback. */
class SocketReads {
  socket: Socket | undefined = undefined;
  private size = FIRST_READ_BYTES;
  private buf: Buffer | undefined = undefined;

  /** The buffer of the next read: the same one unless the last read handed it over. */
  readonly next = (): Buffer => (this.buf ??= Buffer.allocUnsafeSlow(this.size));

  /** `n` bytes read into `buf`: pushed into the socket's Readable; false (stop reading) when it is full. */
  readonly read = (n: number, buf: Buffer): boolean => {
    let chunk: Buffer;
    if (n >= buf.length - (buf.length >>> 3)) {
      chunk = buf.subarray(0, n);
      this.buf = undefined;
      if (n === buf.length && this.size < MAX_READ_BYTES) this.size *= 2;
    } else {
      chunk = Buffer.allocUnsafe(n);
      buf.copy(chunk, 0, 0, n);
    }
    // The socket is set when the connector returns, before its connect completes, so before any read (and never a
    // throw here: it would end the process).
    return this.socket?.push(chunk) ?? false;
  };
}

/**
 * An undici connector (for Pool/Client `connect`) built from `options` as `buildConnector(options)`, whose plain
 * http: connections read through SocketReads. https: and upgraded sockets go through `buildConnector(options)`.
 */
export function bigReadConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  const plain = buildConnector(options);
  return (opts, callback) => {
    if (opts.protocol !== 'http:' || opts.httpSocket !== undefined) return plain(opts, callback);
    const reads = new SocketReads();
    // A connector per connection: `onread` is a socket option, and its callback must know its socket.
    const connect = buildConnector({ ...options, onread: { buffer: reads.next, callback: reads.read } } as buildConnector.BuildOptions);
    // undici's connector returns the socket (its types say void) and calls back with it on 'connect', before the
    // socket's first read: either way the reads know their socket before bytes arrive.
    const ret: unknown = connect(opts, (...args) => {
      if (args[1] !== null) reads.socket = args[1] as Socket;
      callback(...args);
    });
    if (ret instanceof Socket) reads.socket = ret;
  };
}
