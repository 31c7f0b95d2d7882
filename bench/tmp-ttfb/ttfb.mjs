import { spawn } from 'node:child_process';
import { request } from 'undici';
const BIN = '/work/wt-slicer/packages/cli/bin/run.js';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mode = process.argv[2] ?? 'arrival';
const N = Number(process.argv[3] ?? 20);
const prof = process.argv.includes('--prof');
function start(args, port, extra = []) {
  const p = spawn(process.execPath, [...extra, BIN, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  return { p, url: `http://127.0.0.1:${port}` };
}
const o = start(['origin', '--listen', '127.0.0.1:18081'], 18081);
const flags = mode === 'arrival' ? ['--slice-size', '1MB'] : mode === 'adaptive' ? ['--slice', '1MB', '--slice-min', '16MB'] : [];
const px = start(['proxy', '--listen', '127.0.0.1:18082', '--backend', o.url, '--quiet', '--storage', '1GB', '--shutdown-timeout', '1s', ...flags, ...(process.argv.includes('--log') ? ['--log', 'text', '--log-file', '/tmp/slprof/tx.log'] : [])], 18082, prof ? ['--cpu-prof', '--cpu-prof-dir=/tmp/slprof'] : []);
for (const u of [o.url, px.url]) for (let i = 0; i < 100; i++) { try { await (await request(`${u}/static/1`)).body.text(); break; } catch { await sleep(100); } }
const SIZE = 100 * 1024 * 1024;
async function ttfb(base, tag) {
  const t0 = performance.now();
  const res = await request(`${base}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } });
  let first;
  for await (const c of res.body) first ??= performance.now() - t0;
  return first;
}
const d = [], s = [];
for (let i = 0; i < N; i++) {
  d.push(await ttfb(o.url, `d${i}${Date.now()}`));
  s.push(await ttfb(px.url, `s${i}${Date.now()}`));
  await sleep(30);
}
const med = (x) => x.sort((a, b) => a - b)[Math.floor(x.length / 2)].toFixed(2);
console.log(mode, 'direct', med(d), 'sluice', med(s), 'min', Math.min(...s).toFixed(2));
px.p.kill('SIGINT'); o.p.kill('SIGINT');
await sleep(6000);
