// The slicer (segmented caching of large objects), issue 13. Usage:
//   node bench/slice.mjs [--quick] [--rounds N] [--warmup N] [--read-ahead N] [--runs-read-ahead N] [--no-runs] [--storage SIZE] [--base CHECKOUT] [--note TEXT] [--out FILE]
// Targets, all in one run and interleaved round by round (the machine is shared: ratios within a round say more than
// absolute times across rounds):
//   direct     the fixture origin itself
//   unsliced   Sluice without slicing
//   arrival    Sluice --slice-size 1MB (sliced as the request arrives: nginx's model)
//   adaptive   Sluice --slice 1MB --slice-min 16MB (decided from the response: Varnish Enterprise's model; since
//              session 8 its read-ahead goes as runs by default, so adaptive@base is the same flags without runs)
//   runs       adaptive with --slice-runs --slice-read-ahead 8 (--runs-read-ahead N; --no-runs: not run)
//   lead       with --lead: adaptive with --slice-keep-body (the 200 that makes the meta object kept as the first run,
//              slicer/lead.ts); with --base also lead@base
//   --targets a,b,...  keeps only those targets (their @base twins too); direct and unsliced always run (the ratios' base)
//   nginx      nginx `slice 1m` + proxy_cache (skipped, with a note, when nginx is not installed)
// Scenarios per round and target, each on a cold object of its own:
//   range: 1000 bytes at the middle of a 100 MiB object: first byte, last byte
//   full:  the whole object, cold then warm: last byte
// and for each: origin bytes, requests and connections, and the CPU time of the target's process and of the origin's
// (from /proc, in ns: steadier than wall time on a loaded machine). Printed and written as median [p25-p75] over
// the rounds (default 9), with the 1-minute load average per round.
// Two sets of figures per target (issue 13):
//   firstRound  a fresh process's first cold range and first cold/warm whole read (V8 has not compiled the proxy's
//               cold-range and segment paths yet: what the first requests after a start cost)
//   headline    the rounds, run after a warm-up phase: --warmup N (default 40; 4 with --quick) cold ranges and N/10
//               cold+warm whole reads per target on other, smaller sliced objects (WARM_SIZE), so the rounds measure
//               a process in service (the same paths run thousands of times), as a proxy in production is. nginx has
//               no JIT and runs the same warm-up.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, cpuNanos, machine, sleep, startNginxCache, startSluice, stopAll, timedGet } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const quick = argv.includes('--quick');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-slice.json`));
const MiB = 1024 * 1024;
const SIZE = quick ? 16 * MiB : 100 * MiB;
const ROUNDS = Number(opt('--rounds', quick ? 2 : 9));
const READ_AHEAD = opt('--read-ahead', undefined);
const WARMUP = Number(opt('--warmup', quick ? 4 : 40));
// The warm-up's objects: sliced in both modes (over --slice-min 16MB), smaller than the measured one.
const WARM_SIZE = 20 * MiB;
// Another built checkout (the code before a change): its unsliced, arrival and adaptive run as targets of their own
// (`<mode>@base`) in the same rounds, and each of this checkout's gets per-round ratios against its @base twin.
const BASE = opt('--base', undefined);
// The Sluice targets' --storage (default 1GB: the store never fills in a run, so every cold segment takes new slabs and
// first-touches their pages). --storage 256MB: the store fills within the first rounds and evicts, so cold segments
// reuse given-back slabs, as a proxy in service does (session 11; the 100 MiB object still fits whole).
const STORAGE = opt('--storage', '1GB');
// What the numbers cannot say themselves (other load on a shared machine, say), kept with them.
const NOTE = opt('--note', undefined);

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** The origin's counters: bytes sent, requests for the bench's object path, connections accepted. */
async function originCounters(originUrl) {
  const s = await (await request(`${originUrl}/stats`)).body.json();
  return { bytes: s.bytes, requests: (s.perPath[`/big/${SIZE}`] ?? 0) + (s.perPath[`/big/${WARM_SIZE}`] ?? 0), connections: s.connections };
}

