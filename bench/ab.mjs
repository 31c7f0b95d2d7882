// Before/after a change, same machine, same run: this tree's Sluice against another built checkout's.
// Usage: node bench/ab.mjs --before DIR [--label NAME] [--quick] [--out FILE]
//   DIR: a built checkout of the other revision, for instance
//     git worktree add /tmp/sluice-before <rev> && (cd /tmp/sluice-before && npx -y pnpm@10 install --frozen-lockfile && npx tsc -b)
// Scenarios, each interleaved so drift on a shared machine hits both alike; the order within a round alternates
// (before, after | after, before | ...; session 10: with before always first, the second side's cold whole miss ran
// 1.17-1.28x slower in 4 of 4 session 9 runs), and each big-miss round records its order and the load average:
//   hit-1k          requests/s (autocannon, 32 connections) and proxy CPU per request, median of rounds
//   miss-ttfb       time to first byte of a cold 1 KiB miss (unique URLs), p50 over many
//   sliced-range    a 1000-byte range in the middle of a cold 16 MiB object with 1 MiB segments: TTFB p50
//   miss-whole      a cold 32 MiB object read whole (not sliced): time to last byte and proxy CPU per MiB, medians
//   range-miss      a 1000-byte range in the middle of a cold 32 MiB object (not sliced): TTFB, proxy CPU per MiB
// --only a,b runs just those scenarios.
// Origins come from this tree (`sluice origin --fast` for hits, `sluice origin` for misses and big objects).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, cpuMicros, machine, percentiles, sleep, startSluice, stopAll, timedGet } from './lib.mjs';

