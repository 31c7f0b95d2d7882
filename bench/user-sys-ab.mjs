// User and system CPU per MiB of cold whole misses, this tree against another build, interleaved (session 11, issue
// 16): a fresh proxy per root in front of one `sluice origin`, W warm-up misses each, then R rounds (root order
// alternating) of N cold misses of SIZE bytes; per round each proxy's utime and stime deltas (/proc/PID/stat, 10 ms
// ticks), summed over the rounds so the tick is small against the total. Complements bytes-cost.mjs (schedstat total).
// Usage: node bench/user-sys-ab.mjs --root DIR --root DIR [--size BYTES] [--warm W] [--misses N] [--rounds R] [--out FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { request } from 'undici';
import { machine, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const all = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const opt = (name, dflt) => all(name)[0] ?? dflt;
const roots = all('--root');
const SIZE = Number(opt('--size', 32 * 1024 * 1024));
const WARM = Number(opt('--warm', 6));
const N = Number(opt('--misses', 4));
const ROUNDS = Number(opt('--rounds', 10));
const out = opt('--out', undefined);
const MiB = 1024 * 1024;

function ticks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]), sys: Number(f[12]) };
}
let seq = 0;
async function miss(url) {
  const r = await request(`${url}/big/${SIZE}?us=${seq++}-${Date.now()}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`got ${n}`);
}
const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const sides = [];
for (const root of roots) {
  const p = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'], root);
  for (let i = 0; i < WARM; i++) await miss(p.url);
  sides.push({ root, p, user: [], sys: [] });
}
for (let r = 0; r < ROUNDS; r++) {
  for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
    const t0 = ticks(s.p.pid);
    for (let i = 0; i < N; i++) await miss(s.p.url);
    const t1 = ticks(s.p.pid);
    s.user.push(t1.user - t0.user);
    s.sys.push(t1.sys - t0.sys);
  }
}
const mib = (ROUNDS * N * SIZE) / MiB;
const rows = sides.map((s) => ({ root: s.root, userMicrosPerMiB: Math.round((s.user.reduce((a, b) => a + b, 0) * 10000) / mib), sysMicrosPerMiB: Math.round((s.sys.reduce((a, b) => a + b, 0) * 10000) / mib), userTicksPerRound: s.user, sysTicksPerRound: s.sys }));
for (const r of rows) console.log(`${r.root.padEnd(24)} user ${r.userMicrosPerMiB} us/MiB  sys ${r.sysMicrosPerMiB} us/MiB  (ticks per round user ${r.userTicksPerRound.join(' ')} | sys ${r.sysTicksPerRound.join(' ')})`);
console.log(`load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
if (out !== undefined) writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), settings: { size: SIZE, warm: WARM, misses: N, rounds: ROUNDS }, loadAvgAtEnd: os.loadavg(), rows }, null, 2)}\n`);
await stopAll();
