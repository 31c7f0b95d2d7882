// Origin-connection benchmark (issue 4). Usage: node bench/origin.mjs [--quick] [--out FILE]
// Pass-mode requests/s through Sluice with keep-alive to the origin vs one connection per request, and how many
// origin sockets 10 000 requests open (goal: no more than the pool size, 64 by default). Requests carry a Cookie,
// so the builtin policy passes them: every request reaches the origin.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-origin.json`);
const AMOUNT = quick ? 1000 : 10_000;
const CONNECTIONS = 32;

const originStats = async (url) => (await (await request(`${url}/stats`)).body.json());

function cannon(url) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, amount: AMOUNT, headers: { cookie: 'session=1' } }, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-origin-bench-'));
  const oneShot = path.join(dir, 'one-connection-per-request.mjs');
  writeFileSync(oneShot, `export default { backends: [{ url: '${origin.url}', keepAlive: false }] };\n`);
  const keepAlive = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
  const perRequest = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--config', oneShot, '--quiet']);
  await sleep(200);
  const rows = [];
  for (const [mode, target] of [['direct', origin.url], ['keep-alive', keepAlive.url], ['connection-per-request', perRequest.url]]) {
    // No warm-up: the connections the proxy opens from cold are what is counted.
    const before = await originStats(origin.url);
    const r = await cannon(`${target}/static/1k`);
    const after = await originStats(origin.url);
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`${mode}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    rows.push({
      name: 'pass-1k',
      mode,
      requests: r.requests.total,
      rps: Math.round(r.requests.total / r.duration),
      latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99 },
      originRequests: after.requests - before.requests - 1,
      originConnections: after.connections - before.connections,
    });
  }
  const direct = rows[0].rps;
  for (const r of rows.slice(1)) r.ratioToDirect = Math.round((r.rps / direct) * 100) / 100;
  await stopAll();
  const result = { date: new Date().toISOString(), quick, machine: m, settings: { amount: AMOUNT, clientConnections: CONNECTIONS, poolSize: 64 }, scenarios: rows };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  for (const r of rows) {
    console.log(`${r.mode.padEnd(24)} ${String(r.rps).padStart(6)} req/s  p99 ${r.latencyMs.p99} ms  origin: ${r.originRequests} requests on ${r.originConnections} new connections${r.ratioToDirect ? `  ratio ${r.ratioToDirect}` : ''}`);
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