const argv = process.argv.slice(2);
const arg = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const before = arg('--before');
if (before === undefined) {
  console.error('bench/ab.mjs: --before DIR is required (a built checkout of the revision to compare with)');
  process.exit(2);
}
const label = arg('--label') ?? 'ab';
const quick = argv.includes('--quick');
const out = arg('--out') ?? path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-${label}.json`);
const SECONDS = quick ? 1 : 5;
const ROUNDS = quick ? 1 : 5;
const MISSES = quick ? 20 : 200;
const SLICES = quick ? 3 : 15;
const MiB = 1024 * 1024;
const BIG_ROUNDS = quick ? 3 : 15;
const only = arg('--only')?.split(',');
const wanted = (name) => only === undefined || only.includes(name);

const children = [];
/** Runs `sluice <args>` from the checkout at `dir`; resolves with { url, pid } once it prints its address. */
function startFrom(dir, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(dir, 'packages/cli/bin/run.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m !== null) resolve({ url: m[1], pid: p.pid });
    });
    p.stderr.on('data', (d) => (text += String(d)));
    p.on('exit', (code) => reject(new Error(`${dir}: sluice ${args.join(' ')} exited ${code}: ${text.trim()}`)));
  });
}


const cannon = (url) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 32, duration: SECONDS }, (e, r) => (e ? reject(e) : resolve(r))));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** The sides in round n's order: as given in even rounds, reversed in odd ones (entries keep their index). */
const ordered = (sides, n) => {
  const e = [...sides.entries()];
  return ((n % 2) + 2) % 2 === 0 ? e : e.reverse();
};
/** Minor page faults of a process so far (/proc/PID/stat field 10). */
const minflt = (pid) => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return NaN;
  }
};

async function ttfb(url, headers = {}) {
  const t0 = performance.now();
  const res = await request(url, { headers });
  let first;
  for await (const _ of res.body) first ??= performance.now() - t0;
  return { status: res.statusCode, ms: first ?? performance.now() - t0 };
}

async function hits(sides) {
  const rps = sides.map(() => []);
  const cpu = sides.map(() => []);
  for (const s of sides) {
    await (await request(`${s.hit.url}/static/1k`)).body.text();
    await cannon(`${s.hit.url}/static/1k`);
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, s] of ordered(sides, r)) {
      const c0 = cpuMicros(s.hit.pid);
      const res = await cannon(`${s.hit.url}/static/1k`);
      if (res.non2xx > 0 || res.errors > 0) throw new Error(`${s.name}: ${res.non2xx} non-2xx, ${res.errors} errors`);
      rps[i].push(Math.round(res.requests.average));
      cpu[i].push(Math.round(((cpuMicros(s.hit.pid) - c0) / res.requests.total) * 10) / 10);
    }
  }
  return sides.map((s, i) => ({ name: 'hit-1k', side: s.name, rps: median(rps[i]), rpsRounds: rps[i], cpuMicrosPerRequest: median(cpu[i]), cpuRounds: cpu[i] }));
}

async function misses(sides) {
  const ms = sides.map(() => []);
  for (let n = 0; n < MISSES; n++) {
    for (const [i, s] of ordered(sides, n)) {
      const r = await ttfb(`${s.miss.url}/static/1k?ab=${s.name}-${n}-${Date.now()}`);
      if (r.status !== 200) throw new Error(`miss ${s.name}: ${r.status}`);
      ms[i].push(r.ms);
    }
  }
  return sides.map((s, i) => ({ name: 'miss-ttfb', side: s.name, ttfbMs: percentiles(ms[i]) }));
}

async function sliced(sides) {
  const size = 16 * MiB;
  const start = size / 2;
  const ms = sides.map(() => []);
  for (let n = 0; n < SLICES; n++) {
    for (const [i, s] of ordered(sides, n)) {
      const r = await ttfb(`${s.slice.url}/big/${size}?ab=${s.name}-${n}-${Date.now()}`, { range: `bytes=${start}-${start + 999}` });
      if (r.status !== 206) throw new Error(`sliced ${s.name}: ${r.status}`);
      ms[i].push(r.ms);
      await sleep(50);
    }
  }
  return sides.map((s, i) => ({ name: 'sliced-range', side: s.name, objectBytes: size, segmentBytes: MiB, ttfbMs: percentiles(ms[i]) }));
}

/**
 * Cold misses of a 32 MiB object (unsliced), whole or a 1000-byte range at its middle, interleaved before/after:
 * time to first and last byte, and the proxy's CPU per MiB the origin sent (utime+stime, read after the fetch ended,
 * so it holds the whole fetch: the robust figure on a loaded machine).
 */
async function bigMisses(sides, name, range) {
  const size = 32 * MiB;
  const rows = sides.map(() => ({ ttfb: [], ttlb: [], cpu: [], faults: [] }));
  const rounds = [];
  const headers = range ? { range: `bytes=${size / 2}-${size / 2 + 999}` } : {};
  for (let n = -2; n < BIG_ROUNDS; n++) {
    const order = ordered(sides, n);
    if (n >= 0) rounds.push({ order: order.map(([, s]) => s.name), load1: os.loadavg()[0] });
    for (const [i, s] of order) {
      const c0 = cpuMicros(s.miss.pid);
      const f0 = minflt(s.miss.pid);
      const { status, bytes: got, ttfb: first, ttlb } = await timedGet(`${s.miss.url}/big/${size}?ab=${name}-${s.name}-${n}-${Date.now()}`, headers);
      if (status !== (range ? 206 : 200) || got !== (range ? 1000 : size)) throw new Error(`${name} ${s.name}: ${status}, ${got} bytes`);
      // The fetch goes on after a range is answered: let it end so its CPU lands in this round.
      await sleep(range ? 400 : 50);
      // The first two rounds warm the JIT up and are not counted.
      if (n < 0) continue;
      rows[i].ttfb.push(first);
      rows[i].ttlb.push(ttlb);
      rows[i].cpu.push(Math.round((cpuMicros(s.miss.pid) - c0) / (size / MiB)));
      rows[i].faults.push(Math.round((minflt(s.miss.pid) - f0) / (size / MiB)));
    }
  }
  const t = range ? 'ttfb' : 'ttlb';
  // Per-round ratio after/before of the wall figure, split by which side ran first in the round.
  const ratios = rounds.map((r, k) => ({ first: r.order[0], ratio: Math.round((rows[1][t][k] / rows[0][t][k]) * 1000) / 1000 }));
  const byFirst = (f) => ratios.filter((r) => r.first === f).map((r) => r.ratio);
  const split = { afterOverBefore: { beforeFirst: byFirst(sides[0].name), afterFirst: byFirst(sides[1].name) } };
  const round3 = (x) => Math.round(x * 1000) / 1000;
  return sides.map((s, i) => ({ name, side: s.name, objectBytes: size, ttfbMs: percentiles(rows[i].ttfb), ttlbMs: percentiles(rows[i].ttlb), cpuMicrosPerMiB: median(rows[i].cpu), cpuRounds: rows[i].cpu, ttfbRounds: rows[i].ttfb.map(round3), ttlbRounds: rows[i].ttlb.map(round3), minorFaultsPerMiB: median(rows[i].faults), faultRounds: rows[i].faults, rounds, ...(i === 1 ? { split } : {}) }));
}

async function main() {
  const m = machine();
  const fast = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const fixture = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const sides = [];
  for (const [name, dir] of [['before', path.resolve(before)], ['after', ROOT]]) {
    const hit = await startFrom(dir, ['proxy', '--listen', '127.0.0.1:0', '--backend', fast.url, '--quiet']);
    const miss = await startFrom(dir, ['proxy', '--listen', '127.0.0.1:0', '--backend', fixture.url, '--quiet']);
    const slice = await startFrom(dir, ['proxy', '--listen', '127.0.0.1:0', '--backend', fixture.url, '--quiet', '--storage', '1GB', '--slice-size', '1MB', '--slice-url', '^/big/']);
    sides.push({ name, dir, hit, miss, slice });
  }
  await sleep(300);
  const scenarios = [];
  if (wanted('hit-1k')) scenarios.push(...(await hits(sides)));
  if (wanted('miss-ttfb')) scenarios.push(...(await misses(sides)));
  if (wanted('sliced-range')) scenarios.push(...(await sliced(sides)));
  if (wanted('miss-whole')) scenarios.push(...(await bigMisses(sides, 'miss-whole', false)));
  if (wanted('range-miss')) scenarios.push(...(await bigMisses(sides, 'range-miss', true)));
  for (const p of children) p.kill('SIGTERM');
  await stopAll();
  const result = { date: new Date().toISOString(), quick, machine: m, before: path.resolve(before), settings: { seconds: SECONDS, rounds: ROUNDS, misses: MISSES, slices: SLICES }, scenarios };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  const get = (name, side) => scenarios.find((s) => s.name === name && s.side === side);
  const [hb, ha] = [get('hit-1k', 'before'), get('hit-1k', 'after')];
  if (hb !== undefined) console.log(`hit-1k        before ${hb.rps} req/s, ${hb.cpuMicrosPerRequest} us CPU/req   after ${ha.rps} req/s, ${ha.cpuMicrosPerRequest} us CPU/req   ratio ${(ha.rps / hb.rps).toFixed(2)} rps, ${(ha.cpuMicrosPerRequest / hb.cpuMicrosPerRequest).toFixed(2)} CPU`);
  for (const name of ['miss-ttfb', 'sliced-range']) {
    const [b, a] = [get(name, 'before'), get(name, 'after')];
    if (b !== undefined) console.log(`${name.padEnd(13)} before p50 ${b.ttfbMs.p50} ms   after p50 ${a.ttfbMs.p50} ms   ratio ${(a.ttfbMs.p50 / b.ttfbMs.p50).toFixed(2)}`);
  }
  for (const name of ['miss-whole', 'range-miss']) {
    const [b, a] = [get(name, 'before'), get(name, 'after')];
    if (b === undefined) continue;
    const t = name === 'range-miss' ? 'ttfbMs' : 'ttlbMs';
    console.log(`${name.padEnd(13)} ${t} p50 before ${b[t].p50} after ${a[t].p50} (ratio ${(a[t].p50 / b[t].p50).toFixed(2)})   CPU us/MiB before ${b.cpuMicrosPerMiB} after ${a.cpuMicrosPerMiB} (ratio ${(a.cpuMicrosPerMiB / b.cpuMicrosPerMiB).toFixed(2)})   faults/MiB ${b.minorFaultsPerMiB} / ${a.minorFaultsPerMiB}`);
    const md = (xs) => (xs.length ? median(xs).toFixed(2) : '-');
    console.log(`${''.padEnd(13)} after/before ${t} per round: median ${md(a.split.afterOverBefore.beforeFirst)} when before ran first (${a.split.afterOverBefore.beforeFirst.join(' ')}), ${md(a.split.afterOverBefore.afterFirst)} when after ran first (${a.split.afterOverBefore.afterFirst.join(' ')})`);
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  for (const p of children) p.kill('SIGTERM');
  await stopAll();
  process.exit(1);
});
