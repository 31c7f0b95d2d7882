// GC counts per cold 100 MiB whole-object miss, by kind and reason (issue 16, bulk miss), from `node --trace-gc`.
// Usage: node bench/gc-reasons.mjs [--root DIR]... [--runs N] [--size BYTES] [--flags "NODE FLAGS"]
//   Each root (default: this tree) gets a fresh proxy in front of one `sluice origin`; one warm-up miss, then N cold
//   misses read whole; the proxy's --trace-gc lines during them are tallied: Scavenge / Mark-Compact (and
//   Mark-Compact reasons), its CPU per MiB (/proc schedstat), and its peak and final RSS (the storage budget is the
//   default 256 MB: from the third miss on each one evicts, and evicted bodies are freed at the next full GC).
//   Roots run interleaved, one miss each in turn.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, cpuMicros, machine, sleep, startNode, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const all = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const arg = (name) => all(name)[0];
const roots = all('--root').length > 0 ? all('--root') : [ROOT];
const flagSets = all('--flags');
const RUNS = Number(arg('--runs') ?? 4);
const SIZE = Number(arg('--size') ?? 100 * 1024 * 1024);
const out = arg('--out');
const MiB = 1024 * 1024;

function startProxy(root, flags, backend) {
  return startNode(['--trace-gc', ...flags], path.join(root, 'packages/cli/bin/run.js'), ['proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet']);
}

async function coldWhole(url, tag) {
  const r = await request(`${url}/big/${SIZE}?gc=${tag}-${Date.now()}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`${tag}: ${n} bytes`);
}

function tally(lines) {
  const t = { scavenge: 0, markCompact: 0, other: 0, reasons: {} };
  for (const l of lines) {
    if (!/^\[\d+:0x[0-9a-f]+\]/.test(l)) continue;
    if (/Scavenge|Minor Mark/.test(l)) t.scavenge++;
    else if (/Mark-Compact|Mark-sweep/.test(l)) {
      t.markCompact++;
      const reason = /ms: (?:.*?mu = [\d.]+\)\s*)?(.*)$/.exec(l)?.[1]?.trim() ?? '?';
      const r = reason.replace(/\s+/g, ' ');
      t.reasons[r] = (t.reasons[r] ?? 0) + 1;
    } else t.other++;
  }
  return t;
}

const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const sides = [];
for (const root of roots) {
  if (flagSets.length === 0) sides.push({ name: root === ROOT ? 'this' : root, root, flags: [] });
  for (const f of flagSets) sides.push({ name: `${root === ROOT ? 'this' : root} ${f}`, root, flags: f.split(' ').filter(Boolean) });
}
for (const s of sides) {
  s.p = await startProxy(s.root, s.flags, origin.url);
  await coldWhole(s.p.url, 'warm');
  s.cpu = [];
  s.logFrom = s.p.log().length;
}
for (let i = 0; i < RUNS; i++) {
  for (const s of sides) {
    const c0 = cpuMicros(s.p.pid);
    await coldWhole(s.p.url, `${i}`);
    await sleep(30);
    s.cpu.push(Math.round((cpuMicros(s.p.pid) - c0) / (SIZE / MiB)));
  }
}
/** Peak and current RSS of a process, MiB (/proc/PID/status VmHWM, VmRSS). */
function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { peak: Math.round(kb('VmHWM') / 1024), now: Math.round(kb('VmRSS') / 1024) };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result = { date: new Date().toISOString(), machine: machine(), loadAvgAtEnd: (await import('node:os')).loadavg(), settings: { size: SIZE, runs: RUNS }, sides: [] };
for (const s of sides) {
  const t = tally(s.p.log().slice(s.logFrom).split('\n'));
  const per = (n) => +(n / RUNS).toFixed(1);
  const rss = rssMiB(s.p.pid);
  result.sides.push({ name: s.name, rssMiB: rss, cpuMicrosPerMiB: { median: median(s.cpu), all: s.cpu }, perMiss: { scavenges: per(t.scavenge), markCompacts: per(t.markCompact) }, markCompactReasons: t.reasons });
  console.log(`${s.name.padEnd(50)} cpu ${median(s.cpu)} us/MiB [${s.cpu.join(' ')}]  per miss: scavenges ${per(t.scavenge)} mark-compacts ${per(t.markCompact)}  RSS peak ${rss.peak} MiB, now ${rss.now} MiB`);
  for (const [r, n] of Object.entries(t.reasons)) console.log(`    ${n} x ${r}`);
  s.p.proc.kill('SIGTERM');
}
console.log(`load ${result.loadAvgAtEnd.map((x) => x.toFixed(1)).join(' ')}`);
if (out !== undefined) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
await stopAll();
process.exit(0);
