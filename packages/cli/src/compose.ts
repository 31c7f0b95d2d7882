import { closeSync, constants, createWriteStream, openSync, statSync, type WriteStream } from 'node:fs';
import net from 'node:net';
import { createProxy, FileSink, LiveSink, StreamSink, TxLog, type LogLine, type Proxy, type ProxyHooks, type ReloadableOptions, type Transaction, type TxSink, type Upstream } from '@sluice/core';
import { createOriginClient, type OriginClient } from '@sluice/origin-client';
import type { Config } from './config.js';
import { CliError } from './errors.js';
import { compileNcsaFormat, NcsaFormatSink } from './ncsa-format.js';

/** The one place that builds core and origin-client together. */
export interface Composed {
  proxy: Proxy;
  live: LiveSink;
  origin: OriginClient;
  close(): Promise<void>;
  /** Graceful stop: responses in flight may finish for `timeoutMs`; resolves with how many connections were cut. */
  shutdown(timeoutMs: number): Promise<{ cut: number }>;
}

/**
 * Opens --log-file for appending, now: a path that cannot be opened is a one-line error before anything listens,
 * not a crash once the first record is written. A later write error (disk full) is reported once on stderr.
 */
function openLogFile(file: string): number {
  try {
    return isFifo(file) ? openFifo(file) : openSync(file, 'a');
  } catch (e: unknown) {
    // "ENOENT: no such file or directory, open '/x/y.log'" -> "ENOENT: no such file or directory"
    const why = (e as Error).message.replace(/, open .*$/, '');
    throw new CliError('CLI_ERR_FLAG_INVALID', `--log-file: cannot open ${file} (${why})`, { cause: e });
  }
}

function isFifo(file: string): boolean {
  try {
    return statSync(file).isFIFO();
  } catch {
    return false;
  }
}

/**
 * A FIFO is opened non-blocking, so a reader that stops reading fills the pipe and the writes wait (EAGAIN, retried),
 * never blocking a libuv pool thread: a write blocked there forever kept the process from exiting, even on a second
 * signal. With no reader yet, the open waits for one as before (as nginx's would), then the FIFO is opened again
 * non-blocking and the first descriptor closed.
 */
function openFifo(file: string): number {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK;
  try {
    return openSync(file, flags);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
  }
  const waiting = openSync(file, 'a');
  try {
    return openSync(file, flags);
  } finally {
    closeSync(waiting);
  }
}

/**
 * Formatted log bytes that may wait in a stream sink's output (stdout through a pipe, --log-format to a file or
 * FIFO) before groups are dropped and counted in log_dropped, instead of queued without bound: 10 000 requests logged
 * as text to a stdout pipe nobody read grew RSS by 113 MiB, and on without end.
 */
const MAX_STREAM_PENDING = 4 * 1024 * 1024;

/**
 * The log sink as the proxy sees it: counts the groups the sink drops in the proxy's log_dropped counter (a FileSink
 * drops past its own bound, a StreamSink while `out` holds MAX_STREAM_PENDING bytes: whole blocks, a -g session block
 * counted as its requests and the session; the access log's lines are dropped here).
 */
class CountedSink implements TxSink {
  stats: { log_dropped: number } | undefined;

  constructor(
    readonly inner: LogSink,
    readonly out: { writableLength?: number } | undefined,
    /** The --log-file stream (not stdout): ended, or destroyed if it takes nothing more, when the proxy stops. */
    readonly fileStream?: WriteStream | net.Socket,
  ) {}

  get active(): boolean {
    return (this.inner as TxSink).active !== false;
  }

  get dropped(): number {
    return this.stats?.log_dropped ?? 0;
  }

  private full(): boolean {
    return (this.out?.writableLength ?? 0) > MAX_STREAM_PENDING;
  }

  /** What the inner sink dropped itself (a FileSink past its bound; a StreamSink when `full` as a block goes out). */
  private innerDropped(): number {
    return this.inner instanceof FileSink || this.inner instanceof StreamSink ? this.inner.dropped : 0;
  }

  write(root: Transaction): void {
    // The access log's own sink (--log-format) has no count of its own: its lines are dropped here.
    if (this.inner instanceof NcsaFormatSink && this.full()) return this.drop(1);
    const before = this.innerDropped();
    this.inner.write(root);
    this.drop(this.innerDropped() - before);
  }

