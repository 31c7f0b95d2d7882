// The transaction log's cost per 1 KiB hit as CPU time, before/after on a loaded machine (issue 16).
// Usage: node bench/txlog-ab.mjs [--base CHECKOUT] [--modes off,file-text,file-ndjson] [--hits N] [--rounds R] [--out FILE]
// Each mode's proxy of this tree and (with --base) of another built checkout in front of one `origin --fast`; a
// warm-up of N hits each, then R rounds, each proxy in turn per round: autocannon (8 connections) sends exactly N hits
// (an amount, not a duration, so a slow round on a loaded machine counts the same work) and the proxy process's CPU
// time (/proc schedstat, all threads, bench/lib.mjs cpuNanos) over them is divided by the hits. Medians per target,
// each log mode's CPU as a ratio to the same tree's log-off (the figure bench/txlog.mjs's requests/s ratio stands for
// when the proxy is CPU-bound), and what the log adds per hit in microseconds. Load average per round.
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, cpuNanos, machine, sleep, startSluice, startSluiceFrom, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const base = opt('--base') === undefined ? undefined : path.resolve(opt('--base'));
const MODES = opt('--modes', 'off,file-text,file-ndjson').split(',');
const HITS = Number(opt('--hits', 10000));
const ROUNDS = Number(opt('--rounds', 4));
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-txlog-ab.json`));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-txlog-ab-'));

const flags = (mode, file) =>
  mode === 'off' ? [] : mode === 'file-text' ? ['--log', 'text', '--log-file', file] : mode === 'file-ndjson' ? ['--log', 'ndjson', '--log-file', file] : mode === 'stdout-text' ? ['--log', 'text'] : ['--log', 'ndjson'];
const cannon = (url) => new Promise((resolve, reject) => autocannon({ url: `${url}/static/1k`, connections: 8, amount: HITS }, (e, r) => (e ? reject(e) : resolve(r))));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const targets = [];
  for (const [tree, root] of [['this', ROOT], ...(base === undefined ? [] : [['base', base]])]) {
    for (const mode of MODES) {
      // stdout modes: the proxy's stdout is the pipe to this process (discarded), as in bench/txlog.mjs's note.
      const p = await startSluiceFrom(root, ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', ...flags(mode, path.join(tmp, `${tree}-${mode}.log`))]);
      targets.push({ tree, mode, url: p.url, pid: p.pid, usPerHit: [], errors: 0 });
    }
  }
  for (const t of targets) {
    await (await request(`${t.url}/static/1k`)).body.text();
    await cannon(t.url);
  }
  const loadavg = [];
  for (let r = 0; r < ROUNDS; r++) {
    loadavg.push(os.loadavg().map((x) => Number(x.toFixed(2))));
    // The side order alternates (whoever runs second in a round may pay for the first's leftovers).
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const c0 = cpuNanos(t.pid);
      const res = await cannon(t.url);
      // The log file's last write (20 ms timer) lands in this round.
      await sleep(60);
      t.usPerHit.push((cpuNanos(t.pid) - c0) / 1000 / res.requests.total);
      t.errors += res.errors + res.non2xx;
    }
  }
  const rows = targets.map((t) => ({ tree: t.tree, mode: t.mode, usPerHit: Number(median(t.usPerHit).toFixed(2)), rounds: t.usPerHit.map((x) => Number(x.toFixed(2))), errors: t.errors }));
  for (const row of rows) {
    const off = rows.find((x) => x.tree === row.tree && x.mode === 'off');
    if (off !== undefined && row !== off) {
      row.cpuRatioToOff = Number((row.usPerHit / off.usPerHit).toFixed(3));
      row.logAddsUsPerHit = Number((row.usPerHit - off.usPerHit).toFixed(2));
      // What requests/s would be as a share of log-off if the proxy were CPU-bound.
      row.cpuBoundThroughputRatio = Number((off.usPerHit / row.usPerHit).toFixed(3));
    }
    console.log(`${row.tree.padEnd(5)} ${row.mode.padEnd(12)} CPU ${String(row.usPerHit).padStart(7)} us/hit${row.cpuRatioToOff === undefined ? '' : `  x${row.cpuRatioToOff} of log-off (throughput at CPU-bound ${row.cpuBoundThroughputRatio}), log adds ${row.logAddsUsPerHit} us`}  rounds ${row.rounds.join(' ')}${row.errors > 0 ? `  errors ${row.errors}` : ''}`);
  }
  console.log(`load average per round: ${loadavg.map((l) => l.join('/')).join(', ')}`);
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: m, hits: HITS, rounds: ROUNDS, connections: 8, base, loadavg, rows }, null, 1)}\n`);
  console.log(`written ${path.relative(ROOT, out)}`);
}

try {
  await main();
} finally {
  stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
