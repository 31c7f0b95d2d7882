// Where a warm miss's CPU goes, by function (issue 16, miss first byte): each proxy runs under --cpu-prof (sampling
// every --interval us), serves --warm misses then --misses more back to back on one kept-alive raw connection (a new
// URL each time); the profile's self time of the measured part (samples after the warm-up's end mark) is summed by
// function and by package (undici, node internals, core, origin-client), per miss. This checkout and --base DIR,
// one after the other. Sampled time on a loaded machine is noisy: read shares and large differences only.
// Usage: node bench/miss-prof.mjs [--base DIR] [--path /static/1k] [--warm 3000] [--misses 20000] [--interval 50] [--top 40] [--out FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
const PATH = opt('--path', '/static/1k');
const WARM = Number(opt('--warm', 3000));
const N = Number(opt('--misses', 20000));
const INTERVAL = Number(opt('--interval', 50));
const TOP = Number(opt('--top', 40));
const out = opt('--out', undefined);

function startProxy(root, backend, dir) {
  const args = ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${INTERVAL}`, path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'];
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m) resolve({ url: m[1], proc: p });
    });
    p.stderr.on('data', (d) => (text += String(d)));
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${text.slice(-2000)}`)));
  });
}

function connect(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

let seq = 0;
function miss(s) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /content-length: *(\d+)/i.exec(head);
      const done = m !== null ? buf.length >= end + 4 + Number(m[1]) : buf.subarray(buf.length - 5).toString('latin1') === '0\r\n\r\n';
      if (done) {
        s.off('data', onData);
        if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(head.split('\r\n')[0]));
        resolve();
      }
    };
    s.on('data', onData);
    s.write(`GET ${PATH}${PATH.includes('?') ? '&' : '?'}mp=${process.pid}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

function classify(url) {
  if (url.includes('/undici/')) return 'undici';
  if (url.includes('origin-client')) return 'origin-client';
  if (url.includes('packages/core')) return 'core';
  if (url.startsWith('node:')) return 'node';
  if (url === '') return 'native/gc';
  return 'other';
}

async function measure(root, backend) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-miss-prof-'));
  const px = await startProxy(root, backend, dir);
  const s = await connect(px.url);
  for (let i = 0; i < WARM; i++) await miss(s);
  const tStart = Date.now();
  for (let i = 0; i < N; i++) await miss(s);
  const tEnd = Date.now();
  s.destroy();
  await new Promise((r) => {
    px.proc.once('exit', r);
    px.proc.kill('SIGINT');
  });
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  const prof = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
  // Samples of the measured window only: timeDeltas are µs from startTime (µs, monotonic); the window is located
  // by its share of the wall time from the end (the proxy stops right after it).
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const times = [];
  let t = prof.startTime;
  for (const d of prof.timeDeltas) times.push((t += d));
  const windowUs = (tEnd - tStart) * 1000;
  const stopUs = prof.endTime;
  // The stop takes a moment after the window: the window's end is taken as the last sample before the idle tail.
  let lastBusy = times.length - 1;
  while (lastBusy > 0 && nodes.get(prof.samples[lastBusy]).callFrame.functionName === '(idle)') lastBusy--;
  const endUs = Math.min(stopUs, times[lastBusy]);
  const fromUs = endUs - windowUs;
  const byFn = new Map();
  const byPkg = new Map();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    if (times[i] < fromUs || times[i] > endUs) continue;
    const n = nodes.get(prof.samples[i]);
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') continue;
    const dt = i + 1 < times.length ? times[i + 1] - times[i] : INTERVAL;
    total += dt;
    const key = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*\/(packages|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + dt);
    const pkg = classify(cf.url);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + dt);
  }
  const per = (us) => Math.round((us / N) * 100) / 100;
  return {
    root,
    misses: N,
    usPerMissSampled: per(total),
    byPackage: Object.fromEntries([...byPkg].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, per(v)])),
    top: [...byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, v]) => ({ fn: k, us: per(v) })),
  };
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const roots = [ROOT, ...(BASE ? [BASE] : [])];
  const results = [];
  for (const r of roots) {
    const res = await measure(r, origin.url);
    results.push(res);
    console.log(JSON.stringify({ root: res.root, usPerMissSampled: res.usPerMissSampled, byPackage: res.byPackage }));
    for (const x of res.top) console.log(`  ${String(x.us).padStart(7)} us  ${x.fn}`);
  }
  const doc = { bench: 'miss-prof', path: PATH, warm: WARM, misses: N, intervalUs: INTERVAL, loadavg: os.loadavg(), machine: m, results };
  if (out) writeFileSync(out, JSON.stringify(doc, null, 2));
  await stopAll();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
