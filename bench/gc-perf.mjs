// The garbage collector's share of a cold whole-object miss's CPU, from perf samples (issue 16, bulk miss).
// Usage: node bench/gc-perf.mjs [--root DIR]... [--misses N] [--size BYTES] [--out FILE]
//   Each root (default: this tree) gets a fresh proxy (`node --perf-basic-prof`) in front of one `sluice origin`; one
//   warm-up miss, then `perf record -g -F 999` on the proxy's process (all threads) while N cold misses are read whole.
//   Every sample is put in one category by its stack: gc-full (marking, sweeping, compaction, incl. V8's concurrent
//   marking threads), gc-young (scavenges), kernel-read / kernel-write (socket syscalls), malloc, other (JS, undici,
//   llhttp, Node). Prints the shares and samples per miss; samples count CPU time, so they hold up on a loaded machine
//   better than wall time. Roots run one after the other (`perf` needs the samples of one process at a time). The
//   proxies run in a temporary directory: `--perf-basic-prof` also writes V8's isolate-*.log there.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const all = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const arg = (name) => all(name)[0];
const roots = all('--root').length > 0 ? all('--root') : [ROOT];
const MISSES = Number(arg('--misses') ?? 4);
const SIZE = Number(arg('--size') ?? 100 * 1024 * 1024);
const out = arg('--out');
const dir = mkdtempSync(path.join(tmpdir(), 'gc-perf-'));

function startProxy(root, backend) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--perf-basic-prof', path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    let text = '';
    const on = (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m !== null) resolve({ url: m[1], pid: p.pid, proc: p });
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${text}`)));
  });
}

async function coldWhole(url, tag) {
  const r = await request(`${url}/big/${SIZE}?perf=${tag}-${Date.now()}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== SIZE) throw new Error(`${tag}: ${n} bytes`);
}

const GC_FULL = /ConcurrentMarking|MarkCompact|IncrementalMarking|MarkingVisitor|MarkingBarrier|Sweeper|ArrayBufferSweeper|Heap::FinalizeIncremental|MemoryAllocator|Evacuat|Compactor/;
const SCAVENGE = /Scaveng/;
function category(stack) {
  const s = stack.join(' ');
  if (SCAVENGE.test(s)) return 'gc-young';
  if (GC_FULL.test(s)) return 'gc-full';
  if (/v8::internal::Heap::/.test(s)) return 'gc-other';
  if (/tcp_recvmsg|sock_read_iter|ksys_read/.test(s)) return 'kernel-read';
  if (/tcp_sendmsg|sock_write_iter|do_writev|ksys_write/.test(s)) return 'kernel-write';
  if (/malloc|free|mmap|munmap/.test(stack[0] ?? '')) return 'malloc';
  return 'other';
}

function categorize(dataFile) {
  const text = spawnSync('perf', ['script', '-i', dataFile, '-F', 'tid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 }).stdout;
  const counts = {};
  let stack;
  let n = 0;
  const flush = () => {
    if (stack === undefined) return;
    const c = category(stack);
    counts[c] = (counts[c] ?? 0) + 1;
    n++;
    stack = undefined;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') flush();
    else if (!line.startsWith('\t')) {
      flush();
      stack = [];
    } else stack?.push(line.trim().replace(/^[0-9a-f]+ /, ''));
  }
  flush();
  return { samples: n, counts };
}

const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const result = { date: new Date().toISOString(), machine: machine(), settings: { size: SIZE, misses: MISSES, frequencyHz: 999 }, sides: [] };
for (const root of roots) {
  const p = await startProxy(root, origin.url);
  await coldWhole(p.url, 'warm');
  const data = path.join(dir, `${result.sides.length}.data`);
  const rec = spawn('perf', ['record', '-F', '999', '-g', '-p', String(p.pid), '-o', data], { stdio: 'ignore' });
  await sleep(500);
  const load = (await import('node:os')).loadavg()[0];
  for (let i = 0; i < MISSES; i++) await coldWhole(p.url, String(i));
  const stopped = new Promise((r) => rec.once('exit', r));
  rec.kill('SIGINT');
  await stopped;
  p.proc.kill('SIGTERM');
  const { samples, counts } = categorize(data);
  const share = Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +((100 * v) / samples).toFixed(1)]));
  result.sides.push({ root, samples, samplesPerMiss: Math.round(samples / MISSES), sharePercent: share, counts, loadAvg1: load });
  console.log(`${root.padEnd(30)} ${Math.round(samples / MISSES)} samples/miss  ${Object.entries(share).map(([k, v]) => `${k} ${v}%`).join('  ')}  (load ${load.toFixed(1)})`);
}
await stopAll();
if (out !== undefined) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
process.exit(0);