  session(t: Transaction): void {
    const before = this.innerDropped();
    (this.inner as TxSink).session?.(t);
    this.drop(this.innerDropped() - before);
  }

  private drop(n: number): void {
    if (n > 0 && this.stats !== undefined) this.stats.log_dropped += n;
  }
}

const cannotWrite = (file: string, code: string): void => {
  process.stderr.write(`sluice: --log-file: cannot write ${file} (${code}); the transaction log stops\n`);
};

/** What --log and --log-file write to; `flush` writes what is pending, `close` (a FileSink) waits for it. */
type LogSink = StreamSink | FileSink | NcsaFormatSink;

/**
 * The log's sink: to a file, text and NDJSON are formatted and written by a thread of their own (FileSink), so the
 * proxy thread only appends records; the access log (ncsa, --log-format) and stdout are written from the proxy thread.
 */
function logSink(config: Config): CountedSink | undefined {
  if (config.log === 'none') return undefined;
  const file = config.logFile;
  const fd = file === undefined ? undefined : openLogFile(file);
  if (file !== undefined && fd !== undefined && config.log !== 'ncsa' && config.logFormat === undefined) {
    // The sink owns the fd: closed when the proxy stops, after the last group is written (endLog).
    return new CountedSink(new FileSink(fd, config.log, config.logGrouping, (code) => cannotWrite(file, code), true), undefined);
  }
  let out: { write(s: string): unknown; writableLength?: number } = process.stdout;
  let stream: WriteStream | net.Socket | undefined;
  if (file !== undefined && fd !== undefined) {
    // A FIFO through a libuv pipe (non-blocking, with a write queue to bound); a file through a WriteStream.
    stream = isFifo(file) ? new net.Socket({ fd, readable: false, writable: true }) : createWriteStream(file, { fd });
    stream.once('error', (e: Error) => cannotWrite(file, (e as NodeJS.ErrnoException).code ?? e.message));
    out = stream;
  }
  // A stream sink drops whole blocks (a -g session block with its requests, counted so) while `out` is full.
  const mayWrite = (): boolean => (out.writableLength ?? 0) <= MAX_STREAM_PENDING;
  const sink = config.logFormat !== undefined ? new NcsaFormatSink(out, compileNcsaFormat(config.logFormat)) : new StreamSink(out, config.log, config.logGrouping, mayWrite);
  return new CountedSink(sink, out, stream);
}

export function compose(config: Config, onLog?: (line: LogLine) => void, onTransitBytes?: (bytes: number) => void): Composed {
  const fileSink = logSink(config);
  const origin = createOriginClient({ backends: config.backends, director: config.director, directors: config.directors, connectAllow: config.connectAllow });
  // The port contract: the compiler checks here that the origin client fits core's Upstream.
  const upstream: Upstream = origin;
  // The live sink feeds `sluice log` through the admin API; it costs nothing while no one is tailing.
  const live = new LiveSink();
  const sinks: TxSink[] = [live];
  if (fileSink !== undefined) sinks.push(fileSink);
  const txlog = new TxLog(sinks, { logSecrets: config.logSecrets });
  const proxy = createProxy({
    txlog,
    upstream,
    ...policyOf(config),
    storageBytes: config.storageBytes,
    requestBody: config.requestBody,
    sendTimeoutMs: config.sendTimeoutMs,
    sharedReadBuffer: config.sharedReadBuffer,
    directWrites: config.directWrites,
    tunnelIdleTimeoutMs: config.tunnelIdleTimeoutMs,
    ...(onLog === undefined ? {} : { onLog }),
    ...(onTransitBytes === undefined ? {} : { onTransitBytes }),
  });
  if (fileSink !== undefined) fileSink.stats = proxy.stats;
  return {
    proxy,
    live,
    origin,
    close: async () => {
      await proxy.close();
      await origin.destroy();
      // Groups still buffered in the log sink are written before the process goes.
      await endLog(fileSink, LOG_END_MS);
    },
    shutdown: async (timeoutMs) => {
      const r = await proxy.shutdown(timeoutMs);
      await origin.destroy();
      await endLog(fileSink, LOG_END_MS);
      return r;
    },
  };
}

/** How long a stop waits for the log's last writes (a FIFO nobody reads takes none: the stop must still end). */
const LOG_END_MS = 2000;

