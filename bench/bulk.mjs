// Where a cold whole-object miss's CPU goes (issue 16, bulk miss), interleaved on one machine, written to JSON:
//   floor   CPU per MiB of a bare reader of the fixture origin (undici request + 'data', undici dispatch onData, a raw
//           net socket: bench/bulk-floor-reader.mjs) and of a raw Node TCP forwarder (bench/bulk-floor-pipe.mjs,
//           with and without keeping every chunk as a cache does): what moving the bytes costs a Node process at all.
//   sluice  proxy CPU per MiB (schedstat) and Mark-Compact count (--trace-gc) of cold 100 MiB misses read whole, for
//           this tree, --before DIR, and this tree under each --variant "NODE FLAGS" (e.g. "-r ./preload.cjs").
// Usage: node bench/bulk.mjs [--before DIR] [--variant "flags"]... [--rounds N] [--runs N] [--out FILE]
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, cpuMicros, machine, sleep, startNode, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const arg = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const all = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const before = arg('--before');
const variants = all('--variant');
const ROUNDS = Number(arg('--rounds') ?? 3);
const RUNS = Number(arg('--runs') ?? 4);
const out = arg('--out') ?? path.join(ROOT, 'bench/results/2026-12-01-s6-bulk.json');
const SIZE = 100 * 1024 * 1024;
const MiB = 1024 * 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const stop = (s) => new Promise((r) => (s.proc.exitCode !== null ? r() : (s.proc.once('exit', r), s.proc.kill('SIGTERM'))));

async function coldWhole(url, tag) {
  const r = await request(`${url}/big/${SIZE}?bulk=${tag}-${Date.now()}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`${tag}: ${n} bytes`);
}

/** One warm-up and RUNS measured cold misses through the process `s`; CPU per MiB each, and the Mark-Compacts. */
async function measure(s, tag) {
  await coldWhole(s.url, `${tag}-warm`);
  const mc0 = (s.log().match(/Mark-Compact/g) ?? []).length;
  const cpu = [];
  for (let i = 0; i < RUNS; i++) {
    const c0 = cpuMicros(s.pid);
    await coldWhole(s.url, `${tag}-${i}`);
    await sleep(30);
    cpu.push(Math.round((cpuMicros(s.pid) - c0) / (SIZE / MiB)));
  }
  return { cpu, markCompacts: (s.log().match(/Mark-Compact/g) ?? []).length - mc0 };
}

async function main() {
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const floor = {};
  for (const mode of ['undici', 'dispatch', 'net']) {
    floor[mode] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const p = spawnSync(process.execPath, [path.join(ROOT, 'bench/bulk-floor-reader.mjs'), mode, `${origin.url}/big/${SIZE}`, String(RUNS)], { encoding: 'utf8' });
      floor[mode].push(JSON.parse(p.stdout.trim().split('\n').pop()).cpuMicrosPerMiB);
    }
  }
  const sides = [
    { name: 'pipe', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-pipe.mjs'), args: [origin.url] },
    { name: 'pipe-retain', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-pipe.mjs'), args: [origin.url, '--retain'] },
  ];
  const proxyArgs = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'];
  if (before !== undefined) sides.push({ name: 'before', flags: ['--trace-gc'], script: path.join(path.resolve(before), 'packages/cli/bin/run.js'), args: proxyArgs });
  sides.push({ name: 'after', flags: ['--trace-gc'], script: path.join(ROOT, 'packages/cli/bin/run.js'), args: proxyArgs });
  for (const v of variants) sides.push({ name: `after ${v}`, flags: ['--trace-gc', ...v.split(' ').filter(Boolean)], script: path.join(ROOT, 'packages/cli/bin/run.js'), args: proxyArgs });
  const rows = new Map(sides.map((s) => [s.name, { cpu: [], markCompacts: [] }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of sides) {
      const s = await startNode(side.flags, side.script, side.args);
      const m = await measure(s, `${side.name}-${r}`);
      await stop(s);
      rows.get(side.name).cpu.push(...m.cpu);
      rows.get(side.name).markCompacts.push(m.markCompacts);
    }
  }
  await stopAll();
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    loadAvgAtEnd: (await import('node:os')).loadavg(),
    settings: { objectBytes: SIZE, rounds: ROUNDS, runsPerRound: RUNS },
    floorCpuMicrosPerMiB: Object.fromEntries(Object.entries(floor).map(([k, v]) => [k, { median: median(v), rounds: v }])),
    sides: [...rows].map(([name, v]) => ({ name, cpuMicrosPerMiB: { median: median(v.cpu), min: Math.min(...v.cpu), all: v.cpu }, markCompactsPerRound: v.markCompacts, runsPerRound: RUNS })),
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  for (const [k, v] of Object.entries(result.floorCpuMicrosPerMiB)) console.log(`floor ${k.padEnd(10)} ${v.median} us/MiB`);
  for (const s of result.sides) console.log(`${s.name.padEnd(36)} median ${s.cpuMicrosPerMiB.median} us/MiB (min ${s.cpuMicrosPerMiB.min})   Mark-Compacts per ${RUNS} misses: ${s.markCompactsPerRound.join(' ')}`);
  console.log(`load ${result.loadAvgAtEnd.map((x) => x.toFixed(1)).join(' ')}\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
