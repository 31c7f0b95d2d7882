import type { Socket } from 'node:net';

/**
 * Origin sockets read in larger pieces (issue 16, bulk miss): each read may take `READ_BYTES` (256 KiB) where Node's
 * own reads take 64 KiB, so a cold miss arrives in about four times fewer chunks (each chunk is one read syscall,
 * one parse, one append to the cache object, one reader wake-up, one client write, one ArrayBuffer for V8 to track).
 *
 * It uses net.Socket's documented `onread` option (`buffer` as a function: Node asks it for the next read's buffer
 * after each read; `callback` gets each read) and pushes every read into the socket's own Readable, so undici reads
 * the socket as before ('readable', read(), 'end'). A read that fills at least three quarters of its buffer is
 * handed out as a view of it and the next read gets a new buffer: a buffer is never read into twice once a chunk of
 * it is out. A shorter read is copied out to a Buffer of its own size and the same buffer is read into again (what
 * Node does with a short read: it copies it to a smaller store), so a chunk never keeps more than a third again of its
 * size alive, and a small response never a whole read buffer.
 *
 * Backpressure is the socket's: a read returns false (Node stops reading) while the socket's Readable holds more
 * than `HOLD_BYTES` undici has not taken (it stops taking them when its body consumer pauses: an unstored body ahead
 * of a slow client by the transit buffer). A connection held back like that reads `SMALL_READ_BYTES` (Node's 64 KiB)
 * at a time for its next `SMALL_READS` reads: a pass to a slow client gains nothing from large reads (it moves at
 * the client's pace) and its large buffers, each alive until a young GC, grew a 1 GiB pass's RSS by ~3 MiB (bench/
 * streaming.mjs --scenario transit).
 */
export const READ_BYTES = 256 * 1024;
/** What a read takes on a connection that was held back recently. */
export const SMALL_READ_BYTES = 64 * 1024;
/** Reads at SMALL_READ_BYTES after a hold-back, before the connection reads READ_BYTES again. */
export const SMALL_READS = 64;
/** Bytes read and not yet taken by undici past which the socket stops reading. */
export const HOLD_BYTES = READ_BYTES;

/** Per-socket `onread` option: a new one for each connection (its read buffer is that connection's). */
export function originOnread(): { buffer: () => Buffer; callback: (this: Socket, nread: number, buf: Buffer) => boolean } {
  let current: Buffer | undefined;
  /** Reads left at SMALL_READ_BYTES. */
  let small = 0;
  return {
    buffer(): Buffer {
      current ??= Buffer.allocUnsafeSlow(small > 0 ? SMALL_READ_BYTES : READ_BYTES);
      return current;
    },
    callback(this: Socket, nread: number, buf: Buffer): boolean {
      let chunk: Buffer;
      // Handed out when at least three quarters full: a chunk keeps at most a third again of its size alive.
      if (4 * nread >= 3 * buf.length) {
        chunk = buf.subarray(0, nread);
        current = undefined;
      } else {
        chunk = Buffer.allocUnsafeSlow(nread);
        buf.copy(chunk, 0, 0, nread);
      }
      this.push(chunk);
      if (small > 0 && --small === 0 && current !== undefined && current.length !== READ_BYTES) current = undefined;
      if (this.readableLength <= HOLD_BYTES) return true;
      small = SMALL_READS;
      if (current !== undefined && current.length !== SMALL_READ_BYTES) current = undefined;
      return false;
    },
  };
}