/**
 * Origin counters once the byte count has settled (an aborted transfer stops counting when its socket closes). The
 * origin counts the bytes of its own /stats answers too (~90 bytes each), so "settled" is less than STATS_SLACK between
 * two looks: with `===` (before session 11) no look ever settled and every call ran its 20 x 25 ms, ~1 s per scenario.
 */
const STATS_SLACK = 1024;
async function settledOrigin(originUrl) {
  let last = await originCounters(originUrl);
  for (let i = 0; i < 20; i++) {
    await sleep(25);
    const now = await originCounters(originUrl);
    if (now.bytes - last.bytes < STATS_SLACK) return now;
    last = now;
  }
  return last;
}

/**
 * What one scenario cost, beside its wall times: origin bytes, requests and connections, and the CPU time (ms) of the
 * target's process (nginx: master and worker) and of the origin's, from before it to after the origin settled (so a
 * fetch that goes on in the background after the client's last byte counts too).
 */
async function measured(ctx, target, run) {
  const o0 = await settledOrigin(ctx.originUrl);
  const cpu0 = cpuNanos(target.pid);
  const ocpu0 = cpuNanos(ctx.originPid);
  const r = await run();
  const o1 = await settledOrigin(ctx.originUrl);
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  return {
    ...r,
    origin: o1.bytes - o0.bytes,
    originRequests: o1.requests - o0.requests,
    originConnections: o1.connections - o0.connections,
    cpuMs: target.pid === ctx.originPid ? undefined : ms(cpuNanos(target.pid) - cpu0),
    originCpuMs: ms(cpuNanos(ctx.originPid) - ocpu0),
  };
}

async function rangeCold(ctx, target, tag, size = SIZE) {
  const start = size / 2;
  return measured(ctx, target, async () => {
    const { status, bytes: got, ttfb: first, ttlb: last } = await timedGet(`${target.url}/big/${size}?r=${tag}`, { range: `bytes=${start}-${start + 999}` });
    if (status !== 206 || got !== 1000) throw new Error(`range ${target.url}: status ${status}, ${got} bytes`);
    return { ttfb: first, ttlb: last };
  });
}

async function whole(url, size = SIZE) {
  const t0 = performance.now();
  const res = await request(url);
  let got = 0;
  for await (const c of res.body) got += c.length;
  if (res.statusCode !== 200 || got !== size) throw new Error(`full ${url}: status ${res.statusCode}, ${got} bytes`);
  return { ttlb: performance.now() - t0 };
}

async function fullColdWarm(ctx, target, tag, size = SIZE) {
  const url = `${target.url}/big/${size}?f=${tag}`;
  const cold = await measured(ctx, target, () => whole(url, size));
  const warm = await measured(ctx, target, () => whole(url, size));
  return { cold, warm };
}

/** The warm-up phase: cold ranges and whole reads of other (smaller, sliced) objects, not recorded. */
async function warmUp(ctx, target, stamp) {
  for (let i = 0; i < WARMUP; i++) {
    await rangeCold(ctx, target, `${stamp}-${target.mode}-warm${i}`, WARM_SIZE);
    if (i % 10 === 0) await fullColdWarm(ctx, target, `${stamp}-${target.mode}-warm${i}`, WARM_SIZE);
  }
}

