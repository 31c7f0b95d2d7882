// Cost of the transaction log on cache hits (issues 5 and 16). Usage: node bench/txlog.mjs [--quick] [--out FILE] [--base CHECKOUT]
// The same 1 KiB hit through Sluice processes in front of one fast origin: log off, admin API on with no one tailing,
// text log to stdout (redirected to a file, formatted in the proxy thread), text and NDJSON logs to a file
// (--log-file: formatted and written by the writer thread), and the origin directly. With --base, the same log modes
// of another checkout (built) run in the same rounds, so before and after share the machine's load.
// Interleaved rounds; medians of requests/s and of the proxy process's CPU time per request (user + system, all
// threads, from /proc), each as a ratio to log-off.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, cpuMicros, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const out = opt('--out') ?? path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-txlog.json`);
const base = opt('--base') === undefined ? undefined : path.resolve(opt('--base'));
const SECONDS = quick ? 1 : 3;
const ROUNDS = quick ? 1 : 5;


const cannon = (url) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 32, duration: SECONDS }, (e, r) => (e ? reject(e) : resolve(r))));

const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-txlog-bench-'));
const spawned = [];

/**
 * `sluice proxy` of `checkout` with its stdout going to a file (the log written to stdout must not flow through this
 * process, which runs the load generator): the URL is read from that file.
 */
async function startToFile(checkout, args, name) {
  const file = path.join(tmp, `${name}.stdout`);
  const fd = openSync(file, 'w');
  const p = spawn(process.execPath, [path.join(checkout, 'packages/cli/bin/run.js'), ...args], { stdio: ['ignore', fd, 'inherit'] });
  spawned.push(p);
  for (let i = 0; i < 200; i++) {
    await sleep(50);
    const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(readFileSync(file, 'utf8').slice(0, 4096));
    if (m !== null) return { url: m[1], pid: p.pid };
  }
  throw new Error(`${name}: not listening`);
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const proxyArgs = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'];
  const logModes = (tag) => [
    ['log-off', []],
    ['stdout-text', ['--log', 'text']],
    ['file-text', ['--log', 'text', '--log-file', path.join(tmp, `${tag}-text.log`)]],
    ['file-ndjson', ['--log', 'ndjson', '--log-file', path.join(tmp, `${tag}-ndjson.log`)]],
  ];
  const targets = [['direct', origin.url, undefined]];
  for (const [mode, extra] of logModes('after')) {
    const p = await startToFile(ROOT, [...proxyArgs, ...extra], mode);
    targets.push([mode, p.url, p.pid]);
  }
  // Admin API on, so `sluice log` could attach, but no one tailing: the live sink is idle and no records are built.
  const live = await startToFile(ROOT, [...proxyArgs, '--admin-listen', '127.0.0.1:0', '--admin-token', 'bench-token-1'], 'live-idle');
  targets.push(['live-idle', live.url, live.pid]);
  if (base !== undefined) {
    for (const [mode, extra] of logModes('base')) {
      const p = await startToFile(base, [...proxyArgs, ...extra], `base-${mode}`);
      targets.push([`base-${mode}`, p.url, p.pid]);
    }
  }
  await sleep(200);
  for (const [, url] of targets) {
    await (await request(`${url}/static/1k`)).body.text();
    await cannon(`${url}/static/1k`);
  }
  const rps = new Map(targets.map(([mode]) => [mode, []]));
  // CPU per request is steadier than requests/s on a shared machine: the load generator's share does not enter it.
  const cpu = new Map(targets.map(([mode]) => [mode, []]));
  const loadavg = [];
  for (let i = 0; i < ROUNDS; i++) {
    loadavg.push(os.loadavg().map((x) => Math.round(x * 100) / 100));
    for (const [mode, url, pid] of targets) {
      const before = pid === undefined ? 0 : cpuMicros(pid);
      const r = await cannon(`${url}/static/1k`);
      const used = pid === undefined ? 0 : cpuMicros(pid) - before;
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${mode}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      rps.get(mode).push(Math.round(r.requests.average));
      if (pid !== undefined) cpu.get(mode).push(Math.round((used / r.requests.total) * 10) / 10);
    }
  }
  await stopAll();
  for (const p of spawned) p.kill('SIGTERM');
  await sleep(300);
  rmSync(tmp, { recursive: true, force: true });
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ratio = (a, b) => Math.round((a / b) * 100) / 100;
  const off = median(rps.get('log-off'));
  const cpuOff = median(cpu.get('log-off'));
  const baseOff = base === undefined ? undefined : median(rps.get('base-log-off'));
  const baseCpuOff = base === undefined ? undefined : median(cpu.get('base-log-off'));
  const scenarios = targets.map(([mode]) => {
    const own = mode.startsWith('base-') ? { rps: baseOff, cpu: baseCpuOff } : { rps: off, cpu: cpuOff };
    const s = { name: 'hit-1k', mode, rps: median(rps.get(mode)), rpsRounds: rps.get(mode), ratioToLogOff: ratio(median(rps.get(mode)), own.rps) };
    if (mode === 'direct') return s;
    return { ...s, cpuMicrosPerRequest: median(cpu.get(mode)), cpuRounds: cpu.get(mode), cpuRatioToLogOff: ratio(median(cpu.get(mode)), own.cpu) };
  });
  mkdirSync(path.dirname(out), { recursive: true });
  const doc = {
    date: new Date().toISOString(),
    quick,
    machine: m,
    loadavgPerRound: loadavg,
    settings: { seconds: SECONDS, rounds: ROUNDS, connections: 32, base: base === undefined ? undefined : path.basename(base) },
    what: 'ratioToLogOff: against the same checkout\'s log-off (base-* against base-log-off); stdout-text writes to a file through stdout (formatted in the proxy thread), file-* use --log-file',
    scenarios,
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  for (const s of scenarios) {
    const c = s.cpuMicrosPerRequest === undefined ? '' : `; CPU ${s.cpuMicrosPerRequest} us/request (x${s.cpuRatioToLogOff})`;
    console.log(`${s.mode.padEnd(17)} ${String(s.rps).padStart(6)} req/s (rounds ${s.rpsRounds.join(', ')})  ratio to log-off ${s.ratioToLogOff}${c}`);
  }
  console.log(`load average per round: ${loadavg.map((l) => l.join('/')).join(', ')}`);
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  for (const p of spawned) p.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
});
