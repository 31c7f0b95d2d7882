// Cache hits side by side with the peers (issue 16). Usage: node bench/hits.mjs [--quick] [--pin] [--rounds N] [--baseline DIR]
//   [--seconds S] [--targets direct,varnish,nginx,sluice] [--sizes 1k,64k,1m] [--out FILE]
// Hits of 1 KiB, 64 KiB and 1 MiB through Sluice, Varnish (builtin VCL) and nginx (1 worker, proxy_cache), beside the
// same-run direct-to-origin baseline (a bare-socket static origin), with autocannon (32 connections) in this process.
// Targets are measured interleaved, round after round; per target the median round's requests/s and its ratio to
// direct, and the server's CPU time per request: user + system time of its whole process tree (nginx master and
// worker, varnishd manager and cache child) over the measured window, divided by the requests served. CPU per request
// is the steadier figure on a shared machine (the load generator's share does not enter it).
// --baseline DIR adds a second Sluice run from another built checkout (mode sluice-baseline), measured in the same
// interleaved rounds: a before/after of a change on one machine state.
// --pin puts every server and the origin on CPU 0 and this process (the load generator) on CPU 1, as issue 16's run.
// A peer that is not installed is skipped with a note in the JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, cpuMicros, freePort, machine, pin, processTree, sleep, startNginxCache, startSluice, startSluiceFrom, startVarnish, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const date = new Date().toISOString().slice(0, 10);
const out = opt('--out', path.join(ROOT, 'bench/results', `${date}-hits.json`));
const SECONDS = Number(opt('--seconds', quick ? 1 : 5));
const ROUNDS = Number(opt('--rounds', quick ? 1 : 3));
const CONNECTIONS = 32;
const WANTED = opt('--targets', 'direct,varnish,nginx,sluice').split(',');
const SIZES = opt('--sizes', '1k,64k,1m').split(',');
const PIN = argv.includes('--pin');
const BASELINE = opt('--baseline', undefined);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round1 = (x) => Math.round(x * 10) / 10;
const round2 = (x) => Math.round(x * 100) / 100;

const cannon = (url) =>
  new Promise((resolve, reject) =>
    autocannon({ url, connections: CONNECTIONS, duration: SECONDS, pipelining: 1 }, (e, r) => (e ? reject(e) : resolve(r))),
  );

/** How the target marks a hit: Sluice's Cache-Status, nginx's X-Cache (added in its config), Varnish's two XIDs. */
function hitMark(mode, headers) {
  if (mode.startsWith('sluice')) return String(headers['cache-status'] ?? '');
  if (mode === 'nginx') return `X-Cache: ${String(headers['x-cache'] ?? '')}`;
  if (mode === 'varnish') return `X-Varnish: ${String(headers['x-varnish'] ?? '')}, Age: ${String(headers.age ?? '')}`;
  return '';
}

function isHit(mode, headers) {
  if (mode.startsWith('sluice')) return /;\s*hit/.test(String(headers['cache-status'] ?? ''));
  if (mode === 'nginx') return headers['x-cache'] === 'HIT';
  if (mode === 'varnish') return String(headers['x-varnish'] ?? '').trim().split(/\s+/).length === 2;
  return true;
}