const median = (xs) => {
  const s = xs.filter((x) => x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? undefined : Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
};

/** Median and spread of a sample: min, quartiles (nearest rank), max, n. */
function spread(xs) {
  const s = xs.filter((x) => x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  const r = (v) => (v === undefined ? undefined : Math.round(v * 100) / 100);
  const at = (q) => r(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]);
  return { p50: at(0.5), min: r(s[0]), p25: at(0.25), p75: at(0.75), max: r(s[s.length - 1]), n: s.length };
}

async function main() {
  const m = machine();
  const originProc = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const ctx = { originUrl: originProc.url, originPid: originProc.pid };
  const common = ['proxy', '--listen', '127.0.0.1:0', '--backend', originProc.url, '--quiet', '--storage', STORAGE];
  const ra = READ_AHEAD === undefined ? [] : ['--slice-read-ahead', READ_AHEAD];
  const targets = [
    { mode: 'direct', ...originProc },
    { mode: 'unsliced', ...(await startSluice(common)) },
    { mode: 'arrival', ...(await startSluice([...common, '--slice-size', '1MB', '--slice-url', '^/big/', ...ra])) },
    { mode: 'adaptive', ...(await startSluice([...common, '--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/', ...ra])) },
  ];
  // Run fetches (--slice-runs: consecutive missing segments with one origin Range request), with --runs-read-ahead
  // (default 8: runs of 7 segments) unless --read-ahead is given; --no-runs leaves the target out.
  if (!argv.includes('--no-runs')) {
    const runsRa = READ_AHEAD ?? opt('--runs-read-ahead', '8');
    targets.push({ mode: 'runs', ...(await startSluice([...common, '--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/', '--slice-runs', '--slice-read-ahead', runsRa])) });
  }
  const lead = argv.includes('--lead');
  const leadFlags = [...common, '--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/', '--slice-keep-body', ...ra];
  if (lead) targets.push({ mode: 'lead', ...(await startSluice(leadFlags)) });
  if (BASE !== undefined) {
    if (lead) targets.push({ mode: 'lead@base', ...(await startSluice(leadFlags, BASE)) });
    targets.push(
      { mode: 'unsliced@base', ...(await startSluice(common, BASE)) },
      { mode: 'arrival@base', ...(await startSluice([...common, '--slice-size', '1MB', '--slice-url', '^/big/', ...ra], BASE)) },
      { mode: 'adaptive@base', ...(await startSluice([...common, '--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/', ...ra], BASE)) },
    );
  }
  const nginx = await startNginxCache(originProc.url, await freePort(), { slice: '1m', maxSize: '2g' });
  const notes = NOTE === undefined ? [] : [NOTE];
  if (nginx === undefined) notes.push('nginx is not installed: no nginx slice peer in this run (apt-get install nginx-light)');
  else targets.push({ mode: 'nginx', url: nginx.url, pid: nginx.pid });
  if (Number.isNaN(cpuNanos(originProc.pid))) notes.push('no /proc/<pid>/task/*/schedstat here: no CPU times in this run');
  const only = opt('--targets', undefined)?.split(',');
  if (only !== undefined) {
    const keep = (t) => ['direct', 'unsliced'].includes(t.mode) || only.includes(t.mode.replace(/@base$/, ''));
    targets.splice(0, targets.length, ...targets.filter(keep));
  }
  await sleep(300);
  const rows = Object.fromEntries(targets.map((t) => [t.mode, { range: [], full: [] }]));
  const first = Object.fromEntries(targets.map((t) => [t.mode, { range: [], full: [] }]));
  const loadavg = [];
  const stamp = Date.now();
  // A fresh process's first requests (recorded apart: firstRound), then the warm-up phase (not recorded).
  for (const t of targets) {
    first[t.mode].range.push(await rangeCold(ctx, t, `${stamp}-${t.mode}-first`));
    first[t.mode].full.push(await fullColdWarm(ctx, t, `${stamp}-${t.mode}-first`));
  }
  for (const t of targets) await warmUp(ctx, t, stamp);
  process.stderr.write(`warm-up done: ${WARMUP} cold ranges, ${Math.ceil(WARMUP / 10)} whole reads per target\n`);
  for (let round = 0; round < ROUNDS; round++) {
    loadavg.push(Math.round(os.loadavg()[0] * 100) / 100);
    // Interleaved: every target once per round, starting one further each round.
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(round + k) % targets.length];
      rows[t.mode].range.push(await rangeCold(ctx, t, `${stamp}-${t.mode}-${round}`));
      await sleep(100);
      rows[t.mode].full.push(await fullColdWarm(ctx, t, `${stamp}-${t.mode}-${round}`));
      await sleep(100);
    }
    if (!quick) process.stderr.write(`round ${round + 1}/${ROUNDS} done (load ${loadavg[round]})\n`);
  }
  await stopAll();
  const summary = summarise(rows, targets.map((t) => t.mode));
  const firstRound = summarise(first, targets.map((t) => t.mode));
  mkdirSync(path.dirname(out), { recursive: true });
  const doc = {
    date: new Date().toISOString(),
    quick,
    rounds: ROUNDS,
    objectBytes: SIZE,
    segmentBytes: MiB,
    readAhead: READ_AHEAD === undefined ? 'default' : Number(READ_AHEAD),
    storage: STORAGE,
    base: BASE === undefined ? undefined : { path: BASE, note: 'targets named <mode>@base ran that checkout\'s build' },
    machine: { ...m, loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100), loadavg1PerRound: loadavg },
    peer: nginx?.version,
    notes: [
      ...notes,
      `summary: the rounds, after a warm-up phase of ${WARMUP} cold ranges and ${Math.ceil(WARMUP / 10)} cold+warm whole reads per target on other ${WARM_SIZE / MiB} MiB objects (a process in service: V8 has compiled the cold-range and segment paths); firstRound: each fresh process's first cold range and first whole read, before any warm-up (one sample each)`,
    ],
    warmup: { coldRanges: WARMUP, wholeReads: Math.ceil(WARMUP / 10), objectBytes: WARM_SIZE },
    units: 'times and CPU in ms; cpuMs: the target process (nginx: master + worker) from before a scenario to after the origin settled; originCpuMs: the origin process the same way',
    summary,
    firstRound,
    rounds_raw: rows,
    first_raw: first,
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  console.log('\n== first requests of a fresh process (one sample each, before the warm-up) ==');
  print(firstRound, [], []);
  console.log(`\n== headline: ${ROUNDS} rounds after the warm-up ==`);
  print(summary, notes, loadavg);
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

