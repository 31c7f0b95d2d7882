import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * A whole response written straight to the socket's handle when nothing else is queued on it (issue 16, hits).
 *
 * `socket.write` goes through the Writable machinery on every call: the write state's bookkeeping, a WriteWrap, the
 * handle write, then a `process.nextTick` for the write's callback and the 'drain' check, even when the kernel took
 * every byte at once (the common hit). This does what net.Socket does underneath (`writeGeneric`/`writevGeneric` in
 * Node's stream_base_commons: a WriteWrap from the stream_wrap binding, `handle.writeBuffer` or `handle.writev`, the
 * result in `streamBaseState`), and nothing else when the kernel took it all. When it did not, the rest stays queued
 * in libuv (in order, before anything written later) and the connection is told when it has left (`onDone`), as Node's
 * `onWriteComplete` tells the Writable; an error destroys the socket with the same errno error Node gives.
 *
 * Used only while the Writable has nothing queued, buffered, corked or ending (otherwise these bytes would overtake
 * it), on a plain TCP handle; `writeDirect` returns 'fallback' then and the caller uses `socket.write`. Where this
 * Node does not expose what is needed, `directWriteAvailable` is false and every write goes through `socket.write`.
 */

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  kBytesWritten: number;
}

interface WriteReq {
  handle: TcpHandle | null;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  _chunks: readonly Buffer[] | null;
  done: DirectWriteDone | null;
  socket: Socket | null;
}

interface TcpHandle {
  writeBuffer(req: WriteReq, data: Buffer): number;
  writev(req: WriteReq, chunks: readonly Buffer[], allBuffers: boolean): number;
}

/** Called once a write that did not finish at once has left (ok) or failed (the socket is destroyed by then). */
export type DirectWriteDone = (ok: boolean) => void;

/** Node's TCP handle class (the tcp_wrap binding): only a plain TCP socket's handle is written to. */
function loadTcp(): (abstract new () => unknown) | undefined {
  try {
    const t = (process as unknown as { binding(name: string): { TCP?: unknown } }).binding('tcp_wrap').TCP;
    return typeof t === 'function' ? (t as abstract new () => unknown) : undefined;
  } catch {
    return undefined;
  }
}

function loadBinding(): StreamWrapBinding | undefined {
  try {
    // process.binding is deprecated (DEP0111, documentation-only; a warning only under --pending-deprecation), but it
    // is the one way to Node's WriteWrap outside Node's own code; 'stream_wrap' is on its allow list.
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof b.WriteWrap !== 'function' || !(b.streamBaseState instanceof Int32Array)) return undefined;
    if (typeof b.kLastWriteWasAsync !== 'number' || typeof b.kBytesWritten !== 'number') return undefined;
    return b as StreamWrapBinding;
  } catch {
    return undefined;
  }
}

const binding = loadBinding();
const TCP = loadTcp();
const state = binding?.streamBaseState;
const kAsync = binding?.kLastWriteWasAsync ?? 0;
const kBytes = binding?.kBytesWritten ?? 0;

/**
 * Direct writes made so far (for tests and benches): taken whole by the kernel at once, finished later, and whole
 * responses written through the Writable instead because it still held an earlier response's bytes; and the write
 * request objects made (one per write that did not finish at once, see newWriteReq).
 */
export const directWriteCounts = { whole: 0, queued: 0, behind: 0, requests: 0 };

/** Whether this Node lets writeDirect write (else it always answers 'fallback'). */
export const directWriteAvailable = binding !== undefined && TCP !== undefined;

/** Node's net.Socket internals read here: the handle and whether a connect is under way. (`bytesWritten` is read from the handle, so direct writes count.) */
interface SocketInternals {
  _handle: TcpHandle | null;
  connecting: boolean;
}

/**
 * The socket's `kLastWriteQueueSize` field (found by its symbol's description, once): net.Socket sets it to the bytes
 * of a write that did not finish at once, and its timeout handler holds the 'timeout' event off while the handle's
 * write queue moves. Undefined until the first socket is seen; null when this Node has no such field (no direct
 * writes then).
 */
let lastWriteQueueSize: symbol | null | undefined;

function queueSizeSymbol(socket: Socket): symbol | null {
  if (lastWriteQueueSize !== undefined) return lastWriteQueueSize;
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'lastWriteQueueSize');
  lastWriteQueueSize = sym !== undefined && typeof (socket as unknown as Record<symbol, unknown>)[sym] === 'number' ? sym : null;
  return lastWriteQueueSize;
}

/**
 * A request object for the handle's write, unbound. Node's StreamBase::Write binds the object (CreateWriteWrap) only
 * when the kernel did not take every byte at once; a write taken whole (the common hit) leaves it as it was. So one
 * object serves every write until one goes async (`spare`): a hit constructs no WriteWrap (an API object with internal
 * fields) and sets none of its fields.
 */
