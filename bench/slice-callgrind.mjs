// Instructions (valgrind callgrind, Ir) of the proxy process per cold whole read: what holds on a loaded machine where
// wall and CPU times do not. Usage:
//   node bench/slice-callgrind.mjs NAME SIZE_MIB WARM MEASURED [--json FILE] [--range | --warm-reads] -- <proxy flags...>
// e.g. node bench/slice-callgrind.mjs runs8 20 3 3 --json bench/results/x.json -- --slice 1MB --slice-min 16MB --slice-runs
// The proxy runs under callgrind with instrumentation off; WARM cold whole reads of new SIZE_MIB objects (/big/N?t=..)
// warm the process (JIT), then instrumentation goes on for MEASURED more; Ir per read = callgrind's totals / MEASURED.
// Slow (the whole proxy under valgrind): minutes per configuration. NODE_FLAGS: node flags for the proxy (--perf-basic-prof:
// a /tmp/perf-PID.map that names the JIT's code addresses in the callgrind file).
import { spawn, execFileSync } from 'node:child_process';
import { request } from 'undici';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
const ROOT = process.env.ROOT ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const [name, sizeMiB, warm, measured] = process.argv.slice(2, 6);
const extra = process.argv.slice(process.argv.indexOf('--') + 1);
const jsonAt = process.argv.indexOf('--json');
const jsonOut = jsonAt > 0 && jsonAt < process.argv.indexOf('--') ? process.argv[jsonAt + 1] : undefined;
function start(cmd, args) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const on = (d) => { buf += d; const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(buf); if (m) resolve({ url: m[1], p }); };
    p.stdout.on('data', on); p.stderr.on('data', (d) => { if (process.env.V) process.stderr.write(d); });
  });
}
const origin = await start(process.execPath, [`${ROOT}/packages/cli/bin/run.js`, 'origin', '--listen', '127.0.0.1:0']);
const out = path.join(os.tmpdir(), `slice-callgrind-${name}-${process.pid}.out`);
const proxy = await start('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, ...(process.env.NODE_FLAGS ? process.env.NODE_FLAGS.split(' ') : []), `${ROOT}/packages/cli/bin/run.js`, 'proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB', ...extra]);
const SIZE = Number(sizeMiB) * 1024 * 1024;
// --range: each read is a cold 1000-byte range at the object's middle instead of the whole object.
const RANGE = process.argv.slice(0, process.argv.indexOf('--')).includes('--range');
// --warm-reads: every read is of the same object (the first warm-up read fills it): the measured reads are warm hits.
const WARMREADS = process.argv.slice(0, process.argv.indexOf('--')).includes('--warm-reads');
async function coldRange(tag) { const r = await request(`${proxy.url}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` }, bodyTimeout: 0, headersTimeout: 0 }); let n = 0; for await (const c of r.body) n += c.length; if (n !== 1000) throw new Error('short'); }
async function whole(tag) {
  if (WARMREADS) tag = 'warm';
  if (RANGE) return coldRange(tag); const r = await request(`${proxy.url}/big/${SIZE}?t=${tag}`, { bodyTimeout: 0, headersTimeout: 0 }); let n = 0; for await (const c of r.body) n += c.length; if (n !== SIZE) throw new Error('short'); }
for (let i = 0; i < Number(warm); i++) await whole(`w${i}`);
await new Promise((r) => setTimeout(r, 1000));
const pid = proxy.p.pid;
execFileSync('callgrind_control', ['-i', 'on', String(pid)]);
for (let i = 0; i < Number(measured); i++) await whole(`m${i}`);
await new Promise((r) => setTimeout(r, 1500));
execFileSync('callgrind_control', ['-i', 'off', String(pid)]);
const s = await (await request(`${origin.url}/stats`)).body.json();
proxy.p.kill('SIGINT');
await new Promise((r) => proxy.p.on('exit', r));
origin.p.kill('SIGINT');
const txt = fs.readFileSync(out, 'utf8');
const m = /^totals: (\d+)/m.exec(txt);
const perRead = Number(m?.[1]) / Number(measured);
// V8's optimizing compilers (TurboFan, Maglev: a warm-up cost that lands in whichever reads it coincides with, so it
// swings by millions between runs): their Ir apart, from callgrind_annotate's per-function self costs.
let compilerIr = 0;
for (const line of execFileSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', out], { maxBuffer: 1 << 28 }).toString().split('\n')) {
  const f = /^\s*([\d,]+) \(.*(compiler::|maglev|Maglev|turboshaft)/.exec(line);
  if (f) compilerIr += Number(f[1].replaceAll(',', ''));
}
const steadyPerRead = (Number(m?.[1]) - compilerIr) / Number(measured);
const originRequests = s.perPath[`/big/${SIZE}`] ?? 0;
console.log(name, 'Ir per read (M):', (perRead / 1e6).toFixed(1), 'without the optimizing compiler:', (steadyPerRead / 1e6).toFixed(1), 'origin requests (warm-up and measured reads)', originRequests);
if (jsonOut !== undefined) {
  const doc = fs.existsSync(jsonOut) ? JSON.parse(fs.readFileSync(jsonOut, 'utf8')) : { what: 'Ir of the proxy per cold whole read (callgrind)', runs: [] };
  doc.runs.push({ name, date: new Date().toISOString(), flags: extra, objectMiB: Number(sizeMiB), warmReads: Number(warm), measuredReads: Number(measured), kind: RANGE ? 'cold range, 1000 B at the middle' : WARMREADS ? 'warm whole read' : 'cold whole read', irTotal: Number(m?.[1]), irPerReadM: Math.round(perRead / 1e5) / 10, irPerReadWithoutCompilerM: Math.round(steadyPerRead / 1e5) / 10, originRequestsAllReads: originRequests });
  fs.writeFileSync(jsonOut, `${JSON.stringify(doc, null, 2)}\n`);
}
process.exit(0);