/** Medians and spread per target, and medians of per-round ratios (each round's targets ran back to back). */
function summarise(rows, modes) {
  const ratio = (a, b, kind, get) => (rows[b] === undefined ? undefined : median(rows[a][kind].map((x, i) => get(x) / get(rows[b][kind][i]))));
  const out = {};
  for (const mode of modes) {
    const r = rows[mode];
    const of = (kind, get) => spread(r[kind].map(get));
    out[mode] = {
      range: {
        ttfbMs: of('range', (x) => x.ttfb),
        ttlbMs: of('range', (x) => x.ttlb),
        cpuMs: of('range', (x) => x.cpuMs),
        originCpuMs: of('range', (x) => x.originCpuMs),
        originBytes: of('range', (x) => x.origin),
        originRequests: of('range', (x) => x.originRequests),
        originConnections: of('range', (x) => x.originConnections),
      },
      fullCold: {
        ttlbMs: of('full', (x) => x.cold.ttlb),
        cpuMs: of('full', (x) => x.cold.cpuMs),
        originCpuMs: of('full', (x) => x.cold.originCpuMs),
        originBytes: of('full', (x) => x.cold.origin),
        originRequests: of('full', (x) => x.cold.originRequests),
        originConnections: of('full', (x) => x.cold.originConnections),
      },
      fullWarm: {
        ttlbMs: of('full', (x) => x.warm.ttlb),
        cpuMs: of('full', (x) => x.warm.cpuMs),
        originRequests: of('full', (x) => x.warm.originRequests),
      },
      ratios: {
        rangeTtfbVsDirect: ratio(mode, 'direct', 'range', (x) => x.ttfb),
        rangeTtfbVsNginx: ratio(mode, 'nginx', 'range', (x) => x.ttfb),
        fullColdVsUnsliced: ratio(mode, 'unsliced', 'full', (x) => x.cold.ttlb),
        fullWarmVsDirect: ratio(mode, 'direct', 'full', (x) => x.warm.ttlb),
        fullColdCpuVsUnsliced: ratio(mode, 'unsliced', 'full', (x) => x.cold.cpuMs),
        fullWarmCpuVsUnsliced: ratio(mode, 'unsliced', 'full', (x) => x.warm.cpuMs),
        rangeCpuVsNginx: ratio(mode, 'nginx', 'range', (x) => x.cpuMs),
      },
      vsBase:
        rows[`${mode}@base`] === undefined
          ? undefined
          : {
              rangeTtfb: ratio(mode, `${mode}@base`, 'range', (x) => x.ttfb),
              rangeCpu: ratio(mode, `${mode}@base`, 'range', (x) => x.cpuMs),
              fullColdTtlb: ratio(mode, `${mode}@base`, 'full', (x) => x.cold.ttlb),
              fullColdCpu: ratio(mode, `${mode}@base`, 'full', (x) => x.cold.cpuMs),
              fullWarmTtlb: ratio(mode, `${mode}@base`, 'full', (x) => x.warm.ttlb),
              fullWarmCpu: ratio(mode, `${mode}@base`, 'full', (x) => x.warm.cpuMs),
            },
    };
  }
  return out;
}