function newWriteReq(b: StreamWrapBinding): WriteReq {
  directWriteCounts.requests++;
  const req = new b.WriteWrap();
  req.handle = null;
  req.oncomplete = onComplete;
  req.async = false;
  req.bytes = 0;
  req.buffer = null;
  req._chunks = null;
  req.done = null;
  req.socket = null;
  return req;
}
let spare: WriteReq | undefined;

/**
 * Writes `bytes` (one Buffer, or Buffers in order) to `socket`'s handle. 'done': the kernel took every byte.
 * 'pending': the rest is queued in libuv and `onDone` is called when it left or failed. 'fallback': nothing was
 * written (the Writable has something queued, the socket is not a writable TCP socket, or this Node does not allow it):
 * write with `socket.write`. A write error destroys the socket (as Node's write does) and answers 'done'.
 */
export function writeDirect(socket: Socket, bytes: Buffer | readonly Buffer[], onDone: DirectWriteDone): 'done' | 'pending' | 'fallback' {
  if (binding === undefined || state === undefined || TCP === undefined) return 'fallback';
  const internals = socket as unknown as SocketInternals;
  const handle = internals._handle;
  if (handle === null || socket.destroyed || internals.connecting || socket.writableEnded) return 'fallback';
  if (socket.writableLength !== 0 || socket.writableCorked !== 0) {
    // Bytes of an earlier response are still in the Writable: these go after them, through it.
    directWriteCounts.behind++;
    return 'fallback';
  }
  // (instanceof, not constructor.name: a native function's name is read through a runtime getter, ~1k instructions.)
  if (!(handle instanceof TCP)) return 'fallback';
  const queueSize = queueSizeSymbol(socket);
  if (queueSize === null) return 'fallback';
  const req = spare ?? newWriteReq(binding);
  const err = Buffer.isBuffer(bytes) ? handle.writeBuffer(req, bytes) : handle.writev(req, bytes, true);
  if (err !== 0) {
    // The handle may have bound the request (a write begun, then failed): not used again.
    spare = undefined;
    socket.destroy(errnoError(err));
    return 'done';
  }
  const written = state[kBytes] as number;
  if (state[kAsync] === 0) {
    // Taken whole at once: the handle never bound the request object (StreamBase::Write returns before it makes a
    // WriteWrap of it), so the next write uses it again.
    spare = req;
    directWriteCounts.whole++;
    return 'done';
  }
  // The handle holds this request until the write completes: the next write gets a new one.
  spare = undefined;
  directWriteCounts.queued++;
  req.handle = handle;
  // The handle writes the rest from these bytes later: keep them (and the callback) alive until it completes.
  req.async = true;
  req.bytes = written;
  // As net.Socket does for a write that went async: its timeout handler sees the queue move.
  (socket as unknown as Record<symbol, number>)[queueSize] = written;
  if (Buffer.isBuffer(bytes)) req.buffer = bytes;
  else req._chunks = bytes;
  req.done = onDone;
  req.socket = socket;
  return 'pending';
}

/** The handle finished a write that did not complete at once (Node's onWriteComplete, for a write without a callback). */
function onComplete(this: WriteReq, status: number): void {
  const socket = this.socket as Socket;
  const done = this.done as DirectWriteDone;
  this.handle = null;
  this.buffer = null;
  this._chunks = null;
  this.done = null;
  this.socket = null;
  if (socket.destroyed) return done(false);
  if (status < 0) {
    socket.destroy(errnoError(status));
    return done(false);
  }
  // As onWriteComplete does: the socket was active, its idle timer starts again.
  (socket as unknown as { _unrefTimer(): void })._unrefTimer();
  done(true);
}

/** The error Node's write gives for a libuv status (`write EPIPE`, code and errno set). */
function errnoError(status: number): NodeJS.ErrnoException {
  let name = 'UNKNOWN';
  try {
    name = getSystemErrorName(status);
  } catch {
    // not a known errno
  }
  const e: NodeJS.ErrnoException = new Error(`write ${name}`);
  e.code = name;
  e.errno = status;
  e.syscall = 'write';
  return e;
}

const EMPTY = Buffer.alloc(0);

/**
 * Calls `cb` once every byte written to `socket` through its Writable so far has left it (the kernel took it) or can
 * no longer be read (the socket is destroyed: its handle is closed, libuv reads nothing more). Write callbacks come in
 * order, so an empty write's comes after every earlier write's; an ended socket is done at 'finish' or 'close'. (Direct
 * writes are the caller's: Connection.releaseWhenWritten waits for them first.) What cache slabs wait for (cache/slab-pool.ts).
 */
export function afterWritten(socket: Socket, cb: () => void): void {
  if (socket.destroyed || socket.writableLength === 0) return cb();
  if (!socket.writableEnded) {
    socket.write(EMPTY, () => cb());
    return;
  }
  let called = false;
  const once = (): void => {
    if (called) return;
    called = true;
    socket.off('finish', once);
    socket.off('close', once);
    cb();
  };
  socket.once('finish', once);
  socket.once('close', once);
}
