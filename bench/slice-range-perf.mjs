// On-CPU profile of cold sliced ranges (issue 13, session 10): perf samples only while the proxy runs, so the figures
// hold on a loaded machine where V8's --cpu-prof (wall-clock ticks) blames descheduled time on whatever ran next.
// A proxy of ROOT under `node --perf-basic-prof`, WARM cold ranges (1000 B at the middle of a new 100 MiB object),
// then `perf record -F 2999 -g` on it over N more, PAUSE ms apart (the segment's fetch done before the next), into OUT.
//   node bench/slice-range-perf.mjs ROOT OUT N WARM PAUSE -- <proxy flags>
// then: perf report -i OUT --children --sort sym --stdio -g none --percent-limit 0.5
import { spawn } from 'node:child_process';
import path from 'node:path';
import { request } from 'undici';
import { sleep, startSluice, stopAll } from './lib.mjs';
const [root, outArg, nArg, warmArg, pauseArg] = process.argv.slice(2, 7);
const extra = process.argv.includes('--') ? process.argv.slice(process.argv.indexOf('--') + 1) : [];
const out = path.resolve(outArg);
const N = Number(nArg ?? 100);
const WARM = Number(warmArg ?? 40);
const PAUSE = Number(pauseArg ?? 20);
const SIZE = 100 * 1024 * 1024;
function startProxy(backend) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--perf-basic-prof', path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet', '--storage', '1GB', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const on = (d) => { text += String(d); const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(text); if (m !== null) resolve({ url: m[1], pid: p.pid, proc: p }); };
    p.stdout.on('data', on); p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${text}`)));
  });
}
const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const proxy = await startProxy(origin.url);
let first = [];
async function cold(tag) {
  const t0 = process.hrtime.bigint();
  const r = await request(`${proxy.url}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } });
  let n = 0; let tf;
  for await (const c of r.body) { tf ??= process.hrtime.bigint(); n += c.length; }
  if (n !== 1000) throw new Error(`${tag}: ${n} bytes`);
  return Number(tf - t0) / 1e6;
}
for (let i = 0; i < WARM; i++) { await cold(`w${i}`); await sleep(PAUSE); }
const perf = spawn('perf', ['record', '-F', '2999', '-g', '-p', String(proxy.pid), '-o', out], { stdio: 'ignore' });
await sleep(1500);
for (let i = 0; i < N; i++) { first.push(await cold(`m${i}`)); await sleep(PAUSE); }
perf.kill('SIGINT');
await new Promise((r) => perf.on('exit', r));
first.sort((a, b) => a - b);
console.log(JSON.stringify({ root, flags: extra, n: N, firstByteP50Ms: first[N >> 1] }));
proxy.proc.kill('SIGINT');
await stopAll();
process.exit(0);
