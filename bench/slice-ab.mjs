// A/B of the slicer's cost per cold read, interleaved: for each pass, each configuration in turn runs
// bench/slice-range-cost.mjs (a fresh proxy and origin, N_WARM reads, then N_MEAS measured back to back) and its JSON
// line is kept with the load average. CPU time (schedstat) and origin request counts hold on a loaded machine; wall
// times do not. Usage:
//   node bench/slice-ab.mjs [--passes N] [--warm N] [--meas N] [--mode whole|range|miss1m] [--mib N] [--base DIR] [--out FILE]
// Configurations: base-adaptive and adaptive (`--slice 1MB --slice-min 16MB`: runs on by default since session 8 in
// this tree, off in a base before it), adaptive-noruns (`--no-slice-runs`), adaptive-ra8 (`--slice-read-ahead 8`),
// arrival (`--slice-size 1MB`), unsliced; base-* run in --base (default /work/s8-base).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = (n, d) => (argv.includes(n) ? argv[argv.indexOf(n) + 1] : d);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BASE = opt('--base', '/work/s8-base');
const PASSES = Number(opt('--passes', 3));
const WARM = opt('--warm', '4');
const MEAS = opt('--meas', '10');
const MODE = opt('--mode', 'whole');
const MIB = opt('--mib', '32');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-slice-ab-${MODE}.json`));
const adaptive = ['--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/'];
const configs = [
  { name: 'base-adaptive', root: BASE, flags: adaptive },
  { name: 'adaptive', root: ROOT, flags: adaptive },
  { name: 'adaptive-noruns', root: ROOT, flags: [...adaptive, '--no-slice-runs'] },
  { name: 'adaptive-ra8', root: ROOT, flags: [...adaptive, '--slice-read-ahead', '8'] },
  { name: 'base-arrival', root: BASE, flags: ['--slice-size', '1MB', '--slice-url', '^/big/'] },
  { name: 'arrival', root: ROOT, flags: ['--slice-size', '1MB', '--slice-url', '^/big/'] },
  { name: 'unsliced', root: ROOT, flags: [] },
];
const runs = [];
for (let p = 0; p < PASSES; p++) {
  for (const c of configs) {
    const load = os.loadavg()[0];
    const line = execFileSync(process.execPath, [path.join(ROOT, 'bench/slice-range-cost.mjs'), c.root, WARM, MEAS, '--', ...c.flags], {
      env: { ...process.env, MODE, MIB },
      encoding: 'utf8',
    }).trim().split('\n').pop();
    const r = JSON.parse(line);
    runs.push({ pass: p, config: c.name, load1: load, ...r });
    console.log(`${p} ${c.name.padEnd(16)} load ${load.toFixed(2).padStart(5)}  cpu ${r.cpuMsPerRange.toFixed(1).padStart(7)} ms/read  origin req ${r.originRequestsPerRead.toFixed(2)}  first byte ${r.firstByteMedMs.toFixed(1)} ms`);
  }
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const summary = {};
for (const c of configs) {
  const mine = runs.filter((r) => r.config === c.name);
  const u = runs.filter((r) => r.config === 'unsliced');
  // Per pass, the ratio to the same pass's unsliced miss (same load).
  const ratios = mine.map((r) => r.cpuMsPerRange / (u.find((x) => x.pass === r.pass)?.cpuMsPerRange ?? NaN));
  summary[c.name] = { cpuMsPerRead: med(mine.map((r) => r.cpuMsPerRange)), cpuRatioToUnsliced: Math.round(med(ratios) * 1000) / 1000, originRequestsPerRead: med(mine.map((r) => r.originRequestsPerRead)) };
}
console.table(summary);
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), mode: MODE, mib: MODE === 'whole' ? Number(MIB) : undefined, warm: Number(WARM), meas: Number(MEAS), passes: PASSES, base: BASE, configs, summary, runs }, null, 2) + '\n');
console.log(`wrote ${out}`);
