// The transaction log's cost per request without sockets (issue 16): the records a 1 KiB hit writes (client request,
// lookup, response from a header block, accounting), built N times through a TxLog whose only sink is the one tested,
// CPU measured for the proxy thread alone (/proc/self/task) and for the process (all threads).
// Usage: node bench/txlog-micro.mjs FORMAT MODE [--core CHECKOUT]   FORMAT text|ndjson, MODE off|record|stream|file
//   record: the records built and handed to a sink that drops them (the recording alone)
//   stream: StreamSink to a WriteStream on /dev/null (formatting in the proxy thread, as for stdout)
//   file:   FileSink on /dev/null (as --log-file: since issue 16's second round formatted as bytes in the proxy thread
//           when a group ends, written by libuv's pool; before it, formatted and written by a writer thread)
// Repeatable figures on a loaded machine: run under callgrind with N=2000 and N=6000 and divide the difference of
// the proxy thread's instruction counts by 4000 (bench/results/2026-12-01-txlog-callgrind.json):
//   N=2000 K=1 valgrind --tool=callgrind --separate-threads=yes node bench/txlog-micro.mjs text file
import { createWriteStream, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const coreIdx = argv.indexOf('--core');
const checkout = coreIdx >= 0 ? path.resolve(argv[coreIdx + 1]) : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const core = await import(path.join(checkout, 'packages/core/dist/index.js'));
const rec = await import(path.join(checkout, 'packages/core/dist/txlog/records.js'));
const [fmt = 'text', mode = 'stream'] = argv;
const N = Number(process.env.N ?? 100000);
const K = Number(process.env.K ?? 5);
const sink =
  mode === 'file' ? new core.FileSink(openSync('/dev/null', 'a'), fmt) : mode === 'record' ? { write() {}, flush() {} } : mode === 'off' ? undefined : new core.StreamSink(createWriteStream('/dev/null', { fd: openSync('/dev/null', 'a') }), fmt);
const log = new core.TxLog(sink === undefined ? [] : [sink]);
const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: Date.now() });
const conn = { remotePort: 5000 };
const headers = { host: '127.0.0.1:18802', 'user-agent': 'curl/7.88.1', accept: '*/*' };
const obj = { fetchVxid: 3, graceSec: 0, keepSec: 86400, ttlSec: 3600, responseTimeMs: Date.now(), ageSec: 0, storedMs: Date.now(), initialAgeSec: 0 };
// The object's stored headers (serialised once per object), then what each hit adds.
const headBlock = 'content-type: application/octet-stream\r\ncache-control: max-age=3600\r\nvia: 1.1 sluice\r\n';

function hit() {
  if (sink === undefined) return;
  const t = log.beginRequest(sess);
  rec.logClientRequest(t, conn, '127.0.0.1', { method: 'GET', url: '/static/1k', httpVersion: '1.1', headers });
  rec.logVcl(t, 'RECV', 'hash');
  rec.logLookup(t, { kind: 'hit', obj }, Date.now(), 0);
  rec.logResp(t, 200, `${headBlock}age: 0\r\ncache-status: sluice; hit; ttl=3600\r\ncontent-length: 1024\r\n`, true, headBlock);
  rec.logRequestEnd(t, 88, 0, { headerBytes: 172, bodyBytes: 1024 });
}

const threadMicros = () => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
};
let bestThread = Infinity;
let bestProcess = Infinity;
for (let k = 0; k < K; k++) {
  const t0 = process.cpuUsage();
  const m0 = threadMicros();
  for (let i = 0; i < N; i++) {
    hit();
    if (i % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  sink?.flush();
  await new Promise((r) => setTimeout(r, 80));
  const u = process.cpuUsage(t0);
  bestThread = Math.min(bestThread, (threadMicros() - m0) / N);
  bestProcess = Math.min(bestProcess, (u.user + u.system) / N);
}
if (mode === 'file') await sink.close();
console.log(`${fmt} ${mode} ${path.basename(checkout)}: proxy thread ${bestThread.toFixed(2)} us/request, process ${bestProcess.toFixed(2)} us/request (best of ${K} x ${N})`);
process.exit(0);
