// Issue 2 benchmarks. Usage: node bench/run.mjs [--quick] [--miss-only] [--out FILE]
//   ttfb:   time to first body byte of a streamed miss (origin: 5 chunks 200 ms apart; and a Content-Length origin
//           writing 1280 bytes in 5 writes 50 ms apart), direct vs Sluice streamed vs Sluice buffered (doStream off),
//           runs interleaved; --miss-only stops after these
//   hits:   requests/s on cache hits of 1 KiB, 64 KiB, 1 MiB vs the same-run direct-to-origin baseline (fast static
//           origin on a bare socket), autocannon
//   coalesce: 100 concurrent cold requests -> origin requests
// Origins and proxies run as separate processes; the load generator runs here. When nginx is installed it is
// measured as a peer cache (1 worker, proxy_cache) on the hit scenario; --no-nginx skips it.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { Agent, request } from 'undici';
import { ROOT, machine, percentiles, sleep, startNginxCache, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const date = new Date().toISOString().slice(0, 10);
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${date}-core.json`);
const RUNS = quick ? 3 : 21;
const HIT_SECONDS = quick ? 1 : 5;
const ROUNDS = quick ? 1 : 3;
const CONNECTIONS = 32;

async function timeRequest(url, dispatcher) {
  const t0 = performance.now();
  const res = await request(url, { dispatcher });
  let ttfb;
  let bytes = 0;
  for await (const chunk of res.body) {
    if (ttfb === undefined) ttfb = performance.now() - t0;
    bytes += chunk.length;
  }
  return { ttfb: ttfb ?? performance.now() - t0, ttlb: performance.now() - t0, status: res.statusCode, bytes, cacheStatus: res.headers['cache-status'] };
}

/**
 * Time to first and last body byte of a miss, direct vs through Sluice streamed vs buffered, runs interleaved across
 * the three (direct, streamed, buffered, direct, ...) so drift on a shared machine hits each alike.
 */
async function ttfbScenario(name, route, bodyBytes, originUrl, streamedUrl, bufferedUrl) {
  const modes = [['direct', originUrl], ['streamed', streamedUrl], ['buffered', bufferedUrl]];
  const agents = modes.map(() => new Agent({ connections: 4 }));
  const ttfb = modes.map(() => []);
  const ttlb = modes.map(() => []);
  // One warm-up request each to open connections.
  for (const [i, [, base]] of modes.entries()) await timeRequest(`${base}/static/1`, agents[i]);
  for (let n = 0; n < RUNS; n++) {
    for (const [i, [mode, base]] of modes.entries()) {
      const r = await timeRequest(`${base}${route}&run=${mode}-${n}-${Date.now()}`, agents[i]);
      if (r.status !== 200 || r.bytes !== bodyBytes) throw new Error(`${name} ${mode}: status ${r.status}, ${r.bytes} bytes`);
      ttfb[i].push(r.ttfb);
      ttlb[i].push(r.ttlb);
    }
  }
  await Promise.all(agents.map((a) => a.close()));
  const rows = modes.map(([mode], i) => ({ name, mode, ttfbMs: percentiles(ttfb[i]), ttlbMs: percentiles(ttlb[i]) }));
  const direct = rows[0].ttfbMs.p50;
  for (const r of rows) r.ttfbDeltaVsDirectP50Ms = Math.round((r.ttfbMs.p50 - direct) * 100) / 100;
  return rows;
}

function cannon(url) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, duration: HIT_SECONDS, pipelining: 1 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * Hit throughput. The machine is shared and noisy, so each target is warmed up once, then direct, Sluice and nginx
 * are measured interleaved for ROUNDS rounds; the median round is reported with the spread.
 */
async function hitScenario(fastOriginUrl, proxyUrl, nginx) {
  const rows = [];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const size of ['1k', '64k', '1m']) {
    const p = `/static/${size}`;
    const targets = [['direct', fastOriginUrl], ['hit', proxyUrl]];
    if (nginx !== undefined) targets.push(['nginx-hit', nginx.url]);
    for (const [, base] of targets) {
      await (await request(`${base}${p}`)).body.text();
      await cannon(`${base}${p}`);
    }
    const runs = new Map(targets.map(([mode]) => [mode, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [mode, base] of targets) {
        const r = await cannon(`${base}${p}`);
        if (r.non2xx > 0 || r.errors > 0) throw new Error(`${mode} ${size}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        runs.get(mode).push(r);
      }
    }
    const summarise = (mode) => {
      const rs = runs.get(mode);
      const rps = rs.map((r) => Math.round(r.requests.average));
      const mid = rs[rps.indexOf(median(rps))];
      return {
        name: `hit-${size}`,
        mode,
        rps: median(rps),
        rpsRounds: rps,
        latencyMs: { p50: mid.latency.p50, p90: mid.latency.p90, p99: mid.latency.p99 },
        throughputMBps: Math.round((mid.throughput.average / 1024 / 1024) * 10) / 10,
      };
    };
    const d = summarise('direct');
    rows.push(d);
    for (const [mode] of targets.slice(1)) {
      const row = summarise(mode);
      row.ratioToDirect = Math.round((row.rps / d.rps) * 100) / 100;
      // Per-round ratios (each against the direct run of the same round) show the spread.
      row.ratioRounds = row.rpsRounds.map((v, i) => Math.round((v / d.rpsRounds[i]) * 100) / 100);
      if (mode === 'nginx-hit') row.peer = nginx.version;
      rows.push(row);
    }
  }
  return rows;
}

