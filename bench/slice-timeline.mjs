// Where a cold sliced range's first byte waits (issue 13: a cold range's first byte at most 2x direct): each proxy
// configuration writes its transaction log (--log text) to a file, N cold ranges (1000 B at the middle of a new
// 100 MiB object, PAUSE ms apart, so no segment of the previous one is still filling) are read through it, interleaved
// with the same range read direct from the origin; then each request's Timestamp records are read back, per
// transaction in the request group (the client request, its segment subrequests, their backend fetches), as ms since
// the client request's Start. Printed and written as medians and quartiles, beside the client-measured first byte of
// the sliced and the direct range. Usage:
//   node bench/slice-timeline.mjs [--n 40] [--warm 20] [--pause 30] [--base DIR] [--out FILE]
// Configurations: arrival (--slice-size 1MB) and adaptive (--slice 1MB --slice-min 16MB), of this tree and, with
// --base, of another built checkout. Log records: Start (request in), Fetch/Bereq (origin request sent; a range
// probe's Fetch comes after its answer), Beresp (origin head decided on), Process (headers decided: a segment's, the
// client's), Resp (the client response written).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machine, ROOT, sleep, startSluice, stopAll, timedGet } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (n, d) => (argv.includes(n) ? argv[argv.indexOf(n) + 1] : d);
const N = Number(opt('--n', 40));
const WARM = Number(opt('--warm', 20));
const PAUSE = Number(opt('--pause', 30));
const BASE = opt('--base', undefined);
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-slice-timeline.json`));
const SIZE = 100 * 1024 * 1024;
const A = SIZE / 2;

const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const modes = [
  { name: 'arrival', flags: ['--slice-size', '1MB', '--slice-url', '^/big/'] },
  { name: 'adaptive', flags: ['--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/'] },
];
const targets = [];
for (const [tag, root] of [['', undefined], ...(BASE ? [['@base', BASE]] : [])]) {
  for (const m of modes) {
    const log = path.join(os.tmpdir(), `slice-timeline-${process.pid}-${m.name}${tag.replace('@', '-')}.log`);
    rmSync(log, { force: true });
    const t = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '2GB', '--log', 'text', '--log-file', log, ...m.flags], root);
    targets.push({ name: m.name + tag, log, url: t.url, ttfb: [] });
  }
}
const direct = [];
for (let i = 0; i < WARM + N; i++) {
  const d = await timedGet(`${origin.url}/big/${SIZE}?d=${i}`, { range: `bytes=${A}-${A + 999}` });
  if (i >= WARM) direct.push(d.ttfb);
  for (const t of targets) {
    await sleep(PAUSE);
    const r = await timedGet(`${t.url}/big/${SIZE}?t=${i}`, { range: `bytes=${A}-${A + 999}` });
    if (r.status !== 206 || r.bytes !== 1000) throw new Error(`${t.name}: status ${r.status}, ${r.bytes} bytes`);
    if (i >= WARM) t.ttfb.push(r.ttfb);
  }
  await sleep(PAUSE);
}
await sleep(500);
const load = os.loadavg();
await stopAll();

/** Per request group of the log: the Timestamp records as `Kind#depth.Name` -> ms since the client's Start. */
function timelines(file) {
  const groups = readFileSync(file, 'utf8').split(/\n(?=\*\s+<< Request)/);
  const outl = [];
  for (const g of groups) {
    if (!/^\*\s+<< Request/.test(g.trimStart())) continue;
    const marks = {};
    let kind = 'Request#1';
    let start;
    for (const line of g.split('\n')) {
      const h = /^(\*+)\s+<< (\w+)\s*>>/.exec(line);
      if (h) { kind = `${h[2]}#${h[1].length}`; continue; }
      const t = /^(-+)\s+Timestamp\s+(\w+): ([\d.]+)/.exec(line);
      if (!t) continue;
      const at = Number(t[3]) * 1000;
      if (kind === 'Request#1' && t[2] === 'Start' && start === undefined) start = at;
      const key = `${kind}.${t[2]}`;
      // The first of each (a read-ahead segment's later records would not be on the first byte's path).
      marks[key] ??= at;
    }
    if (start === undefined || !/t=\d+/.test(g)) continue;
    const n = Number(/t=(\d+)/.exec(g)[1]);
    if (n < WARM) continue;
    outl.push(Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, Math.round((v - start) * 1000) / 1000])));
  }
  return outl;
}
const q = (xs) => {
  const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  const at = (p) => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] * 1000) / 1000;
  return s.length === 0 ? undefined : { p25: at(0.25), p50: at(0.5), p75: at(0.75), n: s.length };
};
const summary = { direct: { clientFirstByteMs: q(direct) } };
for (const t of targets) {
  const tl = timelines(t.log);
  const keys = [...new Set(tl.flatMap((x) => Object.keys(x)))];
  const marks = Object.fromEntries(keys.map((k) => [k, q(tl.map((x) => x[k]))]).sort((a, b) => (a[1]?.p50 ?? 0) - (b[1]?.p50 ?? 0)));
  summary[t.name] = { clientFirstByteMs: q(t.ttfb), logMarksMsSinceStart: marks };
  rmSync(t.log, { force: true });
}
for (const [name, s] of Object.entries(summary)) {
  console.log(`${name}: client first byte p50 ${s.clientFirstByteMs?.p50} ms [${s.clientFirstByteMs?.p25}-${s.clientFirstByteMs?.p75}]`);
  for (const [k, v] of Object.entries(s.logMarksMsSinceStart ?? {})) console.log(`  ${k.padEnd(24)} ${String(v?.p50).padStart(8)} ms [${v?.p25}-${v?.p75}]`);
}
console.log(`load average at end ${load.map((x) => x.toFixed(2)).join(' ')}`);
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), n: N, warm: WARM, pauseMs: PAUSE, base: BASE, machine: machine(), loadavgAtEnd: load, summary }, null, 2) + '\n');
console.log(`wrote ${out}`);
process.exit(0);
