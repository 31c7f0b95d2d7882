// Instructions of the two stretches a warm miss spends in the proxy's main thread, under valgrind --tool=callgrind
// (issue 16, miss first byte; load-independent, unlike their wall or CPU time on a shared 2-core machine):
//   inbound   from the read of the client's request (libuv's uv__read) to the origin request's write (uv_try_write)
//   outbound  from the read of the origin's response to the first write to the client
// callgrind zeroes its counters before every uv__read and dumps them before every uv_try_write, so each dump holds
// the instructions since the last read: a miss gives two dumps, inbound then outbound. Instrumentation is off while
// each proxy serves W misses (JIT warm), on for the N measured ones. Targets: this checkout and --base DIR, one after
// the other. Medians per target.
// Usage: node bench/miss-stretch-callgrind.mjs [--base DIR] [--path /static/1k] [--warm 1000] [--misses 100] [--out FILE]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
const PATH = opt('--path', '/static/1k');
const WARM = Number(opt('--warm', 1000));
const N = Number(opt('--misses', 100));
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-miss-stretch-callgrind.json`));

function startProxy(root, backend, dir) {
  const args = [
    '--tool=callgrind',
    '--instr-atstart=no',
    '--separate-threads=yes',
    '--zero-before=uv__read',
    '--dump-before=uv_try_write',
    `--callgrind-out-file=${dir}/cg.%p`,
    process.execPath,
    path.join(root, 'packages/cli/bin/run.js'),
    'proxy',
    '--listen',
    '127.0.0.1:0',
    '--backend',
    backend,
    '--quiet',
  ];
  const p = spawn('valgrind', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => p.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m) resolve({ url: m[1], proc: p, pid: p.pid });
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
function miss(s, tag) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /content-length: *(\d+)/i.exec(head);
      const done = m !== null ? buf.length >= end + 4 + Number(m[1]) : buf.subarray(buf.length - 5).toString('latin1') === '0\r\n\r\n';
      if (!done) return;
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 200')) reject(new Error(`${tag}: ${head.split('\r\n')[0]}`));
      else resolve();
    };
    s.on('data', onData);
    s.write(`GET ${PATH}${PATH.includes('?') ? '&' : '?'}sc=${tag}-${process.pid}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

const median = (xs) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);

/** The main thread's dumps (thread 1) in order: the Ir total of each. */
function dumpsOf(dir, pid) {
  const files = readdirSync(dir)
    .map((f) => /^cg\.(\d+)\.(\d+)-01$/.exec(f))
    .filter((m) => m !== null && Number(m[1]) === pid)
    .sort((a, b) => Number(a[2]) - Number(b[2]));
  return files.map((m) => {
    const text = readFileSync(path.join(dir, m[0]), 'utf8');
    const t = /^(?:summary|totals): (\d+)/m.exec(text);
    return t === null ? 0 : Number(t[1]);
  });
}

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-stretch-'));
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const roots = [['sluice', ROOT]];
  if (BASE !== undefined) roots.push(['base', path.resolve(BASE)]);
  const result = { date: new Date().toISOString(), machine: m, path: PATH, warm: WARM, misses: N, base: BASE, targets: {} };
  console.log(`miss stretches (callgrind) of ${PATH}, load ${m.loadavgAtStart.join(' ')}: ${roots.map((r) => r[0]).join(', ')}`);
  const procs = await Promise.all(
    roots.map(async ([name, root]) => {
      const dir = path.join(tmp, name);
      mkdirSync(dir);
      return { name, root, dir, ...(await startProxy(root, origin.url, dir)) };
    }),
  );
  await Promise.all(
    procs.map(async (t) => {
      const s = await connect(t.url);
      for (let i = 0; i < WARM; i++) await miss(s, `w${t.name}`);
      const on = spawnSync('callgrind_control', ['-i', 'on', String(t.pid)], { encoding: 'utf8' });
      if (on.status !== 0) throw new Error(`callgrind_control -i on: ${on.stderr}`);
      await sleep(300);
      // Two misses to get past the instrumentation switch, then the measured ones.
      const before = dumpsOf(t.dir, t.pid).length;
      for (let i = 0; i < N; i++) await miss(s, `m${t.name}`);
      spawnSync('callgrind_control', ['-i', 'off', String(t.pid)], { encoding: 'utf8' });
      s.destroy();
      await sleep(500);
      const dumps = dumpsOf(t.dir, t.pid).slice(before);
      // Pairs counted back from the last dump, which is the last miss's client write (outbound); the first dumps after
      // the switch carry the recompiles instrumentation causes, so the first 4 are dropped. A dump more in between (a
      // write of something else) shifts the pairing, so each pair's smaller dump counts as inbound and its larger as
      // outbound: every miss's inbound stretch is the shorter (~0.6-0.7 of the outbound in every clean run).
      const inbound = [];
      const outbound = [];
      for (let i = dumps.length - 1; i - 1 >= 4; i -= 2) {
        outbound.push(Math.max(dumps[i], dumps[i - 1]));
        inbound.push(Math.min(dumps[i], dumps[i - 1]));
      }
      result.targets[t.name] = { root: t.root, dumps: dumps.length, pairs: inbound.length, inboundIr: median(inbound), outboundIr: median(outbound), inboundIrMin: Math.min(...inbound), outboundIrMin: Math.min(...outbound) };
      console.log(`${t.name}: ${JSON.stringify(result.targets[t.name])}`);
      t.proc.kill('SIGKILL');
    }),
  );
  result.loadavgAtEnd = os.loadavg();
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${out}`);
  process.exit(0);
}

main().catch(async (e) => {
  console.error(e);
  await stopAll();
  process.exit(1);
});
