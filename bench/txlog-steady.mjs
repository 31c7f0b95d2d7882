// The log's cost per 1 KiB hit group at steady state, in instructions (session 9): the records a prepared hit writes
// (txlog-micro.mjs's hit, its whole header block one stable string as deliver/head.ts passes it, a new block every
// 1000 hits as Age ticks), through one sink, N groups after N warm-up groups and an idle settle (V8's concurrent
// compiles finish while the main thread sleeps), counted between callgrind_control -z and -d from inside the process.
// txlog-micro.mjs's N=2000/N=6000 difference counts compiles and their timing too (under load they move between the
// runs: +-6k per hit); this counts the steady state only.
// Usage: node bench/txlog-steady.mjs MODE [--core CHECKOUT] [--n N] [--settle-ms MS] [--callgrind]
//   MODE  text | ndjson     200 groups recorded once, formatted again and again into one buffer (format-bytes.ts)
//         hit-text | hit-ndjson   recorded and written through a FileSink to /dev/null (as --log-file)
//         record           recorded and dropped
//   --callgrind  re-runs itself under valgrind --tool=callgrind --separate-threads=yes (node --no-concurrent-recompilation
//                unless --node-flags says otherwise) and prints instructions per group on the main thread and in all threads
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const self = fileURLToPath(import.meta.url);
const mode = argv[0] ?? 'hit-text';
const root = path.resolve(opt('--core', path.join(path.dirname(self), '..')));
const N = Number(opt('--n', 5000));
const SETTLE = Number(opt('--settle-ms', 1000));
// Under callgrind V8 compiles on the main thread (--no-concurrent-recompilation), during the warm-up, so the window
// measures optimised code on a loaded machine too (concurrent compiles are starved there: valgrind runs one thread at a
// time); --node-flags '' to leave V8's defaults.
const NODE_FLAGS = opt('--node-flags', '--no-concurrent-recompilation').split(',').filter((x) => x !== '');

if (argv.includes('--callgrind')) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-txlog-steady-'));
  const args = ['--tool=callgrind', '--separate-threads=yes', '--dump-instr=no', `--callgrind-out-file=${dir}/cg.%p`, process.execPath, ...NODE_FLAGS, self, mode, '--core', root, '--n', String(N), '--settle-ms', String(SETTLE), '--inside'];
  const r = spawnSync('valgrind', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr.slice(-2000));
  let main = 0;
  let all = 0;
  for (const f of readdirSync(dir).filter((x) => /\.1-\d+$/.test(x))) {
    const n = Number(/^summary:\s*(\d+)/m.exec(readFileSync(path.join(dir, f), 'utf8'))?.[1] ?? 0);
    all += n;
    if (f.endsWith('-01')) main = n;
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`${mode} ${path.basename(root)} [${NODE_FLAGS.join(' ')}]: main thread ${Math.round(main / N)} instr/group, all threads ${Math.round(all / N)} (N=${N}, settle ${SETTLE} ms, load ${os.loadavg()[0].toFixed(1)})`);
  process.exit(0);
}

const core = await import(path.join(root, 'packages/core/dist/index.js'));
const rec = await import(path.join(root, 'packages/core/dist/txlog/records.js'));
const fb = await import(path.join(root, 'packages/core/dist/txlog/format-bytes.js'));
const { ByteWriter } = await import(path.join(root, 'packages/core/dist/txlog/bytes.js'));
const groups = [];
const file = mode.startsWith('hit-') ? new core.FileSink(openSync('/dev/null', 'a'), mode.slice(4)) : undefined;
const log = new core.TxLog([file ?? { write: (g) => groups.push(g) }]);
const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: Date.now() });
const conn = { remotePort: 5000 };
const headers = { host: '127.0.0.1:18802', 'user-agent': 'curl/7.88.1', accept: '*/*' };
const obj = { fetchVxid: 3, graceSec: 0, keepSec: 86400, ttlSec: 3600, responseTimeMs: Date.now(), ageSec: 0, storedMs: Date.now(), initialAgeSec: 0 };
const head = 'content-type: application/octet-stream\r\ncache-control: max-age=3600\r\nvia: 1.1 sluice\r\n';
let block = '';
function hit(i) {
  if (i % 1000 === 0) block = `${head}age: ${i / 1000}\r\ncache-status: sluice; hit; ttl=${3600 - i / 1000}\r\ncontent-length: 1024\r\n`;
  const t = log.beginRequest(sess);
  rec.logClientRequest(t, conn, '127.0.0.1', { method: 'GET', url: '/static/1k', httpVersion: '1.1', headers });
  rec.logVcl(t, 'RECV', 'hash');
  rec.logLookup(t, { kind: 'hit', obj }, Date.now(), 0);
  rec.logResp(t, 200, block, true, block);
  rec.logRequestEnd(t, 88, 0, { headerBytes: 172, bodyBytes: 1024 });
}
const w = new ByteWriter(1024 * 1024);
let seq = 0;
async function batch(n) {
  if (mode === 'text' || mode === 'ndjson') {
    for (let r = 0; r < n; r += groups.length) {
      w.n = 0;
      for (const g of groups) mode === 'text' ? fb.writeVarnishlog(w, g) : fb.writeNdjson(w, g);
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    hit(seq++);
    if (groups.length > 500) groups.length = 0;
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
  if (file !== undefined) {
    file.flush();
    await new Promise((r) => setTimeout(r, 30));
  }
}
if (mode === 'text' || mode === 'ndjson') for (let i = 0; i < 200; i++) hit(seq++);
await batch(N);
await new Promise((r) => setTimeout(r, SETTLE));
const inside = argv.includes('--inside');
if (inside) spawnSync('callgrind_control', ['-z', String(process.pid)]);
const t0 = process.cpuUsage();
await batch(N);
const u = process.cpuUsage(t0);
if (inside) spawnSync('callgrind_control', ['-d', 'measured', String(process.pid)]);
else console.log(`${mode} ${path.basename(root)}: process CPU ${((u.user + u.system) / N).toFixed(2)} us/group (N=${N})`);
if (file !== undefined) await file.close();
process.exit(0);
