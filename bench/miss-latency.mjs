// Miss first-byte latency with the JIT warm (issue 16). Usage: node bench/miss-latency.mjs [--quick] [--base DIR] [--out FILE]
// A raw-socket client (one kept-alive connection per target) asks for a new URL each time (/static/1k?u=..., a miss
// for every cache) and times the first response byte, direct to the origin, through Sluice and through nginx
// (proxy_cache, when installed) and Varnish (when installed). Each cache first serves 3000 misses (the miss path
// compiled by the JIT, as on a proxy in service; bench/run.mjs measures 20-40 misses of a freshly started proxy), then
// two pacings, interleaved target by target: `idle` (30 ms between requests: every process sleeps and is woken, as
// for sparse misses) and `busy` (the next request as soon as the answer is in). Medians and p90 per pacing and target.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { ROOT, freePort, machine, percentiles, sleep, startNginxCache, startSluice, startVarnish, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-miss-latency.json`);
const WARM = quick ? 300 : 3000;
const RUNS = quick ? 20 : 200;

function connect(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** Time to the first response byte of one GET on the kept-alive socket; waits for the whole 1 KiB response. */
function firstByte(s, target) {
  return new Promise((resolve, reject) => {
    let first;
    let buf = Buffer.alloc(0);
    const t0 = performance.now();
    const onData = (d) => {
      first ??= performance.now() - t0;
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      const m = /content-length: *(\d+)/i.exec(buf.subarray(0, end < 0 ? buf.length : end).toString('latin1'));
      if (end >= 0 && m !== null && buf.length >= end + 4 + Number(m[1])) {
        s.off('data', onData);
        s.off('error', reject);
        resolve(first);
      }
    };
    s.on('data', onData);
    s.on('error', reject);
    s.write(`GET /static/1k?u=${target}-${Date.now()}-${Math.random()} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

async function warm(url) {
  const agent = new Agent({ connections: 8 });
  let i = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (i < WARM) await (await request(`${url}/static/1k?warm=${i++}-${Date.now()}`, { dispatcher: agent })).body.dump();
  }));
  await agent.close();
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const targets = [['direct', origin.url]];
  const sluice = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
  targets.push(['sluice', sluice.url]);
  // --base DIR: another built checkout's Sluice as one more target, interleaved with the rest (a same-run before/after).
  const baseIdx = argv.indexOf('--base');
  if (baseIdx >= 0) {
    const base = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'], path.resolve(argv[baseIdx + 1]));
    targets.push(['base', base.url]);
  }
  const nginx = argv.includes('--no-nginx') ? undefined : await startNginxCache(origin.url, await freePort());
  if (nginx !== undefined) targets.push(['nginx', nginx.url]);
  const varnish = argv.includes('--no-varnish') ? undefined : await startVarnish(origin.url, await freePort());
  if (varnish !== undefined) targets.push(['varnish', varnish.url]);
  console.log(`miss latency on ${m.cores} cores, node ${m.node}, load ${m.loadavgAtStart.join(' ')}: ${targets.map((t) => t[0]).join(', ')}`);
  for (const [, url] of targets) await warm(url);
  const sockets = await Promise.all(targets.map(([, url]) => connect(url)));
  const scenarios = [];
  for (const [pacing, gap] of [['idle', 30], ['busy', 0]]) {
    const times = targets.map(() => []);
    for (let n = 0; n < RUNS; n++) {
      for (const [i, [name]] of targets.entries()) {
        times[i].push(await firstByte(sockets[i], name));
        if (gap > 0) await sleep(gap);
      }
    }
    const direct = percentiles(times[0]).p50;
    for (const [i, [name]] of targets.entries()) {
      const p = percentiles(times[i]);
      scenarios.push({ name: 'miss-first-byte', pacing, mode: name, runs: RUNS, firstByteMs: p, deltaVsDirectP50Ms: Math.round((p.p50 - direct) * 1000) / 1000 });
    }
  }
  for (const s of sockets) s.destroy();
  await stopAll();
  for (const s of scenarios) console.log(`${s.pacing.padEnd(5)} ${s.mode.padEnd(8)} first byte p50 ${s.firstByteMs.p50} ms  p90 ${s.firstByteMs.p90} ms  (vs direct ${s.deltaVsDirectP50Ms >= 0 ? '+' : ''}${s.deltaVsDirectP50Ms} ms)`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), quick, machine: m, warmMisses: WARM, peers: { nginx: nginx?.version ?? 'not installed', varnish: varnish?.version ?? 'not installed' }, scenarios }, null, 2)}\n`);
  console.log(`written ${out}`);
}

main().catch(async (e) => {
  console.error(e);
  await stopAll();
  process.exit(1);
});
