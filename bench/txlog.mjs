// Cost of the transaction log on cache hits (issue 5). Usage: node bench/txlog.mjs [--quick] [--out FILE]
// The same 1 KiB hit through four Sluice processes in front of one fast origin: log off, admin API on with no one
// tailing, text log, NDJSON log (both to /dev/null, so the cost measured is building and formatting records, not disk). Interleaved rounds,
// median requests/s, ratio to log-off.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-txlog.json`);
const SECONDS = quick ? 1 : 5;
const ROUNDS = quick ? 1 : 3;

/** CPU time (user + system) a process has used, in microseconds (Linux /proc; clock ticks of 10 ms). */
function cpuMicros(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

const cannon = (url) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 32, duration: SECONDS }, (e, r) => (e ? reject(e) : resolve(r))));

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const modes = [
    ['log-off', []],
    // Admin API on, so `sluice log` could attach, but no one tailing: the live sink is idle and no records are built.
    ['live-idle', ['--admin-listen', '127.0.0.1:0', '--admin-token', 'bench-token-1']],
    ['log-text', ['--log', 'text', '--log-file', '/dev/null']],
    ['log-ndjson', ['--log', 'ndjson', '--log-file', '/dev/null']],
  ];
  const targets = [];
  for (const [mode, extra] of modes) {
    const p = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', ...extra]);
    targets.push([mode, p.url, p.pid]);
  }
  await sleep(200);
  for (const [, url] of targets) {
    await (await request(`${url}/static/1k`)).body.text();
    await cannon(`${url}/static/1k`);
  }
  const rps = new Map(targets.map(([mode]) => [mode, []]));
  // CPU per request is steadier than requests/s on a shared machine: the load generator's share does not enter it.
  const cpu = new Map(targets.map(([mode]) => [mode, []]));
  for (let i = 0; i < ROUNDS; i++) {
    for (const [mode, url, pid] of targets) {
      const before = cpuMicros(pid);
      const r = await cannon(`${url}/static/1k`);
      const used = cpuMicros(pid) - before;
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${mode}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      rps.get(mode).push(Math.round(r.requests.average));
      cpu.get(mode).push(Math.round((used / r.requests.total) * 10) / 10);
    }
  }
  await stopAll();
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const off = median(rps.get('log-off'));
  const cpuOff = median(cpu.get('log-off'));
  const scenarios = targets.map(([mode]) => ({
    name: 'hit-1k',
    mode,
    rps: median(rps.get(mode)),
    rpsRounds: rps.get(mode),
    ratioToLogOff: Math.round((median(rps.get(mode)) / off) * 100) / 100,
    cpuMicrosPerRequest: median(cpu.get(mode)),
    cpuRounds: cpu.get(mode),
    cpuRatioToLogOff: Math.round((median(cpu.get(mode)) / cpuOff) * 100) / 100,
  }));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), quick, machine: m, settings: { seconds: SECONDS, rounds: ROUNDS, connections: 32 }, scenarios }, null, 2)}\n`);
  for (const s of scenarios) {
    console.log(`${s.mode.padEnd(11)} ${String(s.rps).padStart(6)} req/s (rounds ${s.rpsRounds.join(', ')})  ratio to log-off ${s.ratioToLogOff}; CPU ${s.cpuMicrosPerRequest} us/request (x${s.cpuRatioToLogOff})`);
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
