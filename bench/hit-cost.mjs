// What one cache hit costs Sluice, measured in ways that hold up on a loaded machine (issue 16).
// Usage: node bench/hit-cost.mjs [--size 1k] [--requests N] [--warmup N] [--settle-ms MS] [--root CHECKOUT] [--node-flags "FLAGS"] [--callgrind] [--cpu-prof DIR] [--out FILE]
//   default      CPU time per hit (utime+stime of the proxy process from /proc) over N hits (autocannon, 32 connections)
//   --callgrind  the proxy runs under valgrind --tool=callgrind: counters zeroed after the warm-up, dumped after N hits;
//                instructions per hit (the most noise-resistant figure; the window also holds the event loop's idle
//                turns and timers, a few % at most)
//   --cpu-prof DIR  the proxy runs with node --cpu-prof (a .cpuprofile per run in DIR) and the top functions by self
//                time are printed
// Writes bench/results/<date>-hit-cost-<size>.json (or --out) with the figure, the machine note and the load average.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { ROOT, cpuMicros, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const SIZE = opt('--size', '1k');
const CALLGRIND = argv.includes('--callgrind');
const PROF_DIR = opt('--cpu-prof', undefined);
const N = Number(opt('--requests', CALLGRIND ? 2000 : 20000));
// Hits before the measured window. TurboFan keeps compiling the hit path for the first ~8000 hits (node --trace-opt:
// ~25 optimisations between hit 2000 and hit 4000, one or two per 4000 hits after 8000); under valgrind those
// concurrent compile jobs were half of the 64 KiB figure's instructions in all threads with a 2000-hit warm-up.
const WARMUP = Number(opt('--warmup', CALLGRIND ? 10000 : 5000));
const SETTLE_MS = Number(opt('--settle-ms', 20000));
// Fewer connections under valgrind: the proxy runs ~50x slower there, and the figure is per request anyway.
const CONNECTIONS = CALLGRIND ? 8 : 32;
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-hit-cost-${SIZE}${CALLGRIND ? '-callgrind' : ''}.json`));
// --root DIR measures the proxy of another built checkout (a before/after with the same script and settings).
const BIN = path.join(path.resolve(opt('--root', ROOT)), 'packages/cli/bin/run.js');
// --node-flags "..." go to the proxy's node before the script, e.g. --no-concurrent-recompilation: under callgrind on a
// loaded machine V8's helper threads are starved and optimisations asked for in the warm-up land in the measured window
// (seen at load 16 even after the 20 s pause); with them on the main thread the warm-up does them all.
const NODE_FLAGS = (opt('--node-flags', '') ?? '').split(' ').filter((f) => f !== '');

/** The proxy in its own process, under valgrind or with --cpu-prof when asked; resolves once it listens. */
function startProxy(backend, tmp) {
  const args = [...NODE_FLAGS, BIN, 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'];
  const [cmd, full] = CALLGRIND
    ? ['valgrind', ['--tool=callgrind', '--collect-atstart=yes', '--separate-threads=yes', `--callgrind-out-file=${tmp}/callgrind.out.%p`, process.execPath, ...args]]
    : [process.execPath, PROF_DIR === undefined ? args : ['--cpu-prof', '--cpu-prof-dir', PROF_DIR, ...args]];
  const p = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let outText = '';
    let err = '';
    p.stdout.on('data', (d) => {
      outText += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(outText);
      if (m) resolve({ url: m[1], proc: p });
    });
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err.slice(-2000)}`)));
  });
}

/** N requests for `url` with autocannon over CONNECTIONS keep-alive connections; throws on any non-2xx or error. */
function hits(url, n) {
  return new Promise((resolve, reject) =>
    autocannon({ url, connections: CONNECTIONS, amount: n, pipelining: 1, timeout: 60 }, (e, r) => {
      if (e) return reject(e);
      if (r.non2xx > 0) return reject(new Error(`${r.non2xx} non-2xx answers`));
      // Under valgrind a connection now and then fails (the proxy runs ~50x slower): counted, and the figures are per
      // answered request.
      if (r.errors > 0 && !CALLGRIND) return reject(new Error(`${r.errors} errors, ${r.timeouts} timeouts`));
      resolve(r);
    }),
  );
}

