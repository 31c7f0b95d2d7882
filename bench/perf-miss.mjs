// perf profile of a proxy's cold 100 MiB whole misses, kept for `perf report` (issue 16, bulk miss; session 8): a
// fresh proxy of ROOT under `node --perf-basic-prof` in front of one `sluice origin`, WARM warm-up misses, then
// `perf record -F 999 -g` on its process (all threads) over N misses, written to OUT.
// Usage: node bench/perf-miss.mjs [ROOT] [OUT] [N] [WARM] (WARM warm-up misses, default 1: with 6 or more the
// storage has filled and evicted, so glibc reuses freed memory and the first-touch page faults are gone); then e.g.
//   perf report -i OUT --children --sort sym --stdio -g none | head -80
import { spawn } from 'node:child_process';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, sleep, startSluice, stopAll } from './lib.mjs';
const root = process.argv[2] ?? ROOT;
const out = path.resolve(process.argv[3] ?? 'perf-miss.data');
const MISSES = Number(process.argv[4] ?? 4);
const SIZE = 100 * 1024 * 1024;
const dir = (await import('node:fs')).mkdtempSync(path.join((await import('node:os')).tmpdir(), 'perf-miss-'));
function startProxy(root, backend) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--perf-basic-prof', path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    let text = '';
    const on = (d) => { text += String(d); const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text); if (m !== null) resolve({ url: m[1], pid: p.pid, proc: p }); };
    p.stdout.on('data', on); p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${text}`)));
  });
}
async function coldWhole(url, tag) {
  const r = await request(`${url}/big/${SIZE}?perf=${tag}-${Date.now()}`);
  let n = 0; for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`${tag}: ${n} bytes`);
}
const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const p = await startProxy(root, origin.url);
for (let i = 0; i < Number(process.argv[5] ?? 1); i++) await coldWhole(p.url, `warm${i}`);
const rec = spawn('perf', ['record', '-F', '999', '-g', '-p', String(p.pid), '-o', out], { stdio: 'ignore' });
await sleep(500);
for (let i = 0; i < MISSES; i++) await coldWhole(p.url, String(i));
const stopped = new Promise((r) => rec.once('exit', r));
rec.kill('SIGINT'); await stopped;
p.proc.kill('SIGTERM');
await stopAll();
console.log('done', (await import('node:os')).loadavg());
process.exit(0);