async function coalesceScenario(proxyUrl, originUrl) {
  const before = await (await request(`${originUrl}/stats`)).body.json();
  const agent = new Agent({ connections: 110 });
  const url = `${proxyUrl}/chunked?chunks=3&delay=100&size=64&first=delay&run=coalesce-${Date.now()}`;
  const results = await Promise.all(Array.from({ length: 100 }, () => timeRequest(url, agent)));
  await agent.close();
  const after = await (await request(`${originUrl}/stats`)).body.json();
  const originRequests = (after.perPath['/chunked'] ?? 0) - (before.perPath['/chunked'] ?? 0);
  return [{
    name: 'coalesce-100-cold',
    mode: 'streamed',
    clients: 100,
    originRequests,
    allComplete: results.every((r) => r.status === 200 && r.bytes === 192),
    ttfbMs: percentiles(results.map((r) => r.ttfb)),
  }];
}

async function main() {
  const m = machine();
  console.log(`sluice bench (${quick ? 'quick' : 'full'}) on ${m.cores} cores, ${m.cpu}, node ${m.node}`);
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const fast = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
  const streamed = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
  const buffered = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--no-stream']);
  const hitProxy = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', fast.url, '--quiet']);
  const nginx = argv.includes('--no-nginx') ? undefined : await startNginxCache(fast.url, 18000 + Math.floor(Math.random() * 1000));
  await sleep(200);
  const scenarios = [];
  console.log('ttfb of a streamed miss ...');
  // Chunked origin: 5 chunks of 64 bytes 200 ms apart. Content-Length origin: 1280 bytes in 5 writes 50 ms apart.
  scenarios.push(...(await ttfbScenario('miss-5-chunks-200ms', '/chunked?chunks=5&delay=200&size=64', 320, origin.url, streamed.url, buffered.url)));
  scenarios.push(...(await ttfbScenario('miss-cl-5-writes-50ms', '/rate/1280?bps=5120', 1280, origin.url, streamed.url, buffered.url)));
  if (argv.includes('--miss-only')) {
    await finish(m, scenarios, undefined);
    return;
  }
  console.log('hit throughput ...');
  scenarios.push(...(await hitScenario(fast.url, hitProxy.url, nginx)));
  console.log('coalescing ...');
  scenarios.push(...(await coalesceScenario(streamed.url, origin.url)));
  await finish(m, scenarios, nginx);
}

/** Stops the processes, writes the result and prints it. */
async function finish(m, scenarios, nginx) {
  await stopAll();
  const result = {
    date: new Date().toISOString(),
    quick,
    machine: m,
    settings: { runs: RUNS, hitSeconds: HIT_SECONDS, hitRounds: ROUNDS, connections: CONNECTIONS, loadGenerator: 'autocannon 8, in the bench process' },
    peer: nginx === undefined ? null : { name: nginx.version, config: 'worker_processes 1; proxy_cache; keepalive 64 to the origin' },
    scenarios,
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log('');
  for (const s of scenarios) {
    if (s.ttfbMs && s.name.startsWith('miss')) {
      console.log(`${s.name.padEnd(22)} ${s.mode.padEnd(9)} ttfb p50 ${String(s.ttfbMs.p50).padStart(8)} ms  p90 ${String(s.ttfbMs.p90).padStart(8)} ms  ttlb p50 ${String(s.ttlbMs.p50).padStart(8)} ms  (vs direct ${s.ttfbDeltaVsDirectP50Ms >= 0 ? '+' : ''}${s.ttfbDeltaVsDirectP50Ms} ms)`);
    } else if (s.rps !== undefined) {
      console.log(`${s.name.padEnd(22)} ${s.mode.padEnd(9)} ${String(s.rps).padStart(7)} req/s  p50 ${s.latencyMs.p50} ms  p99 ${s.latencyMs.p99} ms  ${s.throughputMBps} MB/s${s.ratioToDirect !== undefined ? `  ratio ${s.ratioToDirect} (rounds ${s.ratioRounds.join(', ')})` : ''}`);
    } else {
      console.log(`${s.name.padEnd(22)} ${s.mode.padEnd(9)} origin requests ${s.originRequests} for ${s.clients} clients, all complete: ${s.allComplete}, ttfb p50 ${s.ttfbMs.p50} ms`);
    }
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
