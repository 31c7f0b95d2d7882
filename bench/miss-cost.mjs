// What one warm cache miss costs Sluice, in figures that hold up on a loaded 2-core machine (issue 16, miss first byte).
// Usage: node bench/miss-cost.mjs [--base CHECKOUT] [--path /static/1k] [--misses N] [--rounds R] [--warm W]
//                                 [--callgrind | --strace] [--out FILE]
//   default      CPU time per miss (/proc schedstat of the proxy process, all threads): each proxy first serves W misses
//                (JIT warm), then R rounds of N misses back to back on a raw kept-alive connection, a new URL each
//                time, targets interleaved round by round (their order alternating); median and spread of the per-round figures, plus the
//                first-byte p50 of each target (wall clock: noisy under load, the load average is printed)
//   --base DIR   another built checkout's Sluice in the same rounds (a before/after on one machine state)
//   --path P     the miss URL (default /static/1k, a Content-Length origin; /chunked?chunks=1&size=1024&delay=0 is a
//                chunked one)
//   --callgrind  each proxy under valgrind --tool=callgrind: counters zeroed after the warm-up, dumped after N misses:
//                instructions per miss (main thread, all threads)
//   --strace     strace -f -c on each proxy over N misses: syscalls per miss, by name
// Writes bench/results/<date>-miss-cost.json (or --out).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, cpuMicros, machine, percentiles, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
const PATH = opt('--path', '/static/1k');
const CALLGRIND = argv.includes('--callgrind');
const STRACE = argv.includes('--strace');
const N = Number(opt('--misses', CALLGRIND ? 300 : STRACE ? 500 : 1000));
const ROUNDS = Number(opt('--rounds', CALLGRIND || STRACE ? 1 : 7));
const WARM = Number(opt('--warm', CALLGRIND ? 1000 : 3000));
const mode = CALLGRIND ? 'callgrind' : STRACE ? 'strace' : 'cpu';
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-miss-cost-${mode}.json`));

/** A proxy from checkout `root` in its own process (under valgrind when asked); resolves once it listens. */
function startProxy(root, backend, tmp) {
  const args = [path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'];
  const [cmd, full] = CALLGRIND
    ? ['valgrind', ['--tool=callgrind', '--collect-atstart=yes', '--separate-threads=yes', `--callgrind-out-file=${tmp}/callgrind.out.%p`, process.execPath, ...args]]
    : [process.execPath, args];
  const p = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'] });
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

function connect(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

let seq = 0;
/** One GET of a new URL on the kept-alive socket: resolves with the ms to the first response byte, once all is in. */
function miss(s, tag) {
  return new Promise((resolve, reject) => {
    let first;
    let buf = Buffer.alloc(0);
    const t0 = performance.now();
    const onData = (d) => {
      first ??= performance.now() - t0;
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /content-length: *(\d+)/i.exec(head);
      const done = m !== null ? buf.length >= end + 4 + Number(m[1]) : buf.subarray(buf.length - 5).toString('latin1') === '0\r\n\r\n';
      if (done) {
        if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(`${tag}: ${head.split('\r\n')[0]}`));
        s.off('data', onData);
        s.off('error', reject);
        s.off('close', onClose);
        resolve(first);
      }
    };
    s.on('data', onData);
    s.on('error', reject);
    const onClose = () => reject(new Error(`${tag}: connection closed`));
    s.once('close', onClose);
    s.write(`GET ${PATH}${PATH.includes('?') ? '&' : '?'}mc=${tag}-${process.pid}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

