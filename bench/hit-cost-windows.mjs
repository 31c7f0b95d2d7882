// Callgrind instructions per 1 KiB (or --size) hit over several measured windows in one proxy process, with the
// optimising and baseline compiles and the young GCs that fall in a window counted apart (issue 16, session 9).
// A single window after the warm-up still catches a compile or a scavenge now and then (one of each moves a 2000-hit
// window by 5-30 %), so each window is split: total, compiles (Runtime_CompileOptimized, Compiler::CompileBaseline),
// GC (Heap::CollectGarbage), and the rest ("steady"), per hit. Roots (this tree and --base DIRs) run at the same time.
// Usage: node bench/hit-cost-windows.mjs [--size 1k] [--windows 4] [--requests 2000] [--warmup 10000] [--base DIR]... [--out FILE]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const SIZE = opt('--size', '1k');
const WINDOWS = Number(opt('--windows', 4));
const N = Number(opt('--requests', 2000));
const WARMUP = Number(opt('--warmup', 10000));
const roots = [['this', ROOT]];
argv.forEach((a, i) => a === '--base' && roots.push([`base${roots.length}`, path.resolve(argv[i + 1])]));
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-hit-cost-windows-${SIZE}.json`));

function startProxy(root, backend, tmp) {
  const bin = path.join(root, 'packages/cli/bin/run.js');
  const args = ['--tool=callgrind', '--collect-atstart=yes', '--separate-threads=yes', `--callgrind-out-file=${tmp}/callgrind.out.%p`, process.execPath, '--no-concurrent-recompilation', bin, 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'];
  const p = spawn('valgrind', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m) resolve({ url: m[1], proc: p });
    });
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}`)));
  });
}

const hits = (url, n) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 8, amount: n, timeout: 60 }, (e, r) => (e ? reject(e) : resolve(r))));

/** Inclusive instructions of the functions matching `re` (top-level matches only: the largest per name). */
function split(file, answered) {
  const r = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const num = (re) => {
    let sum = 0;
    for (const line of r.stdout.split('\n')) if (re.test(line)) sum += Number(line.trim().split(' ')[0].replaceAll(',', ''));
    return sum;
  };
  const total = num(/PROGRAM TOTALS/);
  const compile = num(/Runtime_CompileOptimized\(|Compiler::CompileBaseline\(/);
  const gc = num(/Heap::CollectGarbage\(/);
  const per = (x) => Math.round(x / answered);
  return { total: per(total), compile: per(compile), gc: per(gc), steady: per(total - compile - gc) };
}

async function measure(name, root, backend) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), `sluice-hcw-${name}-`));
  const proxy = await startProxy(root, backend, tmp);
  const url = `${proxy.url}/static/${SIZE}`;
  await (await fetch(url)).arrayBuffer();
  await hits(url, WARMUP);
  await sleep(3000);
  const windows = [];
  for (let w = 1; w <= WINDOWS; w++) {
    spawnSync('callgrind_control', ['-z', String(proxy.proc.pid)]);
    const r = await hits(url, N);
    spawnSync('callgrind_control', ['-d', `w${w}`, String(proxy.proc.pid)]);
    await sleep(500);
    const f = readdirSync(tmp).find((x) => new RegExp(`\\.${w}-01$`).test(x));
    windows.push({ window: w, answered: r['2xx'], ...split(path.join(tmp, f), r['2xx']) });
    console.log(name, JSON.stringify(windows.at(-1)));
  }
  proxy.proc.kill('SIGKILL');
  const steady = windows.map((x) => x.steady).sort((a, b) => a - b);
  return { root, windows, steadyMedian: steady[Math.floor(steady.length / 2)], steadyMin: steady[0], files: tmp };
}

const m = machine();
const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
const results = Object.fromEntries(await Promise.all(roots.map(async ([n, r]) => [n, await measure(n, r, origin.url)])));
await stopAll();
const doc = { date: new Date().toISOString(), machine: m, size: SIZE, requests: N, warmup: WARMUP, windows: WINDOWS, results, loadavgAtEnd: os.loadavg().map((v) => Math.round(v * 100) / 100) };
for (const [n, r] of Object.entries(results)) console.log(`${n}: steady instructions per hit, median ${r.steadyMedian}, min ${r.steadyMin} (${r.root})`);
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
console.log(`written ${path.relative(ROOT, out)} (load ${doc.loadavgAtEnd.join(' ')})`);
process.exit(0);
