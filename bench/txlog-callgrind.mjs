// The transaction log's cost per 1 KiB hit in instructions (issue 16): what holds up on a loaded machine. Each log mode
// (off, text and NDJSON to a file with --log-file) of this tree and, with --base, of another built checkout: the proxy
// runs under valgrind --tool=callgrind --separate-threads=yes, autocannon fills the cache and warms the JIT, the
// counters are zeroed, N hits are counted and dumped: instructions per hit on the main thread (the event loop: the
// request path, and the log's recording and formatting) and in all threads (the log's writer thread before issue 16's
// second round, libuv's pool doing the file writes, V8's GC and compiler helpers). User space only: the kernel's share
// of the writes is not in it (the same bytes are written either way).
// Usage: node bench/txlog-callgrind.mjs [--base CHECKOUT] [--requests N] [--warmup N] [--settle-ms MS] [--modes off,file-text,file-ndjson] [--trees this,base] [--out FILE] [--keep DIR] [--node-flags a,b]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const base = opt('--base') === undefined ? undefined : path.resolve(opt('--base'));
const N = Number(opt('--requests', 3000));
const WARMUP = Number(opt('--warmup', 3000));
const MODES = opt('--modes', 'off,file-text,file-ndjson').split(',');
// An idle pause after the warm-up, before the counters are zeroed: V8 compiles the hot paths on helper threads, and
// under valgrind a busy main thread starves them, so without it the window measures partly unoptimised code (and the
// compiles) rather than the steady state (see bench/hit-cost.mjs's note).
const SETTLE_MS = Number(opt('--settle-ms', 0));
// Which trees to measure (`this`, `base`, both by default with --base): lets a long run be split across processes.
const TREES = opt('--trees', base === undefined ? 'this' : 'this,base').split(',');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-txlog-callgrind.json`));
const CONNECTIONS = 8;
// Keep each run's callgrind files here (one folder per tree and mode) for callgrind_annotate, instead of deleting them.
const KEEP = opt('--keep');
// Extra node flags for the proxy (e.g. --no-concurrent-recompilation), comma-separated.
const NODE_FLAGS = opt('--node-flags', '').split(',').filter((x) => x !== '');

const flags = (mode, tmp, tag) =>
  mode === 'off' ? [] : mode === 'file-text' ? ['--log', 'text', '--log-file', path.join(tmp, `${tag}.log`)] : ['--log', 'ndjson', '--log-file', path.join(tmp, `${tag}.log`)];

function startProxy(checkout, backend, extra, tmp) {
  const bin = path.join(checkout, 'packages/cli/bin/run.js');
  const args = ['--tool=callgrind', '--collect-atstart=yes', '--separate-threads=yes', `--callgrind-out-file=${tmp}/callgrind.out.%p`, process.execPath, ...NODE_FLAGS, bin, 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet', ...extra];
  const p = spawn('valgrind', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let text = '';
    let err = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m) resolve({ url: m[1], proc: p });
    });
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err.slice(-2000)}`)));
  });
}

const hits = (url, n) =>
  new Promise((resolve, reject) =>
    autocannon({ url, connections: CONNECTIONS, amount: n, pipelining: 1, timeout: 60 }, (e, r) => {
      if (e) return reject(e);
      if (r.non2xx > 0) return reject(new Error(`${r.non2xx} non-2xx answers`));
      resolve(r);
    }),
  );

async function measure(checkout, mode, originUrl, tag) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), `sluice-txlog-cg-${tag}-`));
  const proxy = await startProxy(checkout, originUrl, flags(mode, tmp, tag), tmp);
  const url = `${proxy.url}/static/1k`;
  await (await fetch(url)).arrayBuffer();
  await hits(url, WARMUP);
  if (SETTLE_MS > 0) await sleep(SETTLE_MS);
  const pid = proxy.proc.pid;
  const zero = spawnSync('callgrind_control', ['-z', String(pid)], { encoding: 'utf8' });
  if (zero.status !== 0) throw new Error(`callgrind_control -z: ${zero.stderr}`);
  const r = await hits(url, N);
  // The last flush of the log (20 ms after the last group) falls in the window.
  await sleep(300);
  const dump = spawnSync('callgrind_control', ['-d', 'measured', String(pid)], { encoding: 'utf8' });
  if (dump.status !== 0) throw new Error(`callgrind_control -d: ${dump.stderr}`);
  await sleep(500);
  const parts = readdirSync(tmp).filter((f) => /^callgrind\.out\.\d+\.1-\d+$/.test(f));
  let all = 0;
  let main = 0;
  for (const f of parts) {
    const n = Number(/^summary:\s*(\d+)/m.exec(readFileSync(path.join(tmp, f), 'utf8'))?.[1] ?? 0);
    all += n;
    if (f.endsWith('-01')) main = n;
  }
  await new Promise((resolve) => {
    proxy.proc.once('exit', resolve);
    proxy.proc.kill('SIGTERM');
  });
  if (KEEP !== undefined) {
    const dest = path.join(path.resolve(KEEP), tag);
    mkdirSync(dest, { recursive: true });
    for (const f of parts) writeFileSync(path.join(dest, f), readFileSync(path.join(tmp, f)));
  }
  rmSync(tmp, { recursive: true, force: true });
  const answered = r['2xx'];
  return { checkout: path.basename(checkout), mode, answered, errors: r.errors, mainThread: Math.round(main / answered), allThreads: Math.round(all / answered) };
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const rows = [];
  const load = [];
  for (const mode of MODES) {
    for (const [checkout, tag] of (base === undefined ? [[ROOT, 'this']] : [[ROOT, 'this'], [base, 'base']]).filter(([, t]) => TREES.includes(t))) {
      load.push(os.loadavg().map((x) => Math.round(x * 100) / 100));
      const row = await measure(checkout, mode, origin.url, `${tag}-${mode}`);
      row.tree = tag;
      rows.push(row);
      console.log(`${tag.padEnd(5)} ${mode.padEnd(12)} main thread ${String(row.mainThread).padStart(7)} instr/hit, all threads ${String(row.allThreads).padStart(7)} (${row.answered} hits, ${row.errors} errors)`);
    }
  }
  await stopAll();
  for (const tree of base === undefined ? ['this'] : ['this', 'base']) {
    const off = rows.find((r) => r.tree === tree && r.mode === 'off');
    if (off === undefined) continue;
    for (const r of rows.filter((x) => x.tree === tree && x.mode !== 'off')) {
      r.logMainThread = r.mainThread - off.mainThread;
      r.logAllThreads = r.allThreads - off.allThreads;
      console.log(`${tree.padEnd(5)} ${r.mode.padEnd(12)} the log adds ${r.logMainThread} instr/hit on the main thread, ${r.logAllThreads} in all threads`);
    }
  }
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: m, requests: N, warmup: WARMUP, settleMs: SETTLE_MS, connections: CONNECTIONS, base: base === undefined ? undefined : path.basename(base), loadavg: load, rows }, null, 2)}\n`);
  console.log(`written ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
