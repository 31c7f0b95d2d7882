// CPU profiles of Sluice's hot paths (issue 16): runs one scenario against a proxy started under `node --cpu-prof`,
// stops it (SIGTERM, so the profile is written) and prints where the time went: self time per function, top N, and
// the share of a few groups (txlog, undici, http1, deliver, fetch, GC). The .cpuprofile stays in --dir for a viewer.
// Usage: node bench/profile.mjs SCENARIO [--seconds N] [--dir DIR] [--top N] [--cwd CHECKOUT] [-- extra proxy flags]
//   hit-1k        autocannon, 32 connections, on a cached 1 KiB object (origin --fast)
//   miss-small    sequential cold 1 KiB misses (unique URLs) for --seconds
//   miss-100m     one cold 100 MiB whole-object miss, read as fast as the client can
// Example: node bench/profile.mjs hit-1k -- --log text --log-file /dev/null
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash >= 0 ? argv.slice(0, dash) : argv;
const extra = dash >= 0 ? argv.slice(dash + 1) : [];
const arg = (name, dflt) => {
  const i = own.indexOf(name);
  return i >= 0 ? own[i + 1] : dflt;
};
const scenario = own[0] ?? 'hit-1k';
const seconds = Number(arg('--seconds', '5'));
const dir = path.resolve(arg('--dir', `/tmp/sluice-prof-${scenario}-${Date.now()}`));
const top = Number(arg('--top', '25'));
const checkout = path.resolve(arg('--cwd', ROOT));
mkdirSync(dir, { recursive: true });

function startProfiled(args) {
  return new Promise((resolve, reject) => {
    const bin = path.join(checkout, 'packages/cli/bin/run.js');
    const p = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m !== null) resolve({ url: m[1], pid: p.pid, proc: p });
    });
    p.stderr.on('data', (d) => (text += String(d)));
    p.on('exit', (code) => reject(new Error(`sluice exited ${code}: ${text}`)));
  });
}

const cannon = (url) =>
  new Promise((resolve, reject) => autocannon({ url, connections: 32, duration: seconds }, (e, r) => (e ? reject(e) : resolve(r))));

async function run(url) {
  if (scenario === 'hit-1k') {
    await (await request(`${url}/static/1k`)).body.text();
    const r = await cannon(`${url}/static/1k`);
    return `${Math.round(r.requests.average)} req/s, ${r.requests.total} requests`;
  }
  if (scenario === 'miss-small') {
    const end = Date.now() + seconds * 1000;
    let n = 0;
    while (Date.now() < end) {
      const r = await request(`${url}/static/1k?p=${n++}`);
      await r.body.arrayBuffer();
    }
    return `${n} misses`;
  }
  if (scenario === 'miss-100m') {
    const t0 = performance.now();
    const r = await request(`${url}/big/${100 * 1024 * 1024}?p=${Date.now()}`);
    let bytes = 0;
    for await (const c of r.body) bytes += c.length;
    return `${bytes} bytes in ${(performance.now() - t0).toFixed(0)} ms`;
  }
  throw new Error(`unknown scenario ${scenario}`);
}

function summarise(file) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const self = new Map();
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const dt = new Map();
  for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  let total = 0;
  const groups = new Map();
  for (const [id, us] of dt) {
    const n = byId.get(id);
    const cf = n.callFrame;
    const file = cf.url.replace(/^file:\/\//, '').replace(/.*\/node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, 'nm:').replace(/.*\/packages\//, '');
    const key = `${cf.functionName || '(anon)'} ${file}:${cf.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
    const g = cf.functionName === '(idle)' ? 'idle' : cf.functionName === '(garbage collector)' ? 'gc' : cf.functionName === '(program)' ? 'program' : /txlog/.test(file) ? 'txlog' : /nm:undici/.test(file) ? 'undici' : /http1\//.test(file) ? 'http1' : /deliver\//.test(file) ? 'deliver' : /fetch\//.test(file) ? 'fetch' : /core\//.test(file) ? 'core-other' : file.startsWith('node:') ? 'node' : cf.url === '' ? 'native' : 'other';
    groups.set(g, (groups.get(g) ?? 0) + us);
  }
  const busy = total - (groups.get('idle') ?? 0);
  console.log(`profile ${file}\nbusy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms sampled`);
  console.log('groups (share of busy):', [...groups].filter(([g]) => g !== 'idle').sort((a, b) => b[1] - a[1]).map(([g, us]) => `${g} ${((us / busy) * 100).toFixed(1)}%`).join(', '));
  for (const [k, us] of [...self].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((us / busy) * 100).toFixed(1).padStart(5)}%  ${k}`);
  }
}

async function main() {
  const origin = await startSluice(['origin', ...(scenario === 'hit-1k' ? ['--fast'] : []), '--listen', '127.0.0.1:0']);
  const storage = scenario === 'miss-100m' ? ['--storage', '1GB'] : [];
  const proxy = await startProfiled(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', ...storage, ...extra]);
  console.log(await run(proxy.url));
  await new Promise((r) => {
    proxy.proc.removeAllListeners('exit');
    proxy.proc.once('exit', r);
    proxy.proc.kill('SIGTERM');
  });
  await stopAll();
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  for (const f of files) summarise(path.join(dir, f));
}

main().catch(async (e) => {
  console.error(`profile failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
