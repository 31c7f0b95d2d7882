import { Worker } from 'node:worker_threads';
import type { TxGrouping, TxView } from './format.js';
import { StreamSink } from './txlog.js';
import { encodeBatch } from './wire.js';

/**
 * The transaction log to a file, formatted and written by a thread of its own (txlog/log-worker.ts), as Varnish's log
 * is formatted by its reader: the proxy thread appends records (txlog/raw.ts) and every 20 ms (or 128 groups) posts
 * the ended groups as they were appended (txlog/wire.ts); the writer thread formats them (text or NDJSON, the same bytes StreamSink writes) and
 * appends them to the file. A write error is reported once through `onError` and the sink goes inactive, so a proxy
 * logging nowhere else stops building records. `close` waits until everything posted is written.
 */
export class FileSink extends StreamSink {
  private readonly worker: Worker;
  private failed = false;

  constructor(
    fd: number,
    format: 'text' | 'ndjson',
    grouping: TxGrouping = 'request',
    private readonly onError: (code: string) => void = () => {},
  ) {
    super({ write: () => undefined }, format, grouping);
    this.worker = new Worker(workerUrl(), { workerData: { fd, format, grouping } });
    // The writer thread never keeps the process alive; `close` refs it while it drains.
    this.worker.unref();
    this.worker.on('message', (m: { error?: string } | 'ended') => {
      if (typeof m === 'object' && m.error !== undefined) this.fail(m.error);
    });
    this.worker.on('error', (e) => this.fail(e.message));
  }

  get active(): boolean {
    return !this.failed;
  }

  private fail(why: string): void {
    if (this.failed) return;
    this.failed = true;
    this.onError(why);
  }

  protected override writeGroups(groups: readonly TxView[]): void {
    if (this.failed) return;
    const batch = encodeBatch(groups);
    this.worker.postMessage(batch, [batch.values.buffer as ArrayBuffer, batch.isString.buffer as ArrayBuffer]);
  }

  /** Writes what is pending, waits until the writer thread has written everything, and ends it. */
  async close(): Promise<void> {
    this.flush();
    if (!this.failed) {
      this.worker.ref();
      await new Promise<void>((resolve) => {
        const on = (m: unknown): void => {
          if (m !== 'ended') return;
          this.worker.off('message', on);
          resolve();
        };
        this.worker.on('message', on);
        this.worker.once('exit', () => resolve());
        this.worker.postMessage('end');
      });
    }
    await this.worker.terminate();
  }
}

/** The compiled writer next to this file; under the test runner (TypeScript sources) the built one in dist/. */
function workerUrl(): URL {
  return import.meta.url.endsWith('.ts') ? new URL('../../dist/txlog/log-worker.js', import.meta.url) : new URL('./log-worker.js', import.meta.url);
}
