import type { Socket } from 'node:net';

/**
 * Origin sockets read into slabs (issue 16, bulk miss): each read lands in the unused rest of a `SLAB_BYTES` buffer
 * and is handed to undici as a view of it, instead of Node's one 64 KiB allocation per read (shrunk by a copy when
 * the read is short). A read takes whatever the socket holds up to the rest of the slab, so a cold miss arrives in
 * fewer, larger chunks (each chunk is parsed, appended to the cache object, woken on and written to the client
 * once), and V8 tracks one ArrayBuffer per slab rather than one per 64 KiB.
 *
 * It uses net.Socket's documented `onread` option (`buffer` as a function: Node asks it for the next read's buffer
 * after each read; `callback` gets each read) and pushes every read into the socket's own Readable, so undici reads
 * the socket as before ('readable', read(), 'end'). A slab is never written twice: a view handed out keeps it alive
 * (GC), and the next read goes into the bytes after it. Reads shorter than `COPY_BELOW_BYTES` (a small response, a
 * head) are copied out to a Buffer of their size and the same region is read into again, so a small cached object
 * never keeps a slab alive.
 *
 * Backpressure is the socket's: a read returns false (Node stops reading) while the socket's Readable holds more
 * than `HOLD_BYTES` undici has not taken (it stops taking them when its body consumer pauses).
 */
export const SLAB_BYTES = 256 * 1024;
/** A slab's rest smaller than this is left unused; the next read gets a new slab. */
export const MIN_READ_BYTES = 64 * 1024;
/** Reads shorter than this are copied out, and their region read into again. */
export const COPY_BELOW_BYTES = 8 * 1024;
/** Bytes read and not yet taken by undici past which the socket stops reading. */
export const HOLD_BYTES = SLAB_BYTES;

/** Per-socket `onread` option: a new one for each connection (its slab is that connection's). */
export function slabOnread(): { buffer: () => Buffer; callback: (this: Socket, nread: number, buf: Buffer) => boolean } {
  let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  let used = 0;
  return {
    buffer(): Buffer {
      if (SLAB_BYTES - used < MIN_READ_BYTES) {
        slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
        used = 0;
      }
      return slab.subarray(used);
    },
    callback(this: Socket, nread: number, buf: Buffer): boolean {
      let chunk: Buffer;
      if (nread < COPY_BELOW_BYTES) {
        chunk = Buffer.allocUnsafeSlow(nread);
        buf.copy(chunk, 0, 0, nread);
      } else {
        chunk = buf.subarray(0, nread);
        used += nread;
      }
      this.push(chunk);
      return this.readableLength <= HOLD_BYTES;
    },
  };
}
