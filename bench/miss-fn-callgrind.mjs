// Instructions of a warm miss's two main-thread stretches BY FUNCTION, under valgrind --tool=callgrind (issue 16, miss
// first byte). As bench/miss-stretch-callgrind.mjs: counters zeroed before every uv__read and dumped before every
// uv_try_write, so a miss gives two dumps, `inbound` (client request read -> origin request write) and `outbound`
// (origin response read -> first client write). The proxy runs with node's --perf-basic-prof, so the addresses of
// JIT-compiled JavaScript (which callgrind cannot name) are named from /tmp/perf-<pid>.map; native code keeps its
// symbol (V8 builtins are Builtins_*). Self instructions per function, averaged over the measured misses, per
// stretch; the top --top of each are printed and written. One checkout per run (--root, default this one).
// Usage: node bench/miss-fn-callgrind.mjs [--root DIR] [--path /static/1k] [--warm 1500] [--misses 40] [--top 40]
//                                         [--out FILE]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const root = path.resolve(opt('--root', ROOT));
const PATH = opt('--path', '/static/1k');
const WARM = Number(opt('--warm', 1500));
const N = Number(opt('--misses', 40));
const TOP = Number(opt('--top', 40));
const out = opt('--out', undefined);
const EXTRA = (opt('--proxy-args', '') ?? '').split(' ').filter((a) => a !== '');
// --callers RE: also lists, per stretch, who calls the functions whose name matches RE (inclusive Ir per miss).
const CALLERS = opt('--callers', undefined);