async function main() {
  const m = machine();
  console.log(`hits bench (${quick ? 'quick' : 'full'}) on ${m.cores} cores, ${m.cpu}, node ${m.node}, load ${m.loadavgAtStart.join(' ')}`);
  const notes = [];
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const targets = [];
  if (WANTED.includes('direct')) targets.push({ mode: 'direct', url: origin.url, pids: () => [origin.pid] });
  if (WANTED.includes('varnish')) {
    const v = await startVarnish(origin.url);
    if (v === undefined) notes.push('varnish skipped: varnishd is not installed');
    else targets.push({ mode: 'varnish', url: v.url, pids: () => processTree(v.pid), peer: v.version });
  }
  if (WANTED.includes('nginx')) {
    const n = await startNginxCache(origin.url, await freePort());
    if (n === undefined) notes.push('nginx skipped: nginx is not installed');
    else targets.push({ mode: 'nginx', url: n.url, pids: () => processTree(n.pid), peer: n.version });
  }
  if (WANTED.includes('sluice')) {
    const s = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
    targets.push({ mode: 'sluice', url: s.url, pids: () => [s.pid] });
  }
  if (BASELINE !== undefined) {
    const b = await startSluiceFrom(path.resolve(BASELINE), ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
    targets.push({ mode: 'sluice-baseline', url: b.url, pids: () => [b.pid], peer: path.resolve(BASELINE) });
  }
  let pinned = false;
  if (PIN) {
    if (os.cpus().length < 2) notes.push('--pin ignored: fewer than 2 CPUs');
    else {
      const servers = [origin.pid, ...targets.flatMap((t) => t.pids())];
      pinned = pin([...new Set(servers)], '0') && pin([process.pid], '1');
      if (!pinned) notes.push('--pin failed (taskset missing or refused): ran unpinned');
    }
  }
  await sleep(300);
  for (const n of notes) console.log(n);

  const scenarios = [];
  for (const size of SIZES) {
    const p = `/static/${size}`;
    const marks = {};
    // Warm: the first request fills each cache, the second must be a hit, then one short load run.
    for (const t of targets) {
      await (await request(`${t.url}${p}`)).body.text();
      const r = await request(`${t.url}${p}`);
      await r.body.text();
      if (!isHit(t.mode, r.headers)) throw new Error(`${t.mode} ${size}: second request is not a hit (${hitMark(t.mode, r.headers)})`);
      marks[t.mode] = hitMark(t.mode, r.headers);
      await cannon(`${t.url}${p}`);
    }
    const rps = new Map(targets.map((t) => [t.mode, []]));
    const cpu = new Map(targets.map((t) => [t.mode, []]));
    const lat = new Map(targets.map((t) => [t.mode, []]));
    const load = [];
    for (let round = 0; round < ROUNDS; round++) {
      load.push(round2(os.loadavg()[0]));
      for (const t of targets) {
        const pids = t.pids();
        const before = cpuMicros(pids);
        const r = await cannon(`${t.url}${p}`);
        const used = cpuMicros(pids) - before;
        if (r.non2xx > 0 || r.errors > 0) throw new Error(`${t.mode} ${size}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        rps.get(t.mode).push(Math.round(r.requests.average));
        cpu.get(t.mode).push(round1(used / r.requests.total));
        lat.get(t.mode).push({ p50: r.latency.p50, p99: r.latency.p99 });
      }
    }
    const d = rps.get('direct');
    for (const t of targets) {
      const rs = rps.get(t.mode);
      const row = {
        name: `hit-${size}`,
        mode: t.mode,
        rps: median(rs),
        rpsRounds: rs,
        cpuMicrosPerRequest: median(cpu.get(t.mode)),
        cpuRounds: cpu.get(t.mode),
        latencyMs: lat.get(t.mode)[rs.indexOf(median(rs))],
        loadavgRounds: load,
      };
      if (d !== undefined && t.mode !== 'direct') {
        row.ratioToDirect = round2(median(rs) / median(d));
        // Each round against the direct run of the same round: the spread.
        row.ratioRounds = rs.map((v, i) => round2(v / d[i]));
      }
      if (t.peer !== undefined) row.peer = t.peer;
      if (marks[t.mode]) row.hitMark = marks[t.mode];
      scenarios.push(row);
      console.log(
        `hit-${size.padEnd(4)} ${t.mode.padEnd(8)} ${String(row.rps).padStart(7)} req/s (rounds ${rs.join(', ')})${row.ratioToDirect === undefined ? '' : `  ratio ${row.ratioToDirect} (${row.ratioRounds.join(', ')})`}  CPU ${row.cpuMicrosPerRequest} us/req (${row.cpuRounds.join(', ')})`,
      );
    }
  }
  await stopAll();
  const result = {
    date: new Date().toISOString(),
    quick,
    machine: m,
    loadavgAtEnd: os.loadavg().map(round2),
    settings: {
      seconds: SECONDS,
      rounds: ROUNDS,
      connections: CONNECTIONS,
      pinned,
      baseline: BASELINE === undefined ? null : path.resolve(BASELINE),
      loadGenerator: 'autocannon 8, in the bench process',
      cpu: 'utime+stime of the server process tree (/proc/PID/stat, 10 ms ticks) over each measured run / requests served',
      peers: {
        varnish: 'varnishd -F -j none -s malloc,256m; the VCL declares only the backend (builtin.vcl)',
        nginx: 'worker_processes 1; proxy_cache; keepalive 64 to the origin',
      },
    },
    notes,
    scenarios,
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
