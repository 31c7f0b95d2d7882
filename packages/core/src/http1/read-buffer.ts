import type { Socket } from 'node:net';

/**
 * Client sockets read into one shared buffer instead of through their Readable (issue 16, a 1 KiB hit's cost).
 *
 * By default every read of a socket allocates a 64 KiB zero-filled backing store in C++, shrinks it to the bytes read
 * (a second allocation and a copy), wraps it in a Buffer and pushes it through the Readable ('data'). Node's public
 * `onread` option of `net.Socket` (docs: net, `new net.Socket([options])`, `onread`) reads into a caller's buffer and
 * calls back with the count instead, but `net.createServer` does not pass it to the sockets it accepts. This sets the
 * same three fields the Socket constructor sets from `onread` (found by their symbols' descriptions) and asks the
 * handle for the user buffer, as that constructor does. Where the fields are not found as expected (another Node), it
 * returns false and the caller listens to 'data' as before.
 *
 * One buffer serves every socket: libuv reads one socket, the callback runs to completion, then the next read starts,
 * so the bytes in it are only valid during the callback. A caller keeps nothing of them past the callback without a
 * copy (`isShared` tells them apart). `pause()`/`resume()` of such a socket stop and start the reads at once (Node's
 * Socket.pause does readStop when `onread` is in use).
 */
const SHARED = Buffer.allocUnsafeSlow(64 * 1024);

/** Whether `b` is (a view of) the shared read buffer: to be copied before being kept past the read callback. */
export function isShared(b: Buffer): boolean {
  return b.buffer === SHARED.buffer;
}

/** `b`, or a copy of it when it is a view of the shared read buffer. */
export function owned(b: Buffer): Buffer {
  return b.buffer === SHARED.buffer ? Buffer.from(b) : b;
}

/** The bytes of the read being handled (the first `n` of the shared buffer): a view, valid until the callback returns. */
export function sharedView(n: number): Buffer {
  return SHARED.subarray(0, n);
}

/** The bytes of the read being handled as latin1 text, without a Buffer view of them. */
export function sharedText(n: number): string {
  return SHARED.toString('latin1', 0, n);
}

let symbols: { buffer: symbol; callback: symbol; generator: symbol } | null | undefined;

function socketSymbols(socket: Socket): { buffer: symbol; callback: symbol; generator: symbol } | null {
  if (symbols !== undefined) return symbols;
  const own = Object.getOwnPropertySymbols(socket);
  const find = (d: string): symbol | undefined => own.find((s) => s.description === d);
  const buffer = find('kBuffer');
  const callback = find('kBufferCb');
  const generator = find('kBufferGen');
  symbols = buffer !== undefined && callback !== undefined && generator !== undefined ? { buffer, callback, generator } : null;
  return symbols;
}

/**
 * Makes `socket` (just accepted, nothing read yet) read into the shared buffer and call `onRead(n)` with the count of
 * each read (the bytes are sharedView(n), or sharedText(n) as latin1); returning false stops reading (as a Readable push returning false does). False when this Node does
 * not allow it: then nothing changed.
 */
export function readIntoShared(socket: Socket, onRead: (n: number) => boolean | void): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  const s = socketSymbols(socket);
  if (s === null) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  // Only a socket created without onread: the three fields exist and are unset.
  if (fields[s.buffer] !== null || fields[s.callback] !== null || fields[s.generator] !== null) return false;
  fields[s.buffer] = SHARED;
  // Node calls it with (count, buffer); the buffer is always SHARED, and the caller makes a view only when it needs one.
  fields[s.callback] = onRead;
  handle.useUserBuffer(SHARED);
  return true;
}
