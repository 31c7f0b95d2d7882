// What one cold sliced read costs the proxy, in figures that hold on a loaded machine: a proxy (ROOT: a built checkout)
// and an origin started alone, N_WARM reads to warm the JIT, then N_MEAS reads back to back on kept-alive connections:
// CPU per read of the proxy process (/proc schedstat, all threads; user/sys from /proc/PID/stat), per thread, origin
// requests and new connections per read, median first-byte times.
//   node bench/slice-range-cost.mjs ROOT N_WARM N_MEAS [--cpu-prof DIR] -- <proxy flags>
// MODE=range (default): 1000 B at the middle of a new 100 MiB object; MODE=miss1m: a new 1 MiB object whole (a plain
// miss of the same bytes when under --slice-min); MODE=whole MIB=32: a new 32 MiB object whole; MODE=warm (MIB default
// 100): one object read whole again and again (the first read fills it: the measured ones are warm hits). STRACE=1: syscalls
// of the measured reads (strace -c -f); NODE_FLAGS="--trace-gc": node flags for the proxy (V=1 shows its output);
// STORAGE=48MB: the proxy's --storage (default 1GB: never fills, so every cold segment takes new slabs).
import { spawn } from 'node:child_process';
import { request } from 'undici';
import fs from 'node:fs';
const [ROOT, warm, meas] = process.argv.slice(2, 5);
const extra = process.argv.slice(process.argv.indexOf('--') + 1);
const profAt = process.argv.indexOf('--cpu-prof');
const profDir = profAt > 0 && profAt < process.argv.indexOf('--') ? process.argv[profAt + 1] : undefined;
function start(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const on = (d) => { buf += d; const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(buf); if (m) resolve({ url: m[1], p }); };
    p.stdout.on('data', on); p.stderr.on('data', (d) => { if (process.env.V) process.stderr.write(d); }); if (process.env.V) p.stdout.on('data', (d) => process.stderr.write(d));
  });
}
function ticks(pid) { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return [Number(f[11]), Number(f[12]), Number(f[7])]; }
function perThread(pid) { const o = {}; for (const tid of fs.readdirSync(`/proc/${pid}/task`)) { const n = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(); o[n] = (o[n] ?? 0) + Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } return o; }
function cpu(pid) { let t = 0; for (const tid of fs.readdirSync(`/proc/${pid}/task`)) { t += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } return t; }
const origin = await start([`${ROOT}/packages/cli/bin/run.js`, 'origin', '--listen', '127.0.0.1:0']);
const pre = [...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), ...(process.env.NODE_FLAGS ? process.env.NODE_FLAGS.split(' ') : [])];
const proxy = await start([...pre, `${ROOT}/packages/cli/bin/run.js`, 'proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', process.env.STORAGE ?? '1GB', ...extra]);
const SIZE = 100 * 1024 * 1024;
const ONE_MIB = process.env.MODE === 'miss1m';
const WARMREAD = process.env.MODE === 'warm';
const WHOLE = process.env.MODE === 'whole' || WARMREAD ? Number(process.env.MIB ?? (WARMREAD ? 100 : 32)) * 1048576 : 0;
async function coldRange(tag) {
  // MODE=warm: every read is of the same object (cached by the first), so the measured ones are warm whole reads.
  if (WARMREAD) tag = 'warm';
  if (WHOLE) { const t0 = process.hrtime.bigint(); const r = await request(`${proxy.url}/big/${WHOLE}?t=${tag}`); const th = process.hrtime.bigint(); let n = 0; for await (const c of r.body) n += c.length; if (n !== WHOLE) throw new Error('short'); return [Number(th - t0) / 1e6, Number(process.hrtime.bigint() - t0) / 1e6]; }
  if (ONE_MIB) { const t0 = process.hrtime.bigint(); const r = await request(`${proxy.url}/big/1048576?t=${tag}`); const th = process.hrtime.bigint(); let n = 0; let tf; for await (const c of r.body) { tf ??= process.hrtime.bigint(); n += c.length; } if (n !== 1048576) throw new Error('short'); return [Number(th - t0) / 1e6, Number(tf - t0) / 1e6]; }
  const t0 = process.hrtime.bigint(); const r = await request(`${proxy.url}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } }); const th = process.hrtime.bigint(); let n = 0; let tf; for await (const c of r.body) { tf ??= process.hrtime.bigint(); n += c.length; } if (n !== 1000) throw new Error('short'); return [Number(th - t0) / 1e6, Number(tf - t0) / 1e6]; }
for (let i = 0; i < Number(warm); i++) await coldRange(`w${i}`);
await new Promise((r) => setTimeout(r, 500));
// PERF=FILE: perf record -e cpu-clock -g of the proxy over the measured reads (NODE_FLAGS=--perf-basic-prof names JS frames).
let pf; if (process.env.PERF) { pf = spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-o', process.env.PERF, '-p', String(proxy.p.pid)], { stdio: 'ignore' }); await new Promise((r) => setTimeout(r, 1000)); }
let st; if (process.env.STRACE) { st = spawn('strace', ['-c', '-f', '-p', String(proxy.p.pid)], { stdio: ['ignore', 'ignore', 'pipe'] }); st.out = ''; st.stderr.on('data', (d) => { st.out += d; }); await new Promise((r) => setTimeout(r, 1000)); }
const os0 = await (await request(`${origin.url}/stats`)).body.json();
const c0 = cpu(proxy.p.pid); const pt0 = perThread(proxy.p.pid); const t0 = ticks(proxy.p.pid);
const lat = [];
for (let i = 0; i < Number(meas); i++) lat.push(await coldRange(`m${i}`));
const c1 = cpu(proxy.p.pid); const os1 = await (await request(`${origin.url}/stats`)).body.json(); const pt1 = perThread(proxy.p.pid); const threadsMsPerRead = Object.fromEntries(Object.keys(pt1).map((k) => [k, Math.round((pt1[k] - (pt0[k] ?? 0)) / 1e4 / Number(meas)) / 100])); const t1 = ticks(proxy.p.pid);
if (pf) { pf.kill('SIGINT'); await new Promise((r) => pf.on('exit', r)); }
if (st) { st.kill('SIGINT'); await new Promise((r) => st.on('exit', r)); console.log(`strace -c over ${meas} reads:\n` + st.out.split('\n').filter((l) => /write|read|recv|send|epoll|total/.test(l)).join('\n')); }
lat.sort((a, b) => a[1] - b[1]);
console.log(JSON.stringify({ cpuMsPerRange: (c1 - c0) / 1e6 / Number(meas), firstByteMedMs: lat[lat.length >> 1][1], headMedMs: lat[lat.length >> 1][0], userMsPerRange: (t1[0] - t0[0]) * 10 / Number(meas), sysMsPerRange: (t1[1] - t0[1]) * 10 / Number(meas), minorFaultsPerRead: (t1[2] - t0[2]) / Number(meas), threadsMsPerRead, originRequestsPerRead: (os1.requests - os0.requests) / Number(meas), originConnectionsPerRead: (os1.connections - os0.connections) / Number(meas) }));
proxy.p.kill('SIGINT'); origin.p.kill('SIGINT');
await new Promise((r) => proxy.p.on('exit', r));
process.exit(0);