function printVsBase(summary, f) {
  const rows = Object.entries(summary).filter(([, s]) => s.vsBase !== undefined);
  if (rows.length === 0) return;
  console.log('\nthis checkout / --base, medians of per-round ratios (under 1: faster or cheaper now)');
  console.log('target     range ttfb  range cpu  cold ttlb  cold cpu  warm ttlb  warm cpu');
  for (const [mode, s] of rows) {
    const b = s.vsBase;
    console.log(`${mode.padEnd(10)} ${[b.rangeTtfb, b.rangeCpu, b.fullColdTtlb, b.fullColdCpu, b.fullWarmTtlb, b.fullWarmCpu].map((x) => f(x).padStart(9)).join('  ')}`);
  }
}

function print(summary, notes, loadavg) {
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`load average (1 min) per round: ${loadavg.join(' ')}`);
  const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const sp = (s, d = 1) => `${f(s.p50, d)} [${f(s.p25, d)}-${f(s.p75, d)}]`;
  console.log('\nmedian [p25-p75] over rounds; ms unless said');
  console.log('target        | range ttfb          cpu             origin MiB req | cold ttlb            cpu                 origin MiB req conn | warm ttlb           cpu');
  for (const [mode, s] of Object.entries(summary)) {
    console.log(
      `${mode.padEnd(13)} | ${sp(s.range.ttfbMs).padEnd(19)} ${sp(s.range.cpuMs).padEnd(15)} ${f(s.range.originBytes.p50 / MiB).padStart(6)} ${String(s.range.originRequests.p50).padStart(3)} | ${sp(s.fullCold.ttlbMs).padEnd(20)} ${sp(s.fullCold.cpuMs).padEnd(19)} ${f(s.fullCold.originBytes.p50 / MiB, 1).padStart(6)} ${String(s.fullCold.originRequests.p50).padStart(3)} ${String(s.fullCold.originConnections.p50).padStart(4)} | ${sp(s.fullWarm.ttlbMs).padEnd(19)} ${sp(s.fullWarm.cpuMs)}`,
    );
  }
  console.log('\nmedians of per-round ratios');
  console.log('target        ttfb/direct ttfb/nginx cold/unsliced warm/direct | cpu: cold/unsliced warm/unsliced range/nginx');
  for (const [mode, s] of Object.entries(summary)) {
    const r = s.ratios;
    console.log(
      `${mode.padEnd(13)} ${f(r.rangeTtfbVsDirect).padStart(11)} ${f(r.rangeTtfbVsNginx).padStart(10)} ${f(r.fullColdVsUnsliced).padStart(13)} ${f(r.fullWarmVsDirect).padStart(11)} | ${f(r.fullColdCpuVsUnsliced).padStart(18)} ${f(r.fullWarmCpuVsUnsliced).padStart(13)} ${f(r.rangeCpuVsNginx).padStart(11)}`,
    );
  }
  printVsBase(summary, f);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
