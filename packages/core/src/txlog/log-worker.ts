import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { formatNdjson, formatVarnishlog, type TxGrouping } from './format.js';
import { decodeBatch, type WireBatch } from './wire.js';

/**
 * The log file's writer thread (txlog/file-sink.ts): formats the groups the proxy thread posts and appends them to the
 * file, as varnishlog formats what varnishd appended to its shared log. Messages: a batch of groups to write;
 * `'end'`, answered `'ended'` once everything before it is written. A write error is reported once (`{ error }`)
 * and ends the writing.
 */
const { fd, format, grouping } = workerData as { fd: number; format: 'text' | 'ndjson'; grouping: TxGrouping };
let failed = false;

function write(batch: WireBatch): void {
  let text = '';
  for (const g of decodeBatch(batch)) text += format === 'text' ? formatVarnishlog(g, grouping) : formatNdjson(g);
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off);
}

parentPort?.on('message', (m: WireBatch | 'end') => {
  if (m === 'end') {
    parentPort?.postMessage('ended');
    return;
  }
  if (failed) return;
  try {
    write(m);
  } catch (e: unknown) {
    failed = true;
    parentPort?.postMessage({ error: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
  }
});
