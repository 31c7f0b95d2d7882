// Replay throughput (issue 5): how many requests/s `sluice replay --asap` issues, against the same Sluice hit by
// autocannon with the same connection count in the same run (the baseline). Also the shared Varnish sample replayed
// on its recorded schedule, to show the timing error. Usage: node bench/replay.mjs [--quick] [--out FILE]
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-replay.json`);
const REQUESTS = quick ? 2000 : 20000;
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');
const SAMPLE = path.join(ROOT, 'fixtures/varnishlog/request.log');

function runReplay(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, 'replay', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout)) : reject(new Error(`replay exited ${code}: ${stderr}`))));
  });
}

const cannon = (url, connections, duration) =>
  new Promise((resolve, reject) => autocannon({ url, connections, duration }, (e, r) => (e ? reject(e) : resolve(r))));

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const px = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
  await (await request(`${px.url}/static/1k`)).body.text();
  // A combined log of REQUESTS hits on one 1 KiB object.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-replay-bench-'));
  const trace = path.join(dir, 'hits.log');
  const line = `127.0.0.1 - - [21/Nov/2026:21:05:18 +0000] "GET ${px.url}/static/1k HTTP/1.1" 200 1024 "-" "bench"\n`;
  writeFileSync(trace, line.repeat(REQUESTS));
  const rows = [];
  for (const c of [1, 8, 32]) {
    await cannon(`${px.url}/static/1k`, c, 1);
    const base = await cannon(`${px.url}/static/1k`, c, quick ? 2 : 5);
    const rep = await runReplay([trace, '--target', px.url, '--asap', '--concurrency', String(c)]);
    if (rep.summary.errors > 0 || rep.summary.statusMismatches > 0) throw new Error(`replay c=${c}: ${rep.summary.errors} errors, ${rep.summary.statusMismatches} mismatches`);
    const row = {
      concurrency: c,
      requests: REQUESTS,
      replayRps: Math.round(rep.summary.requestsPerSec),
      autocannonRps: Math.round(base.requests.average),
      replayTtfbP50Ms: rep.summary.ttfbMs.p50,
    };
    row.ratioToAutocannon = Math.round((row.replayRps / row.autocannonRps) * 100) / 100;
    rows.push(row);
    console.log(`concurrency ${String(c).padStart(2)}: replay ${row.replayRps} req/s, autocannon ${row.autocannonRps} req/s, ratio ${row.ratioToAutocannon}`);
  }
  // The shared sample on its recorded schedule: how late requests leave.
  const so = await startSluice(['origin', '--sample', '--listen', '127.0.0.1:0']);
  const spx = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', so.url, '--quiet', '--config', path.join(ROOT, 'fixtures/sample-vcl.config.mjs')]);
  const timed = await runReplay([SAMPLE, '--target', spx.url]);
  console.log(`request.log as recorded: ${timed.summary.replayed} requests in ${(timed.summary.durationMs / 1000).toFixed(2)} s, at most ${timed.summary.maxLagMs} ms late; ${timed.summary.statusMismatches} status and ${timed.summary.outcomeMismatches} outcome mismatches`);
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), quick, machine: m, asap: rows, timedSample: { trace: 'fixtures/varnishlog/request.log', ...timed.summary } }, null, 2)}\n`,
  );
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
  await sleep(10);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