async function endLog(counted: CountedSink | undefined, boundMs: number): Promise<void> {
  if (counted === undefined) return;
  const sink = counted.inner;
  let timer: NodeJS.Timeout | undefined;
  if (sink instanceof FileSink) {
    const late = await Promise.race([sink.close().then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), boundMs)))]);
    clearTimeout(timer);
    if (late) {
      // Nothing more is written; the fd closes once the write in flight ends.
      sink.destroy();
      process.stderr.write(`sluice: --log-file: the file took no writes for ${boundMs / 1000}s; what was left of the log is not written\n`);
    }
  } else {
    sink.flush();
    const f = counted.fileStream;
    // Its pending writes would keep the process alive (a FIFO nobody reads: for ever): ended once written, else
    // destroyed after boundMs.
    if (f !== undefined && !f.destroyed) {
      const done = new Promise<boolean>((r) => {
        f.end(() => r(false));
        f.once('error', () => r(false));
      });
      const late = await Promise.race([done, new Promise<boolean>((r) => (timer = setTimeout(() => r(true), boundMs)))]);
      clearTimeout(timer);
      if (late) {
        f.destroy();
        process.stderr.write(`sluice: --log-file: the file took no writes for ${boundMs / 1000}s; what was left of the log is not written\n`);
      }
    }
  }
  if (counted.dropped > 0) {
    const where = sink instanceof FileSink ? '--log-file' : '--log';
    process.stderr.write(`sluice: ${where}: ${counted.dropped} group${counted.dropped === 1 ? '' : 's'} dropped (the log's output took writes too slowly; counted in log_dropped)\n`);
  }
}

/**
 * The part of a Config a reload may change (hooks and cache settings), as core takes it: what `proxy` starts with
 * and what SIGHUP or POST /reload applies.
 */
export function policyOf(config: Config): ReloadableOptions<Record<string, unknown>> {
  const hooks: ProxyHooks = config.stream
    ? config.hooks
    : {
        ...config.hooks,
        // --no-stream: doStream off by default, before the user's own hook (which may turn it back on).
        upstreamResponseFilter: (beresp, ctx, slicer) => {
          beresp.doStream = false;
          return config.hooks.upstreamResponseFilter?.(beresp, ctx, slicer);
        },
      };
  return {
    hooks,
    defaultTtlSec: config.defaultTtlSec,
    profile: config.profile,
    cacheTargets: config.cacheTargets,
    defaultGraceSec: config.graceSec,
    defaultKeepSec: config.keepSec,
    staleIfDisconnected: config.staleIfDisconnected,
    hitForMissSec: config.hitForMissSec,
    transitBytes: config.transitBytes,
    streamMinBytes: config.streamMinBytes,
    maxRanges: config.maxRanges,
    maxRestarts: config.maxRestarts,
    maxRetries: config.maxRetries,
    slice: config.slice,
    esi: config.esi,
    purgeAllow: config.purgeAllow,
  };
}

/** Settings a reload cannot change (they need a restart), by flag name, that differ between two configs. */
export function restartOnly(a: Config, b: Config): string[] {
  const differ: string[] = [];
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);
  if (a.listenHost !== b.listenHost || a.listenPort !== b.listenPort) differ.push('listen');
  if (!same(a.backends, b.backends) || a.director !== b.director || !same(a.directors, b.directors)) differ.push('backends');
  if (a.storageBytes !== b.storageBytes) differ.push('storage');
  if (!same(a.adminListen, b.adminListen) || a.adminToken !== b.adminToken) differ.push('admin');
  if (a.log !== b.log || a.logFormat !== b.logFormat || a.logFile !== b.logFile || a.logGrouping !== b.logGrouping || a.logSecrets !== b.logSecrets) differ.push('log');
  if (!same(a.requestBody, b.requestBody) || a.sendTimeoutMs !== b.sendTimeoutMs || a.tunnelIdleTimeoutMs !== b.tunnelIdleTimeoutMs) differ.push('limits');
  if (!same(a.connectAllow, b.connectAllow)) differ.push('connect-allow');
  if (a.sharedReadBuffer !== b.sharedReadBuffer) differ.push('shared-read-buffer');
  if (a.directWrites !== b.directWrites) differ.push('direct-writes');
  return differ;
}

/** Formats a log line for stderr. */
export function formatLogLine(l: LogLine): string {
  return `${new Date().toISOString()} ${l.level} ${l.event}${l.url === undefined ? '' : ` ${l.url}`}: ${l.message}`;
}
