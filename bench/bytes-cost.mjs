// What moving a cold miss's bytes costs each proxy, in counts that hold on a loaded machine (issue 16, bulk miss;
// session 8): per root a fresh proxy in front of one `sluice origin`, W warm-up misses, then R rounds interleaved
// across roots (order alternating), each round N cold misses of SIZE bytes read whole (or, with --range, 1000 bytes at
// the middle of a cold object, the fetch let run to its end): per MiB the origin sent, the proxy's CPU time (/proc
// schedstat, all threads), its minor page faults (/proc/PID/stat: memory touched for the first time), and with
// --strace its syscalls by name (strace -c -f over the whole run of each root, one root at a time).
// Usage: node bench/bytes-cost.mjs --root DIR [--root DIR]... [--size BYTES] [--warm W] [--misses N] [--rounds R]
//                                  [--range] [--strace] [--out FILE]
//   --root DIR%NAME=VALUE runs that root's proxy with NAME=VALUE in its environment (e.g. a GLIBC_TUNABLES setting
//   beside the same root without it).
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { cpuNanos, machine, sleep, startSluice, startSluiceFrom, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const all = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const opt = (name, dflt) => all(name)[0] ?? dflt;
const roots = all('--root');
const SIZE = Number(opt('--size', 32 * 1024 * 1024));
const WARM = Number(opt('--warm', 3));
const N = Number(opt('--misses', 2));
const ROUNDS = Number(opt('--rounds', 6));
const RANGE = argv.includes('--range');
const STRACE = argv.includes('--strace');
const out = opt('--out', undefined);
const MiB = 1024 * 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
if (roots.length === 0) {
  console.error('bench/bytes-cost.mjs: at least one --root DIR');
  process.exit(2);
}

function minflt(pid) {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
}

let seq = 0;
async function cold(url) {
  const headers = RANGE ? { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } : {};
  const r = await request(`${url}/big/${SIZE}?bc=${process.pid}-${seq++}`, { headers });
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== (RANGE ? 1000 : SIZE)) throw new Error(`${n} bytes`);
  // A range is answered long before the fetch ends: let it end, so its cost lands in this round.
  if (RANGE) await sleep(Math.max(300, SIZE / MiB / 0.2));
}

const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const result = { date: new Date().toISOString(), machine: machine(), settings: { size: SIZE, warm: WARM, misses: N, rounds: ROUNDS, range: RANGE }, sides: [] };
const sides = [];
for (const spec of roots) {
  // DIR%NAME=VALUE: that root's proxy runs with NAME=VALUE in its environment (e.g. GLIBC_TUNABLES).
  const [root, env] = spec.split('%');
  const [name, ...value] = env === undefined ? [] : env.split('=');
  if (name !== undefined) process.env[name] = value.join('=');
  const p = await startSluiceFrom(path.resolve(root), ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
  if (name !== undefined) delete process.env[name];
  sides.push({ root: spec, ...p, cpu: [], faults: [], loads: [] });
}
for (const s of sides) for (let i = 0; i < WARM; i++) await cold(s.url);
for (let r = 0; r < ROUNDS; r++) {
  for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
    const c0 = cpuNanos(s.pid);
    const f0 = minflt(s.pid);
    for (let i = 0; i < N; i++) await cold(s.url);
    const mib = (N * SIZE) / MiB;
    s.cpu.push(Math.round((cpuNanos(s.pid) - c0) / 1000 / mib));
    s.faults.push(Math.round((minflt(s.pid) - f0) / mib));
    s.loads.push(os.loadavg()[0]);
  }
}
for (const s of sides) {
  const row = { root: s.root, cpuMicrosPerMiB: { median: median(s.cpu), rounds: s.cpu }, pageFaultsPerMiB: { median: median(s.faults), rounds: s.faults }, loadavg: s.loads };
  if (STRACE) {
    const st = spawn('strace', ['-c', '-f', '-p', String(s.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let text = '';
    st.stderr.on('data', (d) => (text += String(d)));
    await sleep(1000);
    for (let i = 0; i < N; i++) await cold(s.url);
    st.kill('SIGINT');
    await new Promise((r) => st.once('exit', r));
    const mib = (N * SIZE) / MiB;
    row.syscallsPerMiB = {};
    for (const line of text.split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
      if (m && m[2] !== 'total') row.syscallsPerMiB[m[2]] = +(Number(m[1]) / mib).toFixed(1);
    }
  }
  result.sides.push(row);
  console.log(`${s.root.padEnd(24)} CPU ${row.cpuMicrosPerMiB.median} us/MiB [${s.cpu.join(' ')}]  page faults ${row.pageFaultsPerMiB.median}/MiB [${s.faults.join(' ')}]${row.syscallsPerMiB ? `  syscalls/MiB ${JSON.stringify(row.syscallsPerMiB)}` : ''}`);
}
console.log(`load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
await stopAll();
if (out !== undefined) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
process.exit(0);
