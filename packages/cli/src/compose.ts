import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { createProxy, FileSink, LiveSink, StreamSink, TxLog, type LogLine, type Proxy, type ProxyHooks, type ReloadableOptions, type TxSink, type Upstream } from '@sluice/core';
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
    return openSync(file, 'a');
  } catch (e: unknown) {
    // "ENOENT: no such file or directory, open '/x/y.log'" -> "ENOENT: no such file or directory"
    const why = (e as Error).message.replace(/, open .*$/, '');
    throw new CliError('CLI_ERR_FLAG_INVALID', `--log-file: cannot open ${file} (${why})`, { cause: e });
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
function logSink(config: Config): LogSink | undefined {
  if (config.log === 'none') return undefined;
  const file = config.logFile;
  const fd = file === undefined ? undefined : openLogFile(file);
  if (file !== undefined && fd !== undefined && config.log !== 'ncsa' && config.logFormat === undefined) {
    return new FileSink(fd, config.log, config.logGrouping, (code) => cannotWrite(file, code));
  }
  let out: { write(s: string): unknown } = process.stdout;
  if (file !== undefined && fd !== undefined) {
    const stream: WriteStream = createWriteStream(file, { fd });
    stream.once('error', (e) => cannotWrite(file, (e as NodeJS.ErrnoException).code ?? e.message));
    out = stream;
  }
  return config.logFormat !== undefined ? new NcsaFormatSink(out, compileNcsaFormat(config.logFormat)) : new StreamSink(out, config.log, config.logGrouping);
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
    tunnelIdleTimeoutMs: config.tunnelIdleTimeoutMs,
    ...(onLog === undefined ? {} : { onLog }),
    ...(onTransitBytes === undefined ? {} : { onTransitBytes }),
  });
  return {
    proxy,
    live,
    origin,
    close: async () => {
      await proxy.close();
      await origin.destroy();
      // Groups still buffered in the log sink are written before the process goes.
      await endLog(fileSink);
    },
    shutdown: async (timeoutMs) => {
      const r = await proxy.shutdown(timeoutMs);
      await origin.destroy();
      await endLog(fileSink);
      return r;
    },
  };
}

async function endLog(sink: LogSink | undefined): Promise<void> {
  if (sink instanceof FileSink) await sink.close();
  else sink?.flush();
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
  return differ;
}

/** Formats a log line for stderr. */
export function formatLogLine(l: LogLine): string {
  return `${new Date().toISOString()} ${l.level} ${l.event}${l.url === undefined ? '' : ` ${l.url}`}: ${l.message}`;
}
