// The slicer (segmented caching of large objects), issue 13. Usage:
//   node bench/slice.mjs [--quick] [--rounds N] [--read-ahead N] [--note TEXT] [--out FILE]
// Targets, all in one run and interleaved round by round (the machine is shared: ratios within a round say more than
// absolute times across rounds):
//   direct     the fixture origin itself
//   unsliced   Sluice without slicing
//   arrival    Sluice --slice-size 1MB (sliced as the request arrives: nginx's model)
//   adaptive   Sluice --slice 1MB --slice-min 16MB (decided from the response: Varnish Enterprise's model)
//   nginx      nginx `slice 1m` + proxy_cache (skipped, with a note, when nginx is not installed)
// Scenarios per round and target, each on a cold object of its own:
//   range: 1000 bytes at the middle of a 100 MiB object: first byte, last byte, origin bytes sent for it
//   full:  the whole object, cold then warm: last byte; origin bytes for the cold one
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, machine, originBytes, percentiles, sleep, startNginxCache, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const quick = argv.includes('--quick');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-slice.json`));
const MiB = 1024 * 1024;
const SIZE = quick ? 16 * MiB : 100 * MiB;
const ROUNDS = Number(opt('--rounds', quick ? 1 : 5));
const READ_AHEAD = opt('--read-ahead', undefined);
// What the numbers cannot say themselves (other load on a shared machine, say), kept with them.
const NOTE = opt('--note', undefined);

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Origin bytes once the counter has settled (an aborted transfer stops counting when its socket closes). */
async function settledOriginBytes(originUrl) {
  let last = await originBytes(originUrl);
  for (let i = 0; i < 20; i++) {
    await sleep(25);
    const now = await originBytes(originUrl);
    if (now === last) return now;
    last = now;
  }
  return last;
}

async function rangeCold(originUrl, base, tag) {
  const start = SIZE / 2;
  const before = await settledOriginBytes(originUrl);
  const t0 = performance.now();
  const res = await request(`${base}/big/${SIZE}?r=${tag}`, { headers: { range: `bytes=${start}-${start + 999}` } });
  let first;
  let got = 0;
  for await (const c of res.body) {
    first ??= performance.now() - t0;
    got += c.length;
  }
  const last = performance.now() - t0;
  if (res.statusCode !== 206 || got !== 1000) throw new Error(`range ${base}: status ${res.statusCode}, ${got} bytes`);
  return { ttfb: first, ttlb: last, origin: (await settledOriginBytes(originUrl)) - before };
}

async function whole(url) {
  const t0 = performance.now();
  const res = await request(url);
  let got = 0;
  for await (const c of res.body) got += c.length;
  if (res.statusCode !== 200 || got !== SIZE) throw new Error(`full ${url}: status ${res.statusCode}, ${got} bytes`);
  return performance.now() - t0;
}

async function fullColdWarm(originUrl, base, tag) {
  const url = `${base}/big/${SIZE}?f=${tag}`;
  const before = await settledOriginBytes(originUrl);
  const cold = await whole(url);
  const origin = (await settledOriginBytes(originUrl)) - before;
  const warm = await whole(url);
  return { cold, warm, origin };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
};

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const common = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB'];
  const ra = READ_AHEAD === undefined ? [] : ['--slice-read-ahead', READ_AHEAD];
  const targets = [
    ['direct', origin.url],
    ['unsliced', (await startSluice(common)).url],
    ['arrival', (await startSluice([...common, '--slice-size', '1MB', '--slice-url', '^/big/', ...ra])).url],
    ['adaptive', (await startSluice([...common, '--slice', '1MB', '--slice-min', '16MB', '--slice-url', '^/big/', ...ra])).url],
  ];
  const nginx = await startNginxCache(origin.url, await freePort(), { slice: '1m', maxSize: '2g' });
  const notes = NOTE === undefined ? [] : [NOTE];
  if (nginx === undefined) notes.push('nginx is not installed: no nginx slice peer in this run (apt-get install nginx-light)');
  else targets.push(['nginx', nginx.url]);
  await sleep(300);
  const rows = Object.fromEntries(targets.map(([mode]) => [mode, { range: [], full: [] }]));
  const stamp = Date.now();
  // Warm-up, not recorded: every target's code paths once (the JIT), on objects of their own.
  for (const [mode, base] of targets) {
    await rangeCold(origin.url, base, `${stamp}-${mode}-warmup`);
    await fullColdWarm(origin.url, base, `${stamp}-${mode}-warmup`);
  }
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved: every target once per round, starting one further each round.
    for (let k = 0; k < targets.length; k++) {
      const [mode, base] = targets[(round + k) % targets.length];
      rows[mode].range.push(await rangeCold(origin.url, base, `${stamp}-${mode}-${round}`));
      await sleep(100);
      rows[mode].full.push(await fullColdWarm(origin.url, base, `${stamp}-${mode}-${round}`));
      await sleep(100);
    }
  }
  await stopAll();
  const summary = summarise(rows, targets.map(([mode]) => mode));
  mkdirSync(path.dirname(out), { recursive: true });
  const doc = { date: new Date().toISOString(), quick, rounds: ROUNDS, objectBytes: SIZE, segmentBytes: MiB, readAhead: READ_AHEAD === undefined ? 'default' : Number(READ_AHEAD), machine: { ...m, loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) }, peer: nginx?.version, notes, summary, rounds_raw: rows };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  print(summary, notes);
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

/** Medians per target, and medians of per-round ratios (each round's targets ran back to back). */
function summarise(rows, modes) {
  const ratio = (a, b, f) => median(rows[a][f.kind].map((x, i) => f.get(x) / f.get(rows[b][f.kind][i])));
  const rangeTtfb = { kind: 'range', get: (x) => x.ttfb };
  const cold = { kind: 'full', get: (x) => x.cold };
  const warm = { kind: 'full', get: (x) => x.warm };
  const out = {};
  for (const mode of modes) {
    const r = rows[mode];
    out[mode] = {
      rangeTtfbMs: percentiles(r.range.map((x) => x.ttfb)),
      rangeTtlbMs: percentiles(r.range.map((x) => x.ttlb)),
      rangeOriginBytes: median(r.range.map((x) => x.origin)),
      fullColdTtlbMs: percentiles(r.full.map((x) => x.cold)),
      fullWarmTtlbMs: percentiles(r.full.map((x) => x.warm)),
      fullColdOriginBytes: median(r.full.map((x) => x.origin)),
      ratios: {
        rangeTtfbVsDirect: ratio(mode, 'direct', rangeTtfb),
        rangeTtfbVsNginx: rows.nginx === undefined ? undefined : ratio(mode, 'nginx', rangeTtfb),
        fullColdVsUnsliced: ratio(mode, 'unsliced', cold),
        fullWarmVsDirect: ratio(mode, 'direct', warm),
      },
    };
  }
  return out;
}

function print(summary, notes) {
  for (const n of notes) console.log(`note: ${n}`);
  console.log('target     range ttfb p50  origin MiB | full cold p50  warm p50  origin MiB | ttfb/direct ttfb/nginx cold/unsliced warm/direct');
  for (const [mode, s] of Object.entries(summary)) {
    const r = s.ratios;
    const f = (x) => (x === undefined ? '   -' : x.toFixed(2));
    console.log(
      `${mode.padEnd(10)} ${String(s.rangeTtfbMs.p50).padStart(9)} ms ${(s.rangeOriginBytes / MiB).toFixed(2).padStart(10)} | ${String(s.fullColdTtlbMs.p50).padStart(10)} ms ${String(s.fullWarmTtlbMs.p50).padStart(6)} ms ${(s.fullColdOriginBytes / MiB).toFixed(1).padStart(9)} | ${f(r.rangeTtfbVsDirect).padStart(11)} ${f(r.rangeTtfbVsNginx).padStart(10)} ${f(r.fullColdVsUnsliced).padStart(13)} ${f(r.fullWarmVsDirect).padStart(11)}`,
    );
  }
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
