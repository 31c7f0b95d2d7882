// Where a hit's CPU goes, user space vs kernel, for Sluice before/after and the peers (issue 16, session 8).
// Usage: node bench/hit-split.mjs [--base DIR] [--base2 DIR] [--sizes 1k,64k] [--targets sluice,base,base2,nginx,varnish,direct]
//   [--requests N] [--rounds N] [--strace] [--out FILE]
// Each target serves N hits (autocannon, 32 connections, a fixed amount) per round, targets interleaved round by round,
// servers pinned on CPU 0 and the load generator on CPU 1 (taskset). Per target and round: CPU per hit of its process
// tree from /proc schedstat (ns), and utime and stime from /proc/PID/stat (10 ms ticks, so N should make a round last a
// second or more); medians over the rounds. --strace: one more run per target under `strace -c -f` (syscalls per hit by
// name; strace slows the server, so its run is not in the CPU figures). Writes bench/results/<date>-hit-split.json.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, cpuMicros, freePort, machine, pin, processTree, sleep, startNginxCache, startSluice, startSluiceFrom, startVarnish, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
// --base2 DIR: a second built checkout (mode sluice-base2), e.g. an older start point beside --base.
const BASE2 = opt('--base2', undefined);
const SIZES = opt('--sizes', '1k,64k').split(',');
const WANTED = opt('--targets', 'sluice,base,nginx').split(',');
const N = Number(opt('--requests', 40000));
const ROUNDS = Number(opt('--rounds', 3));
const STRACE = argv.includes('--strace');
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-hit-split.json`));
const TICK_US = 1e6 / 100;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r1 = (x) => Math.round(x * 10) / 10;

const cannon = (url, amount) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 32, amount, pipelining: 1 }, (e, r) => (e ? reject(e) : resolve(r))));

/** utime and stime (clock ticks) summed over `pids`. */
function ticks(pids) {
  let u = 0;
  let s = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      u += Number(f[11]);
      s += Number(f[12]);
    } catch {
      // gone
    }
  }
  return { u, s };
}

/** `strace -c -f` attached to `pids` while `amount` hits are served: calls per hit by syscall. */
async function straced(pids, url, amount) {
  const tmp = path.join(os.tmpdir(), `hit-split-strace-${process.pid}-${Date.now()}.txt`);
  const st = spawn('strace', ['-c', '-f', '-o', tmp, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
  await sleep(500);
  await cannon(url, amount);
  st.kill('SIGINT');
  await new Promise((r) => st.on('exit', r));
  const calls = {};
  for (const line of readFileSync(tmp, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') calls[m[2]] = Math.round((Number(m[1]) / amount) * 100) / 100;
  }
  return calls;
}

async function main() {
  const m = machine();
  console.log(`hit-split on ${m.cores} cores, node ${m.node}, load ${m.loadavgAtStart.join(' ')}`);
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const targets = [];
  const proxyArgs = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'];
  if (WANTED.includes('direct')) targets.push({ mode: 'direct', url: origin.url, pids: () => [origin.pid] });
  if (WANTED.includes('sluice')) {
    const s = await startSluice(proxyArgs);
    targets.push({ mode: 'sluice', url: s.url, pids: () => [s.pid] });
  }
  if (WANTED.includes('base') && BASE !== undefined) {
    const b = await startSluiceFrom(path.resolve(BASE), proxyArgs);
    targets.push({ mode: 'sluice-base', url: b.url, pids: () => [b.pid] });
  }
  if (WANTED.includes('base2') && BASE2 !== undefined) {
    const b = await startSluiceFrom(path.resolve(BASE2), proxyArgs);
    targets.push({ mode: 'sluice-base2', url: b.url, pids: () => [b.pid] });
  }
  if (WANTED.includes('nginx')) {
    const n = await startNginxCache(origin.url, await freePort());
    if (n !== undefined) targets.push({ mode: 'nginx', url: n.url, pids: () => processTree(n.pid) });
  }
  if (WANTED.includes('varnish')) {
    const v = await startVarnish(origin.url);
    if (v !== undefined) targets.push({ mode: 'varnish', url: v.url, pids: () => processTree(v.pid) });
  }
  const pinned = os.cpus().length >= 2 && pin([...new Set([origin.pid, ...targets.flatMap((t) => t.pids())])], '0') && pin([process.pid], '1');
  await sleep(300);
  const scenarios = [];
  for (const size of SIZES) {
    const p = `/static/${size}`;
    for (const t of targets) {
      await (await request(`${t.url}${p}`)).body.text();
      await (await request(`${t.url}${p}`)).body.text();
      await cannon(`${t.url}${p}`, Math.min(N, 20000));
    }
    const rows = new Map(targets.map((t) => [t.mode, { cpu: [], user: [], sys: [], rps: [] }]));
    const load = [];
    for (let round = 0; round < ROUNDS; round++) {
      load.push(Math.round(os.loadavg()[0] * 100) / 100);
      for (const t of targets) {
        const pids = t.pids();
        const c0 = cpuMicros(pids);
        const k0 = ticks(pids);
        const r = await cannon(`${t.url}${p}`, N);
        const c1 = cpuMicros(pids);
        const k1 = ticks(pids);
        if (r.non2xx > 0 || r.errors > 0) throw new Error(`${t.mode} ${size}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        const row = rows.get(t.mode);
        row.cpu.push(r1((c1 - c0) / r.requests.total));
        row.user.push(r1(((k1.u - k0.u) * TICK_US) / r.requests.total));
        row.sys.push(r1(((k1.s - k0.s) * TICK_US) / r.requests.total));
        row.rps.push(Math.round(r.requests.average));
      }
    }
    for (const t of targets) {
      const row = rows.get(t.mode);
      const res = {
        name: `hit-${size}`,
        mode: t.mode,
        cpuMicrosPerHit: median(row.cpu),
        userMicrosPerHit: median(row.user),
        sysMicrosPerHit: median(row.sys),
        rps: median(row.rps),
        rounds: row,
        loadavgRounds: load,
      };
      if (STRACE) res.syscallsPerHit = await straced(t.pids(), `${t.url}${p}`, Math.min(N, 10000));
      scenarios.push(res);
      console.log(
        `hit-${size.padEnd(4)} ${t.mode.padEnd(12)} CPU ${res.cpuMicrosPerHit} us/hit (${row.cpu.join(', ')})  user ${res.userMicrosPerHit} sys ${res.sysMicrosPerHit}  ${res.rps} req/s${res.syscallsPerHit ? `  syscalls/hit ${JSON.stringify(res.syscallsPerHit)}` : ''}`,
      );
    }
  }
  await stopAll();
  const result = {
    date: new Date().toISOString(),
    machine: m,
    loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100),
    settings: { requests: N, rounds: ROUNDS, connections: 32, pinned, base: BASE === undefined ? null : path.resolve(BASE), base2: BASE2 === undefined ? null : path.resolve(BASE2) },
    scenarios,
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.stack ?? e.message}`);
  await stopAll();
  process.exit(1);
});
