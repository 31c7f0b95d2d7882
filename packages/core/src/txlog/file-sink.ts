import { close as fsClose, write as fsWrite } from 'node:fs';
import { ByteWriter } from './bytes.js';
import type { TxGrouping, TxView } from './format.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';
import { groupCount, SessionGroups, type Transaction, type TxSink } from './txlog.js';

/** A write is started once this much is formatted (else 20 ms after the first group since the last write). */
const FLUSH_BYTES = 256 * 1024;
/** Formatted bytes waiting for a stuck disk past which groups are dropped (counted in `dropped`), not queued. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;

/**
 * The transaction log to a file, text or NDJSON. The proxy thread appends a transaction's records as small raw
 * entries (txlog/raw.ts) while it runs; when its group has ended, the group is formatted at once, straight into one
 * large buffer (txlog/format-bytes.ts: the same bytes as formatVarnishlog / formatNdjson), so its records die young;
 * the buffer goes to the file in one write (the libuv pool's, not blocking the proxy thread) once it holds
 * 256 KiB or 20 ms after its first group. One write at a time: what is formatted meanwhile waits for the next.
 * A write error is reported once through `onError` and the sink goes inactive, so a proxy logging nowhere else stops
 * building records. `close` waits until everything formatted is written.
 */
export class FileSink implements TxSink {
  private failed = false;
  private readonly w = new ByteWriter(FLUSH_BYTES + 64 * 1024);
  /** The buffer of the last write, reused by the next take. */
  private spare: Buffer | undefined;
  private readonly sessions: SessionGroups | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A write is in flight. */
  private writing = false;
  /** A flush was asked for while a write was in flight: the next write starts as that one ends. */
  private again = false;
  private idle: Array<() => void> = [];
  /** Request groups not logged because MAX_PENDING_BYTES were waiting for the disk (a session block: its requests and itself). */
  dropped = 0;

  constructor(
    private readonly fd: number,
    private readonly format: 'text' | 'ndjson',
    private readonly grouping: TxGrouping = 'request',
    private readonly onError: (code: string) => void = () => {},
    /** The sink closes `fd` once its last write ended (`close`, `destroy`): the CLI's --log-file. Else the caller does. */
    private readonly ownsFd = false,
  ) {
    this.sessions = grouping === 'session' ? new SessionGroups((v) => this.emit(v)) : undefined;
  }

  get active(): boolean {
    return !this.failed;
  }

  /** Sessions: their own block with `-g vxid`, the root of their block with `-g session`, not shown with `-g request`. */
  session(t: Transaction): void {
    if (this.sessions !== undefined) this.sessions.session(t);
    else if (this.grouping === 'vxid') this.emit(t);
  }

  write(root: Transaction): void {
    if (this.sessions !== undefined) this.sessions.request(root);
    else this.emit(root);
  }

  /** Formats an ended group into the buffer. */
  private emit(v: TxView): void {
    if (this.failed) return;
    if (this.w.n > MAX_PENDING_BYTES) {
      this.dropped += groupCount(v);
      return;
    }
    if (this.format === 'text') writeVarnishlog(this.w, v, this.grouping);
    else writeNdjson(this.w, v);
    if (this.w.n >= FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(this.onTimer, 20).unref();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.flush();
  };

  /** Starts writing what is formatted (after the write in flight, if one is). */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.failed || this.w.n === 0) return this.settled();
    if (this.writing) {
      this.again = true;
      return;
    }
    const len = this.w.n;
    const buf = this.w.take(this.spare ?? Buffer.allocUnsafeSlow(FLUSH_BYTES + 64 * 1024));
    this.spare = undefined;
    this.writing = true;
    this.writeOut(buf, 0, len);
  }

  private writeOut(buf: Buffer, off: number, len: number): void {
    fsWrite(this.fd, buf, off, len - off, null, (err, written) => {
      if (this.destroyed) {
        this.writing = false;
        return void this.closeFd();
      }
      // A FIFO or pipe opened non-blocking (sluice proxy --log-file on a FIFO) that is full: try again later rather
      // than block a libuv pool thread, which would also keep the process from exiting.
      if (err !== null && err.code === 'EAGAIN') {
        setTimeout(() => this.writeOut(buf, off, len), 20).unref();
        return;
      }
      if (err !== null) {
        this.writing = false;
        this.fail(err.code ?? err.message);
        return;
      }
      if (off + written < len) return this.writeOut(buf, off + written, len);
      this.writing = false;
      // Only a buffer of the usual size is kept (one grown for a burst goes).
      if (buf.length <= FLUSH_BYTES * 2) this.spare = buf;
      if (this.again || this.w.n >= FLUSH_BYTES) {
        this.again = false;
        this.flush();
      } else if (this.w.n > 0) this.timer ??= setTimeout(this.onTimer, 20).unref();
      else this.settled();
    });
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = true;
    this.w.take(Buffer.alloc(0));
    this.onError(why);
    this.settled();
  }

  /** Wakes `close` when nothing is left to write. */
  private settled(): void {
    if (this.writing || (!this.failed && this.w.n > 0)) return;
    const waiting = this.idle;
    this.idle = [];
    for (const f of waiting) f();
  }

  /** Writes what is pending and waits until it is written (or the file has failed); then closes an owned fd. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.idle.push(resolve);
      this.flush();
      this.settled();
    });
    if (!this.writing) await this.closeFd();
  }

  private destroyed = false;
  private fdClosed = false;

  /**
   * Gives up what is not written yet (a FIFO nobody reads): nothing more is written, and an owned fd is closed once
   * the write in flight, if any, has ended (never under it: the number could be reused by then).
   */
  destroy(): void {
    this.destroyed = true;
    if (!this.failed) {
      this.failed = true;
      this.w.take(Buffer.alloc(0));
      this.settled();
    }
    if (!this.writing) void this.closeFd();
  }

  private closeFd(): Promise<void> {
    if (!this.ownsFd || this.fdClosed) return Promise.resolve();
    this.fdClosed = true;
    return new Promise((resolve) => fsClose(this.fd, () => resolve()));
  }
}