/** n misses back to back on a new kept-alive connection (a connection left idle meanwhile would time out). */
async function misses(url, tag, n) {
  const s = await connect(url);
  const times = [];
  for (let i = 0; i < n; i++) times.push(await miss(s, tag));
  s.destroy();
  return times;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round1 = (x) => Math.round(x * 10) / 10;

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-miss-cost-'));
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const roots = [['sluice', ROOT]];
  if (BASE !== undefined) roots.push(['base', path.resolve(BASE)]);
  const targets = [];
  for (const [name, root] of roots) {
    const dir = path.join(tmp, name);
    mkdirSync(dir);
    const p = await startProxy(root, origin.url, dir);
    process.on('exit', () => p.proc.kill('SIGKILL'));
    targets.push({ name, root, ...p });
  }
  console.log(`miss-cost (${mode}) of ${PATH} on ${m.cores} cores, node ${m.node}, load ${m.loadavgAtStart.join(' ')}: ${targets.map((t) => t.name).join(', ')}`);
  for (const t of targets) await misses(t.url, `warm-${t.name}`, WARM);
  const result = { date: new Date().toISOString(), machine: m, mode, path: PATH, misses: N, rounds: ROUNDS, warm: WARM, base: BASE, targets: {} };
  for (const t of targets) result.targets[t.name] = { root: t.root, rounds: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // The order alternates round by round: neither target always runs first (after the other's idle time).
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const row = { loadavg: os.loadavg()[0] };
      if (CALLGRIND) {
        const z = spawnSync('callgrind_control', ['-z', String(t.pid)], { encoding: 'utf8' });
        if (z.status !== 0) throw new Error(`callgrind_control -z: ${z.stderr}`);
        await misses(t.url, `m-${t.name}`, N);
        const d = spawnSync('callgrind_control', ['-d', `r${r}`, String(t.pid)], { encoding: 'utf8' });
        if (d.status !== 0) throw new Error(`callgrind_control -d: ${d.stderr}`);
        await sleep(500);
        const parts = readdirSync(t.tmp).filter((f) => new RegExp(`^callgrind\\.out\\.\\d+\\.${r + 1}-\\d+$`).test(f));
        let all = 0;
        let mainThread = 0;
        for (const f of parts) {
          const n = Number(/^summary:\s*(\d+)/m.exec(readFileSync(path.join(t.tmp, f), 'utf8'))?.[1] ?? 0);
          all += n;
          if (f.endsWith('-01')) mainThread = n;
        }
        row.instructionsPerMiss = { mainThread: Math.round(mainThread / N), allThreads: Math.round(all / N) };
      } else if (STRACE) {
        const file = path.join(t.tmp, `strace-${r}.txt`);
        const st = spawn('strace', ['-f', '-c', '-o', file, '-p', String(t.pid)], { stdio: 'ignore' });
        await sleep(1000);
        await misses(t.url, `m-${t.name}`, N);
        await sleep(200);
        st.kill('SIGINT');
        await new Promise((res) => st.once('exit', res));
        const calls = {};
        let total = 0;
        for (const line of readFileSync(file, 'utf8').split('\n')) {
          const f = line.trim().split(/\s+/);
          if (f.length >= 5 && /^\d/.test(f[0]) && f[f.length - 1] !== 'total') {
            const n = Number(f[3]);
            calls[f[f.length - 1]] = round1(n / N);
            total += n;
          }
        }
        row.syscallsPerMiss = round1(total / N);
        row.byName = calls;
      } else {
        const before = cpuMicros([t.pid]);
        const times = await misses(t.url, `m-${t.name}`, N);
        row.cpuMicrosPerMiss = round1((cpuMicros([t.pid]) - before) / N);
        row.firstByteP50Ms = Math.round(median(times) * 1000) / 1000;
        row.firstByte = percentiles(times);
      }
      result.targets[t.name].rounds.push(row);
      console.log(`round ${r} ${t.name}: ${JSON.stringify(row.instructionsPerMiss ?? row.syscallsPerMiss ?? { cpuMicrosPerMiss: row.cpuMicrosPerMiss, firstByteP50Ms: row.firstByteP50Ms })} (load ${row.loadavg.toFixed(2)})`);
    }
  }
  for (const t of targets) {
    const rs = result.targets[t.name].rounds;
    const s = (f) => ({ median: median(rs.map(f)), min: Math.min(...rs.map(f)), max: Math.max(...rs.map(f)) });
    if (CALLGRIND) result.targets[t.name].instructionsPerMiss = { mainThread: median(rs.map((r) => r.instructionsPerMiss.mainThread)), allThreads: median(rs.map((r) => r.instructionsPerMiss.allThreads)) };
    else if (STRACE) result.targets[t.name].syscallsPerMiss = median(rs.map((r) => r.syscallsPerMiss));
    else {
      result.targets[t.name].cpuMicrosPerMiss = s((r) => r.cpuMicrosPerMiss);
      result.targets[t.name].firstByteP50Ms = s((r) => r.firstByteP50Ms);
    }
    const { rounds, root, ...summary } = result.targets[t.name];
    console.log(`${t.name}: ${JSON.stringify(summary)}`);
  }
  result.loadavgAtEnd = os.loadavg().map((v) => Math.round(v * 100) / 100);
  for (const t of targets) {
    await new Promise((resolve) => {
      t.proc.once('exit', resolve);
      t.proc.kill('SIGTERM');
    });
  }
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${path.relative(ROOT, out)} (load ${result.loadavgAtEnd.join(' ')})`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.stack}`);
  await stopAll();
  process.exit(1);
});
