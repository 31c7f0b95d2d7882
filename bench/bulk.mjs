// Where a cold whole-object miss's CPU goes (issue 16, bulk miss), interleaved on one machine, written to JSON:
//   floor   CPU per MiB of a bare reader of the fixture origin (undici request + 'data', undici dispatch onData, a raw
//           net socket: bench/bulk-floor-reader.mjs) and of a raw Node TCP forwarder (bench/bulk-floor-pipe.mjs,
//           with and without keeping every chunk as a cache does): what moving the bytes costs a Node process at all.
//   sluice  proxy CPU per MiB (schedstat) and Mark-Compact count (--trace-gc) of cold 100 MiB misses read whole, for
//           this tree, --before DIR, and this tree under each --variant "NODE FLAGS" (e.g. "-r ./preload.cjs").
//   beside them, in the same interleaved rounds (session 11): the raw forwarder with and without --retain, a forwarder
//           reading its origin sockets through `onread` into one static buffer and copying into retained slabs
//           (bench/bulk-floor-onread.mjs: 64 KiB reads, and 256 KiB), and nginx (proxy_cache, 1 worker; its master
//           and worker's CPU) when installed.
// Usage: node bench/bulk.mjs [--before DIR] [--variant "flags"]... [--rounds N] [--runs N] [--no-readers] [--out FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, cpuMicros, freePort, machine, processTree, sleep, startNginxCache, startNode, startSluice, stopAll } from './lib.mjs';

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

/** User and system CPU ticks (10 ms, /proc/PID/stat utime and stime) of the processes `pids`. */
function userSysTicks(pids) {
  let user = 0;
  let sys = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      user += Number(f[11]);
      sys += Number(f[12]);
    } catch {
      // gone
    }
  }
  return { user, sys };
}

/** One warm-up and RUNS measured cold misses through the process `s`; CPU per MiB each, and the Mark-Compacts. */
async function measure(s, tag) {
  await coldWhole(s.url, `${tag}-warm`);
  const mc0 = (s.log().match(/Mark-Compact/g) ?? []).length;
  const cpu = [];
  const user = [];
  const sys = [];
  for (let i = 0; i < RUNS; i++) {
    const pids = processTree(s.pid);
    const c0 = cpuMicros(pids);
    const t0 = userSysTicks(pids);
    await coldWhole(s.url, `${tag}-${i}`);
    await sleep(30);
    cpu.push(Math.round((cpuMicros(pids) - c0) / (SIZE / MiB)));
    const t1 = userSysTicks(pids);
    user.push(Math.round(((t1.user - t0.user) * 10000) / (SIZE / MiB)));
    sys.push(Math.round(((t1.sys - t0.sys) * 10000) / (SIZE / MiB)));
  }
  return { cpu, user, sys, markCompacts: (s.log().match(/Mark-Compact/g) ?? []).length - mc0 };
}

/** nginx (proxy_cache, one worker) in front of the origin, shaped as startNode's result (no GC log). */
async function startNginx(originUrl) {
  const n = await startNginxCache(originUrl, await freePort(), { maxSize: '1g' });
  const proc = { exitCode: null, once: (_e, fn) => waitGone(n.pid).then(fn), kill: () => process.kill(n.pid, 'SIGTERM') };
  return { url: n.url, pid: n.pid, proc, log: () => '' };
}

async function waitGone(pid) {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
}

async function main() {
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const floor = {};
  for (const mode of argv.includes('--no-readers') ? [] : ['undici', 'dispatch', 'net']) {
    floor[mode] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const p = spawnSync(process.execPath, [path.join(ROOT, 'bench/bulk-floor-reader.mjs'), mode, `${origin.url}/big/${SIZE}`, String(RUNS)], { encoding: 'utf8' });
      floor[mode].push(JSON.parse(p.stdout.trim().split('\n').pop()).cpuMicrosPerMiB);
    }
  }
  const sides = [
    { name: 'pipe', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-pipe.mjs'), args: [origin.url] },
    { name: 'pipe-retain', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-pipe.mjs'), args: [origin.url, '--retain'] },
    { name: 'onread-retain', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-onread.mjs'), args: [origin.url] },
    { name: 'onread-retain-256k', flags: ['--trace-gc'], script: path.join(ROOT, 'bench/bulk-floor-onread.mjs'), args: [origin.url, '--read', '262144'] },
  ];
  if (['/usr/sbin/nginx', '/usr/bin/nginx'].some((p) => existsSync(p))) sides.push({ name: 'nginx', nginx: true });
  const proxyArgs = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'];
  if (before !== undefined) sides.push({ name: 'before', flags: ['--trace-gc'], script: path.join(path.resolve(before), 'packages/cli/bin/run.js'), args: proxyArgs });
  sides.push({ name: 'after', flags: ['--trace-gc'], script: path.join(ROOT, 'packages/cli/bin/run.js'), args: proxyArgs });
  for (const v of variants) sides.push({ name: `after ${v}`, flags: ['--trace-gc', ...v.split(' ').filter(Boolean)], script: path.join(ROOT, 'packages/cli/bin/run.js'), args: proxyArgs });
  const rows = new Map(sides.map((s) => [s.name, { cpu: [], user: [], sys: [], markCompacts: [] }]));
  for (let r = 0; r < ROUNDS; r++) {
    // The order within a round alternates (forward, reversed, ...), so drift on a shared machine hits every side alike.
    for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
      const s = side.nginx === true ? await startNginx(origin.url) : await startNode(side.flags, side.script, side.args);
      const m = await measure(s, `${side.name}-${r}`);
      await stop(s);
      rows.get(side.name).cpu.push(...m.cpu);
      rows.get(side.name).user.push(...m.user);
      rows.get(side.name).sys.push(...m.sys);
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
    sides: [...rows].map(([name, v]) => ({ name, cpuMicrosPerMiB: { median: median(v.cpu), min: Math.min(...v.cpu), all: v.cpu }, userMicrosPerMiB: median(v.user), sysMicrosPerMiB: median(v.sys), markCompactsPerRound: v.markCompacts, runsPerRound: RUNS })),
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  for (const [k, v] of Object.entries(result.floorCpuMicrosPerMiB)) console.log(`floor ${k.padEnd(10)} ${v.median} us/MiB`);
  for (const s of result.sides) console.log(`${s.name.padEnd(36)} median ${s.cpuMicrosPerMiB.median} us/MiB (min ${s.cpuMicrosPerMiB.min}; user ${s.userMicrosPerMiB} sys ${s.sysMicrosPerMiB})   Mark-Compacts per ${RUNS} misses: ${s.markCompactsPerRound.join(' ')}`);
  console.log(`load ${result.loadAvgAtEnd.map((x) => x.toFixed(1)).join(' ')}\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