/** Top functions by self time of a .cpuprofile: [name url:line, ms, %]. */
function topSelf(file, count = 25) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]);
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(packages|node_modules)\//, '$1/').replace(/^node:/, '')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([k, us]) => [k, Math.round(us / 100) / 10, Math.round((us / total) * 1000) / 10]);
}

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-hit-cost-'));
  if (PROF_DIR !== undefined) mkdirSync(PROF_DIR, { recursive: true });
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const proxy = await startProxy(origin.url, tmp);
  process.on('exit', () => proxy.proc.kill('SIGKILL'));
  const url = `${proxy.url}/static/${SIZE}`;
  // Warm-up: fill the cache (one request), then let the JIT settle.
  await (await fetch(url)).arrayBuffer();
  await hits(url, WARMUP);
  // Under valgrind the threads take turns, and the busy main thread starves V8's compile threads: optimisations asked
  // for during the warm-up would run in the measured window. An idle pause lets them finish first.
  if (CALLGRIND) await sleep(SETTLE_MS);
  const result = { date: new Date().toISOString(), machine: m, size: SIZE, requests: N, warmup: WARMUP, settleMs: CALLGRIND ? SETTLE_MS : 0, connections: CONNECTIONS, proxy: BIN, nodeFlags: NODE_FLAGS };
  if (CALLGRIND) {
    const pid = proxy.proc.pid;
    const zero = spawnSync('callgrind_control', ['-z', String(pid)], { encoding: 'utf8' });
    if (zero.status !== 0) throw new Error(`callgrind_control -z: ${zero.stderr}`);
    const measured = await hits(url, N);
    result.answered = measured['2xx'];
    result.errors = measured.errors;
    const dump = spawnSync('callgrind_control', ['-d', 'measured', String(pid)], { encoding: 'utf8' });
    if (dump.status !== 0) throw new Error(`callgrind_control -d: ${dump.stderr}`);
    await sleep(500);
    // The dump is part 1, one file per thread (callgrind.out.<pid>.1-<thread>); thread 01 is the main thread (the
    // event loop: everything the request path runs); the others are V8's helpers (concurrent GC, compilation) and
    // libuv's pool. Files without a part number are written at exit.
    const parts = readdirSync(tmp).filter((f) => /^callgrind\.out\.\d+\.1-\d+$/.test(f));
    if (parts.length === 0) throw new Error(`no callgrind dump in ${tmp}`);
    let all = 0;
    let main = 0;
    for (const f of parts) {
      const n = Number(/^summary:\s*(\d+)/m.exec(readFileSync(path.join(tmp, f), 'utf8'))?.[1] ?? 0);
      all += n;
      if (f.endsWith('-01')) main = n;
    }
    result.instructionsPerRequest = { mainThread: Math.round(main / result.answered), allThreads: Math.round(all / result.answered) };
    result.callgrindFiles = tmp;
    console.log(`hit-${SIZE}: ${result.instructionsPerRequest.mainThread} instructions per hit on the main thread, ${result.instructionsPerRequest.allThreads} in all threads (${result.answered} hits answered, ${result.errors} errors, ${CONNECTIONS} connections; ${tmp})`);
  } else {
    const before = cpuMicros([proxy.proc.pid]);
    const t0 = performance.now();
    await hits(url, N);
    result.cpuMicrosPerRequest = Math.round(((cpuMicros([proxy.proc.pid]) - before) / N) * 10) / 10;
    result.wallMs = Math.round(performance.now() - t0);
    console.log(`hit-${SIZE}: ${result.cpuMicrosPerRequest} us CPU per hit (${N} hits, ${CONNECTIONS} connections)`);
  }
  result.loadavgAtEnd = os.loadavg().map((v) => Math.round(v * 100) / 100);
  await new Promise((resolve) => {
    proxy.proc.once('exit', resolve);
    proxy.proc.kill('SIGTERM');
  });
  await stopAll();
  if (PROF_DIR !== undefined) {
    const prof = readdirSync(PROF_DIR).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(PROF_DIR, f));
    const newest = prof.sort().pop();
    result.cpuProfile = newest;
    result.topSelf = topSelf(newest);
    for (const [k, ms, pct] of result.topSelf) console.log(`${String(pct).padStart(5)}%  ${String(ms).padStart(8)} ms  ${k}`);
  }
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${path.relative(ROOT, out)} (load ${result.loadavgAtEnd.join(' ')})`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
