// The transaction log's cost per 1 KiB hit in one process, this tree against another built checkout, interleaved
// (issue 16): the records a prepared hit on a keep-alive connection writes (txlog-micro.mjs's hit, its header block one
// string as the prepared hit's is), then, per group, the main thread's CPU time (/proc/self/task schedstat, ns) for
//   record   1000 hits' records built (TxLog, Transaction, records.ts), handed to a sink that keeps them
//   text     those 1000 groups formatted as varnishlog text into one buffer (format-bytes.ts)
//   ndjson   the same as NDJSON
//   file     the same groups through a FileSink (text) to /dev/null: formatting, buffering, fs.write calls
// Each measure runs the trees in turn, `--rounds` times (default 15), and keeps the best (the least disturbed by other
// processes); the buffer fits in cache, so this is the log's own work without the kernel's write.
// Usage: node bench/txlog-format.mjs [--base CHECKOUT] [--rounds N] [--out FILE]
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const base = opt('--base') === undefined ? undefined : path.resolve(opt('--base'));
const ROUNDS = Number(opt('--rounds', 15));
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-txlog-format.json`));
const GROUPS = 1000;

const threadNs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);

async function tree(root) {
  const core = await import(path.join(root, 'packages/core/dist/index.js'));
  const rec = await import(path.join(root, 'packages/core/dist/txlog/records.js'));
  const fb = await import(path.join(root, 'packages/core/dist/txlog/format-bytes.js'));
  const { ByteWriter } = await import(path.join(root, 'packages/core/dist/txlog/bytes.js'));
  let groups = [];
  const log = new core.TxLog([{ write: (g) => groups.push(g) }]);
  const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: Date.now() });
  const conn = { remotePort: 5000 };
  const headers = { host: '127.0.0.1:18802', 'user-agent': 'curl/7.88.1', accept: '*/*' };
  const obj = { fetchVxid: 3, graceSec: 0, keepSec: 86400, ttlSec: 3600, responseTimeMs: Date.now(), ageSec: 0, storedMs: Date.now(), initialAgeSec: 0 };
  // The prepared hit's whole header block, one string per object and Age (deliver/head.ts).
  const block = 'content-type: application/octet-stream\r\ncache-control: max-age=3600\r\nvia: 1.1 sluice\r\nage: 0\r\ncache-status: sluice; hit; ttl=3600\r\ncontent-length: 1024\r\n';
  const hit = () => {
    const t = log.beginRequest(sess);
    rec.logClientRequest(t, conn, '127.0.0.1', { method: 'GET', url: '/static/1k', httpVersion: '1.1', headers });
    rec.logVcl(t, 'RECV', 'hash');
    rec.logLookup(t, { kind: 'hit', obj }, Date.now(), 0);
    rec.logResp(t, 200, block, true, block);
    rec.logRequestEnd(t, 88, 0, { headerBytes: 172, bodyBytes: 1024 });
  };
  const w = new ByteWriter(4 * 1024 * 1024);
  const file = new core.FileSink(openSync('/dev/null', 'a'), 'text');
  return {
    name: root === ROOT ? 'this' : 'base',
    record() {
      groups = [];
      for (let i = 0; i < GROUPS; i++) hit();
      return GROUPS;
    },
    text() {
      w.n = 0;
      for (const g of groups) fb.writeVarnishlog(w, g);
      return groups.length;
    },
    ndjson() {
      w.n = 0;
      for (const g of groups) fb.writeNdjson(w, g);
      return groups.length;
    },
    file() {
      for (const g of groups) file.write(g);
      file.flush();
      return groups.length;
    },
    close: () => file.close(),
  };
}

const trees = [await tree(ROOT)];
if (base !== undefined) trees.push(await tree(base));
const best = {};
const load = [os.loadavg()];
for (const t of trees) t.record();
for (const what of ['record', 'text', 'ndjson', 'file']) {
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of trees) {
      // Five batches per measure: schedstat moves in scheduler ticks, so a measure must last a few milliseconds.
      const t0 = threadNs();
      let n = 0;
      for (let k = 0; k < 5; k++) n += t[what]();
      const ns = (threadNs() - t0) / n;
      const key = `${t.name} ${what}`;
      best[key] = Math.min(best[key] ?? Infinity, Math.round(ns));
      if (what === 'file') await new Promise((res) => setTimeout(res, 20));
    }
  }
}
load.push(os.loadavg());
for (const t of trees) await t.close();
const rows = [];
for (const what of ['record', 'text', 'ndjson', 'file']) {
  const row = { what, thisNs: best[`this ${what}`], baseNs: best[`base ${what}`] };
  rows.push(row);
  console.log(`${what.padEnd(7)} this ${String(row.thisNs).padStart(6)} ns/group${row.baseNs === undefined ? '' : `   base ${String(row.baseNs).padStart(6)} ns/group   this/base ${(row.thisNs / row.baseNs).toFixed(2)}`}`);
}
console.log(`load average ${load.map((l) => l.map((x) => x.toFixed(1)).join('/')).join(' -> ')}`);
writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), base: base === undefined ? undefined : path.basename(base), rounds: ROUNDS, groups: GROUPS, loadavg: load, method: 'main-thread CPU ns per group from /proc/self/task/<pid>/schedstat, best of the rounds, trees interleaved, one process', rows }, null, 2)}\n`);
console.log(`written ${path.relative(ROOT, out)}`);
process.exit(0);