function startProxy(backend, dir) {
  const args = [
    '--tool=callgrind',
    '--instr-atstart=no',
    '--separate-threads=yes',
    '--zero-before=uv__read',
    '--dump-before=uv_try_write',
    `--callgrind-out-file=${dir}/cg.%p`,
    process.execPath,
    '--perf-basic-prof',
    path.join(root, 'packages/cli/bin/run.js'),
    'proxy',
    '--listen',
    '127.0.0.1:0',
    '--backend',
    backend,
    '--quiet',
    ...EXTRA,
  ];
  const p = spawn('valgrind', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
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
    s.write(`GET ${PATH}${PATH.includes('?') ? '&' : '?'}fc=${tag}-${process.pid}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

/** JIT code ranges from a perf map: sorted [start, end, name]; a later entry for the same start wins. */
function perfMap(pid) {
  const file = `/tmp/perf-${pid}.map`;
  if (!existsSync(file)) return [];
  const byStart = new Map();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m === null) continue;
    const start = parseInt(m[1], 16);
    byStart.set(start, [start, start + parseInt(m[2], 16), m[3]]);
  }
  return [...byStart.values()].sort((a, b) => a[0] - b[0]);
}

function nameOf(map, fn) {
  const m = /^0x([0-9a-f]+)$/.exec(fn);
  if (m === null) return fn;
  const a = parseInt(m[1], 16);
  let lo = 0;
  let hi = map.length - 1;
  let found;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (map[mid][0] <= a) {
      found = map[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found !== undefined && a < found[1] ? found[2].replace(/file:\/\/\/[^ ]*\/packages\//, '').replace(/file:\/\/\/[^ ]*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '') : `[jit? ${fn}]`;
}

/** Self Ir per function name of one callgrind dump (no --dump-instr: cost lines are "<pos> <Ir>"). */
function selfCosts(text) {
  const names = new Map();
  const costs = new Map();
  const arcs = new Map();
  let fn = '?';
  let cfn = '?';
  let afterCalls = false;
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      const m = /^fn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (m !== null) {
        if (m[2] !== undefined) names.set(m[1], m[2]);
        fn = names.get(m[1]) ?? m[1];
      } else fn = line.slice(3);
      afterCalls = false;
      continue;
    }
    if (line.startsWith('cfn=')) {
      const m = /^cfn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (m !== null && m[2] !== undefined) names.set(m[1], m[2]);
      cfn = m !== null ? (names.get(m[1]) ?? m[1]) : line.slice(4);
      continue;
    }
    if (line.startsWith('calls=')) {
      afterCalls = true;
      continue;
    }
    if (/^[+\-*0-9]/.test(line)) {
      const parts = line.trim().split(/\s+/);
      const ir = Number(parts[parts.length - 1]);
      if (afterCalls) {
        afterCalls = false;
        if (Number.isFinite(ir)) {
          const k = `${fn}\u0000${cfn}`;
          arcs.set(k, (arcs.get(k) ?? 0) + ir);
        }
        continue;
      }
      if (!Number.isFinite(ir) || parts.length < 2) continue;
      costs.set(fn, (costs.get(fn) ?? 0) + ir);
      total += ir;
    }
  }
  return { costs, arcs, total };
}

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-fncg-'));
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const t = await startProxy(origin.url, tmp);
  console.log(`miss stretches by function (callgrind) of ${PATH} through ${root}, load ${m.loadavgAtStart.join(' ')}`);
  const s = await connect(t.url);
  for (let i = 0; i < WARM; i++) await miss(s, 'w');
  const on = spawnSync('callgrind_control', ['-i', 'on', String(t.pid)], { encoding: 'utf8' });
  if (on.status !== 0) throw new Error(`callgrind_control -i on: ${on.stderr}`);
  await sleep(300);
  const files = () =>
    readdirSync(tmp)
      .map((f) => /^cg\.(\d+)\.(\d+)-01$/.exec(f))
      .filter((x) => x !== null && Number(x[1]) === t.pid)
      .sort((a, b) => Number(a[2]) - Number(b[2]))
      .map((x) => x[0]);
  const before = files().length;
  for (let i = 0; i < N; i++) await miss(s, 'm');
  spawnSync('callgrind_control', ['-i', 'off', String(t.pid)], { encoding: 'utf8' });
  s.destroy();
  await sleep(500);
  const map = perfMap(t.pid);
  const dumps = files()
    .slice(before)
    .map((f) => selfCosts(readFileSync(path.join(tmp, f), 'utf8')));
  const sides = { inbound: new Map(), outbound: new Map() };
  // `charged`: a JavaScript function's self instructions plus those of the native code it calls directly (ICs,
  // builtins, runtime), except calls into code that may run JavaScript again (calls, constructs, promises,
  // microtasks): an approximation of "what this JS function costs", for finding what to cut.
  const charged = { inbound: new Map(), outbound: new Map() };
  const callers = { inbound: new Map(), outbound: new Map() };
  // `inclusive`: the instructions of every call into a function (recursive calls not counted twice), per miss.
  const inclusive = { inbound: new Map(), outbound: new Map() };
  const callersRe = CALLERS === undefined ? undefined : new RegExp(CALLERS);
  const isJs = (name) => name.startsWith('JS:') || name.startsWith('RegExp:') || name.startsWith('[jit?');
  const trampoline = /Call|Construct|JSEntry|Microtask|Promise|Await|Async|Generator|Resolve|Reject|Fulfill|ForEach|Reflect|Apply|Interpreter|Bound|Invoke|Execution|Callback|Emit|MakeCallback/;
  const totals = { inbound: [], outbound: [] };
  // Pairs from the last dump back (see miss-stretch-callgrind.mjs); the first 4 dumps after the switch are dropped.
  for (let i = dumps.length - 1; i - 1 >= 4; i -= 2) {
    const [a, b] = dumps[i].total >= dumps[i - 1].total ? [dumps[i - 1], dumps[i]] : [dumps[i], dumps[i - 1]];
    for (const [side, d] of [['inbound', a], ['outbound', b]]) {
      totals[side].push(d.total);
      for (const [fn, ir] of d.costs) {
        const name = nameOf(map, fn);
        sides[side].set(name, (sides[side].get(name) ?? 0) + ir);
        if (isJs(name)) charged[side].set(name, (charged[side].get(name) ?? 0) + ir);
      }
      for (const [k, ir] of d.arcs) {
        const [caller, callee] = k.split('\u0000').map((f) => nameOf(map, f));
        if (caller !== callee) inclusive[side].set(callee, (inclusive[side].get(callee) ?? 0) + ir);
        if (callersRe?.test(callee) === true) {
          const key = `${callee} <- ${caller}`;
          callers[side].set(key, (callers[side].get(key) ?? 0) + ir);
        }
        if (!isJs(caller) || isJs(callee) || trampoline.test(callee)) continue;
        charged[side].set(caller, (charged[side].get(caller) ?? 0) + ir);
      }
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const result = { date: new Date().toISOString(), machine: m, root, path: PATH, warm: WARM, misses: N, pairs: totals.inbound.length, stretches: {} };
  for (const side of ['inbound', 'outbound']) {
    const n = totals[side].length;
    const top = [...sides[side]].sort((x, y) => y[1] - x[1]).slice(0, TOP).map(([fn, ir]) => [fn, Math.round(ir / n)]);
    const chargedTop = [...charged[side]].sort((x, y) => y[1] - x[1]).slice(0, TOP).map(([fn, ir]) => [fn, Math.round(ir / n)]);
    result.stretches[side] = { medianIr: median(totals[side]), meanIr: Math.round(totals[side].reduce((x, y) => x + y, 0) / n), top, chargedTop };
    console.log(`\n${side}: median ${median(totals[side])} Ir over ${n} misses; self Ir per miss:`);
    for (const [fn, ir] of top) console.log(`${String(ir).padStart(8)}  ${fn}`);
    if (callersRe !== undefined) {
      const c = [...callers[side]].sort((x, y) => y[1] - x[1]).slice(0, TOP).map(([k, ir]) => [k, Math.round(ir / n)]);
      result.stretches[side].callers = c;
      console.log(`\n${side}: callers of /${CALLERS}/, inclusive Ir per miss:`);
      for (const [k, ir] of c) console.log(`${String(ir).padStart(8)}  ${k}`);
    }
    const incl = [...inclusive[side]].filter(([fn]) => isJs(fn)).sort((x, y) => y[1] - x[1]).slice(0, TOP).map(([fn, ir]) => [fn, Math.round(ir / n)]);
    result.stretches[side].inclusiveTop = incl;
    console.log(`\n${side}: JS functions by inclusive Ir per miss (every call into them):`);
    for (const [fn, ir] of incl) console.log(`${String(ir).padStart(8)}  ${fn}`);
    console.log(`\n${side}: JS functions charged with the native code they call directly, Ir per miss:`);
    for (const [fn, ir] of chargedTop) console.log(`${String(ir).padStart(8)}  ${fn}`);
  }
  t.proc.kill('SIGKILL');
  await stopAll();
  if (out !== undefined) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`written ${out}`);
  }
  process.exit(0);
}

main().catch(async (e) => {
  console.error(e);
  await stopAll();
  process.exit(1);
});
