// Instructions per MiB of a cold whole-object miss, under valgrind --tool=callgrind (issue 16, the origin read path):
// figures that do not move with the load of a shared 2-core machine, unlike CPU time.
//   proxies  this tree's Sluice and --base DIR's, each under callgrind: W cold misses of SIZE bytes (JIT warm), counters
//            zeroed, N cold misses read whole, counters dumped: instructions per MiB, main thread and all threads
//            (V8's GC helper threads included), per round; rounds alternate the order of the targets.
//   floors   (--floors) a bare reader of the fixture origin under callgrind, bench/bulk-floor-reader.mjs modes undici
//            (request() + 'data') and dispatch (a dispatch handler's onData): (Ir of 1+K reads - Ir of 1+1 reads)
//            / (K-1) / MiB, i.e. the per-MiB cost without the process start.
// Usage: node bench/ingest-callgrind.mjs [--base DIR] [--size BYTES] [--warm W] [--misses N] [--rounds R] [--floors]
//                                         [--out FILE]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
const SIZE = Number(opt('--size', 16 * 1024 * 1024));
const WARM = Number(opt('--warm', 3));
const N = Number(opt('--misses', 4));
const ROUNDS = Number(opt('--rounds', 2));
const FLOORS = argv.includes('--floors');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-ingest-callgrind.json`));
const MiB = 1024 * 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function startProxy(root, backend, tmp) {
  const args = [path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'];
  const p = spawn('valgrind', ['--tool=callgrind', '--collect-atstart=yes', '--separate-threads=yes', `--callgrind-out-file=${tmp}/callgrind.out.%p`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m) resolve({ url: m[1], proc: p, pid: p.pid, tmp });
    });
    p.stderr.on('data', (d) => (text += String(d)));
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${text.slice(-2000)}`)));
  });
}

let seq = 0;
async function coldWhole(url, tag) {
  const r = await request(`${url}/big/${SIZE}?ic=${tag}-${process.pid}-${seq++}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`${tag}: ${n} of ${SIZE} bytes`);
}

/** Sum of the `summary:` lines of the dump files matching `re` in `dir`: [all threads, main thread]. */
function summed(dir, re) {
  let all = 0;
  let mainThread = 0;
  for (const f of readdirSync(dir).filter((x) => re.test(x))) {
    const n = Number(/^summary:\s*(\d+)/m.exec(readFileSync(path.join(dir, f), 'utf8'))?.[1] ?? 0);
    all += n;
    if (f.endsWith('-01')) mainThread = n;
  }
  return [all, mainThread];
}

/** Instructions of a bare reader process reading `k` times (after one warm-up), all threads. */
function readerIr(mode, url, k, tmp) {
  const dir = mkdtempSync(path.join(tmp, `floor-${mode}-${k}-`));
  const r = spawnSync('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${dir}/callgrind.out.%p`, process.execPath, path.join(ROOT, 'bench/bulk-floor-reader.mjs'), mode, url, String(k)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`floor ${mode}: ${r.stderr.slice(-1000)}`);
  return summed(dir, /^callgrind\.out\.\d+(-\d+)?$/)[0];
}

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-ingest-cg-'));
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const result = { date: new Date().toISOString(), machine: m, objectBytes: SIZE, warm: WARM, misses: N, rounds: ROUNDS, base: BASE, targets: {}, floors: {} };
  console.log(`ingest-callgrind: ${SIZE / MiB} MiB cold misses, node ${m.node}, load ${m.loadavgAtStart.join(' ')}`);
  if (FLOORS) {
    for (const mode of ['undici', 'dispatch', 'http']) {
      const k = 3;
      const one = readerIr(mode, `${origin.url}/big/${SIZE}`, 1, tmp);
      const many = readerIr(mode, `${origin.url}/big/${SIZE}`, k, tmp);
      const perMiB = Math.round((many - one) / (k - 1) / (SIZE / MiB));
      result.floors[mode] = { instructionsPerMiB: perMiB };
      console.log(`floor ${mode.padEnd(9)} ${perMiB} instructions/MiB`);
    }
  }
  const roots = [['sluice', ROOT]];
  if (BASE !== undefined) roots.push(['base', path.resolve(BASE)]);
  const targets = [];
  for (const [name, root] of roots) {
    const dir = path.join(tmp, name);
    mkdirSync(dir);
    const p = await startProxy(root, origin.url, dir);
    process.on('exit', () => p.proc.kill('SIGKILL'));
    targets.push({ name, root, ...p });
    result.targets[name] = { root, rounds: [] };
  }
  for (const t of targets) for (let i = 0; i < WARM; i++) await coldWhole(t.url, `warm-${t.name}`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const z = spawnSync('callgrind_control', ['-z', String(t.pid)], { encoding: 'utf8' });
      if (z.status !== 0) throw new Error(`callgrind_control -z: ${z.stderr}`);
      for (let i = 0; i < N; i++) await coldWhole(t.url, `m-${t.name}`);
      await sleep(200);
      const d = spawnSync('callgrind_control', ['-d', `r${r}`, String(t.pid)], { encoding: 'utf8' });
      if (d.status !== 0) throw new Error(`callgrind_control -d: ${d.stderr}`);
      await sleep(500);
      const [all, mainThread] = summed(t.tmp, new RegExp(`^callgrind\\.out\\.\\d+\\.${r + 1}-\\d+$`));
      const mib = (N * SIZE) / MiB;
      const row = { loadavg: os.loadavg()[0], instructionsPerMiB: { mainThread: Math.round(mainThread / mib), allThreads: Math.round(all / mib) } };
      result.targets[t.name].rounds.push(row);
      console.log(`round ${r} ${t.name.padEnd(6)} ${JSON.stringify(row.instructionsPerMiB)} (load ${row.loadavg.toFixed(2)})`);
    }
  }
  for (const t of targets) {
    const rs = result.targets[t.name].rounds;
    result.targets[t.name].median = { mainThread: median(rs.map((x) => x.instructionsPerMiB.mainThread)), allThreads: median(rs.map((x) => x.instructionsPerMiB.allThreads)) };
  }
  if (BASE !== undefined) {
    const a = result.targets.sluice.median;
    const b = result.targets.base.median;
    result.ratio = { mainThread: +(a.mainThread / b.mainThread).toFixed(3), allThreads: +(a.allThreads / b.allThreads).toFixed(3) };
    console.log(`median per MiB: sluice ${JSON.stringify(a)} base ${JSON.stringify(b)} ratio ${JSON.stringify(result.ratio)}`);
  }
  for (const t of targets) t.proc.kill('SIGTERM');
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${path.relative(ROOT, out)}`);
  process.exit(0);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
