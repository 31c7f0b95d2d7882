// Streaming benchmarks (issue 3). Usage: node bench/streaming.mjs [--quick] [--out FILE] [--scenario bulk|transit [--pin]
//   [--base DIR] [--transit-runs N] [--transit-args "PROXY FLAGS"]]
//   range-on-miss: a cold 100 MiB object, a client asks for 1000 bytes in the middle: time to first byte and how many
//                  bytes the origin had sent by then; direct (the origin answers the Range itself), Sluice, and nginx
//                  (proxy_cache) when installed; rounds interleaved across targets, medians, ratios to direct and nginx
//   miss-whole:    a cold 100 MiB object read whole: time to first and last byte, direct / Sluice / nginx interleaved,
//                  Sluice's CPU per MiB (issue 16: last byte within 1.3x of direct)
//   transit:       peak RSS growth of a fresh proxy while a 1 GiB uncacheable body is read by a client at ~50 MB/s,
//                  5 rounds (a fresh proxy each; --base DIR: that checkout's too, interleaved), median and spread,
//                  the growth by mapping (brk heap, thread arenas, other anonymous) at the peak
//   adaptive:      time to last byte of misses from 100 B to 1 MiB (Content-Length), streamed vs delivered whole,
//                  the measurement behind the streamMinBytes default
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { loadavg } from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { ROOT, cpuMicros, machine, percentiles, pin, processTree, rangeOnMiss, sleep, startNginxCache, startSluice, stopAll, timedGet } from './lib.mjs';

/** User and system CPU time (ms, from /proc/PID/stat utime and stime, 10 ms ticks) of a pid or a list of pids. */
function userSysMs(pids) {
  let user = 0;
  let sys = 0;
  for (const pid of typeof pids === 'number' ? [pids] : pids) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      user += Number(f[11]) * 10;
      sys += Number(f[12]) * 10;
    } catch {
      // gone
    }
  }
  return { user, sys };
}

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const date = new Date().toISOString().slice(0, 10);
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${date}-streaming.json`);
const MiB = 1024 * 1024;
const ROUNDS = quick ? 1 : 5;
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
// --scenario transit runs only the pass-memory rounds; --base DIR adds another built checkout's proxy to them;
// --transit-runs N (default 5); --transit-args "..." passes proxy flags to this tree's (e.g. "--young-gc 0 --wasm-tier-up").
const only = opt('--scenario');
const base = opt('--base');
const TRANSIT_RUNS = Number(opt('--transit-runs') ?? 5);
const transitArgs = (opt('--transit-args') ?? '').split(' ').filter((a) => a !== '');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratio = (a, b) => (b > 0 ? Math.round((a / b) * 100) / 100 : null);

/**
 * The pass's memory (issue 16), on proxies of their own: one that served the big misses before holds memory the
 * allocator freed and reuses, which would hide the growth. Each round starts a fresh proxy per target (this tree,
 * and `--base DIR`'s when given, interleaved), passes one `size` uncacheable body to a client throttled to ~50 MB/s,
 * and records the peak RSS growth and, at that peak, which mappings grew (/proc/PID/smaps): the brk heap (glibc's
 * main arena: socket read buffers), glibc's per-thread arenas (V8's compiler threads), and other anonymous mappings
 * (V8 heap pages, large allocations). Median and spread over the rounds.
 */
async function transit(originUrl) {
  const size = quick ? 64 * MiB : 1024 * MiB;
  const runs = quick ? 1 : TRANSIT_RUNS;
  const targets = [['sluice', undefined]];
  if (base !== undefined) targets.push(['sluice-base', base]);
  const per = new Map(targets.map(([mode]) => [mode, []]));
  for (let r = 0; r < runs; r++) {
    for (const [mode, root] of targets) {
      const proxy = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', originUrl, '--quiet', ...(root === undefined ? transitArgs : [])], root);
      await sleep(500);
      const row = await slowPass(proxy, size);
      await proxy.stop();
      per.get(mode).push(row);
      console.log(`  transit ${mode.padEnd(11)} round ${r + 1}/${runs}: +${row.rssPeakGrowthMiB} MiB, CPU ${row.cpuMicrosPerMiB} us/MiB (${Object.entries(row.growthByMappingMiB).map(([k, v]) => `${k} ${v}`).join(', ')}), load ${row.loadavg}`);
    }
  }
  return targets.map(([mode]) => {
    const rows = per.get(mode);
    const growth = rows.map((x) => x.rssPeakGrowthMiB);
    const kinds = [...new Set(rows.flatMap((x) => Object.keys(x.growthByMappingMiB)))];
    return {
      name: 'transit-pass-slow-client',
      mode,
      state: 'fresh',
      bodyBytes: size,
      rounds: runs,
      proxyArgs: transitArgs,
      clientMBps: median(rows.map((x) => x.clientMBps)),
      rssBaselineMiB: median(rows.map((x) => x.rssBaselineMiB)),
      rssPeakGrowthMiB: median(growth),
      rssPeakGrowthMinMiB: Math.min(...growth),
      rssPeakGrowthMaxMiB: Math.max(...growth),
      cpuMicrosPerMiB: median(rows.map((x) => x.cpuMicrosPerMiB)),
      growthByMappingMedianMiB: Object.fromEntries(kinds.map((k) => [k, median(rows.map((x) => x.growthByMappingMiB[k] ?? 0))])),
      runs: rows,
      transitBuffer: '1MB (default)',
    };
  });
}

/** RSS (kB) of each mapping of a process, by kind (see transit). */
function mappingsKiB(pid) {
  const kinds = {};
  let kind;
  const lines = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(lines[i]);
    if (m !== null) {
      const start = BigInt(`0x${m[1]}`);
      if (m[4] === '[heap]') kind = 'brk-heap';
      else if (m[4] !== '') kind = m[4].startsWith('/') ? 'files' : 'other-named';
      // glibc's thread arenas: 64 MiB-aligned heaps, read-write at the start, the rest of the 64 MiB reserved.
      else if (start % (64n * BigInt(MiB)) === 0n && m[3] === 'rw-p') kind = 'thread-arenas';
      else kind = 'other-anon';
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(lines[i]);
    if (r !== null && kind !== undefined) kinds[kind] = (kinds[kind] ?? 0) + Number(r[1]);
  }
  return kinds;
}

/** One uncacheable body of `size` read by a raw-socket client at `rate` bytes/s; the proxy's peak RSS growth. */
async function slowPass(proxy, size, rate = 50 * 1000 * 1000) {
  // RSS as the sum of the mappings' Rss in /proc/PID/smaps (VmRSS is the same sum, read at another instant), so the
  // growth at the peak is exactly the sum of its breakdown.
  const total = (kinds) => Object.values(kinds).reduce((a, b) => a + b, 0) * 1024;
  const baseMaps = mappingsKiB(proxy.pid);
  const baseline = total(baseMaps);
  let peak = baseline;
  let peakMaps = baseMaps;
  const sampler = setInterval(() => {
    const maps = mappingsKiB(proxy.pid);
    if (total(maps) > peak) {
      peak = total(maps);
      peakMaps = maps;
    }
  }, 50);
  const u = new URL(proxy.url);
  const c0 = cpuMicros(proxy.pid);
  const t0 = performance.now();
  const received = await new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let bytes = 0;
    s.on('data', (d) => {
      bytes += d.length;
      // Throttle: pause when ahead of the target rate.
      const allowed = ((performance.now() - t0) / 1000) * rate;
      if (bytes > allowed) {
        s.pause();
        setTimeout(() => s.resume(), Math.ceil(((bytes - allowed) / rate) * 1000));
      }
    });
    s.on('end', () => resolve(bytes));
    s.on('error', reject);
    s.write(`GET /big/${size}?cc=private&run=${Date.now()} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  });
  clearInterval(sampler);
  const cpu = cpuMicros(proxy.pid) - c0;
  if (received < size) throw new Error(`transit: received ${received} of ${size} body bytes`);
  const seconds = (performance.now() - t0) / 1000;
  const kinds = [...new Set([...Object.keys(baseMaps), ...Object.keys(peakMaps)])];
  return {
    receivedBytes: received,
    clientMBps: Math.round((received / seconds / 1e6) * 10) / 10,
    rssBaselineMiB: Math.round((baseline / MiB) * 10) / 10,
    rssPeakGrowthMiB: Math.round(((peak - baseline) / MiB) * 10) / 10,
    cpuMicrosPerMiB: Math.round(cpu / (size / MiB)),
    growthByMappingMiB: Object.fromEntries(kinds.map((k) => [k, Math.round((((peakMaps[k] ?? 0) - (baseMaps[k] ?? 0)) / 1024) * 10) / 10])),
    loadavg: loadavg()[0].toFixed(1),
  };
}

/**
 * range-on-miss with rounds interleaved across targets (direct, sluice, nginx, direct, ...), so drift on a shared
 * machine hits each alike; one cold object per target per round (rangeOnMiss with runs: 1), medians of the rounds.
 */
async function rangeRounds(originUrl, targets, size, proxyPid) {
  const per = new Map(targets.map(([mode]) => [mode, { ttfb: [], ttlb: [], sent: [], cpu: [], user: [], sys: [] }]));
  for (let r = -1; r < ROUNDS; r++) {
    for (const target of targets) {
      const pid = target[2] ?? (target[0] === 'sluice' ? proxyPid : undefined);
      const c0 = pid !== undefined ? cpuMicros(pid) : 0;
      const us0 = pid !== undefined ? userSysMs(pid) : undefined;
      const [row] = await rangeOnMiss(originUrl, [target], { size, runs: 1 });
      // Round -1 warms every target up (JIT, connections) and is not counted.
      if (r < 0) continue;
      const p = per.get(target[0]);
      p.ttfb.push(row.ttfbMs.p50);
      p.ttlb.push(row.ttlbMs.p50);
      p.sent.push(row.originBytesAtTtfb);
      if (pid !== undefined) {
        // Let the fetch of the rest of the object end, so its CPU is counted (per MiB of the whole object).
        await sleep(quick ? 300 : 1500);
        p.cpu.push(Math.round((cpuMicros(pid) - c0) / (size / MiB)));
        const us1 = userSysMs(pid);
        p.user.push(Math.round(((us1.user - us0.user) * 1000) / (size / MiB)));
        p.sys.push(Math.round(((us1.sys - us0.sys) * 1000) / (size / MiB)));
      }
    }
  }
  const rows = targets.map(([mode]) => {
    const p = per.get(mode);
    return { name: 'range-on-miss', mode, objectBytes: size, rangeStart: size / 2, rounds: ROUNDS, ttfbMs: percentiles(p.ttfb), ttlbMs: percentiles(p.ttlb), ttfbRoundsMs: p.ttfb.map((x) => Math.round(x * 10) / 10), originBytesAtTtfb: median(p.sent), ...(p.cpu.length > 0 ? { cpuMicrosPerMiB: median(p.cpu), cpuRounds: p.cpu, userMicrosPerMiB: median(p.user), sysMicrosPerMiB: median(p.sys) } : {}) };
  });
  const p50 = (mode) => rows.find((r) => r.mode === mode)?.ttfbMs.p50;
  for (const r of rows) {
    r.ttfbVsDirect = ratio(r.ttfbMs.p50, p50('direct'));
    if (p50('nginx') !== undefined) r.ttfbVsNginx = ratio(r.ttfbMs.p50, p50('nginx'));
  }
  return rows;
}

/** A cold `size`-byte object read whole through each target, rounds interleaved: first and last byte, medians. */
async function missWhole(targets, size, proxyPid) {
  const per = new Map(targets.map(([mode]) => [mode, { ttfb: [], ttlb: [], cpu: [], user: [], sys: [] }]));
  for (let r = -1; r < ROUNDS; r++) {
    for (const [mode, base, targetPid] of targets) {
      const pid = targetPid ?? (mode === 'sluice' ? proxyPid : undefined);
      const c0 = pid !== undefined ? cpuMicros(pid) : 0;
      const us0 = pid !== undefined ? userSysMs(pid) : undefined;
      const { status, bytes: got, ttfb: first, ttlb } = await timedGet(`${base}/big/${size}?whole=${mode}-${r}-${Date.now()}`);
      if (status !== 200 || got !== size) throw new Error(`miss-whole ${mode}: status ${status}, ${got} bytes`);
      await sleep(200);
      // Round -1 warms every target up (JIT, connections) and is not counted.
      if (r < 0) continue;
      const p = per.get(mode);
      p.ttfb.push(first);
      p.ttlb.push(ttlb);
      if (pid !== undefined) {
        p.cpu.push(Math.round((cpuMicros(pid) - c0) / (size / MiB)));
        const us1 = userSysMs(pid);
        p.user.push(Math.round(((us1.user - us0.user) * 1000) / (size / MiB)));
        p.sys.push(Math.round(((us1.sys - us0.sys) * 1000) / (size / MiB)));
      }
    }
  }
  const rows = targets.map(([mode]) => {
    const p = per.get(mode);
    return { name: 'miss-whole', mode, objectBytes: size, rounds: ROUNDS, ttfbMs: percentiles(p.ttfb), ttlbMs: percentiles(p.ttlb), ttlbRoundsMs: p.ttlb.map((x) => Math.round(x)), ...(p.cpu.length > 0 ? { cpuMicrosPerMiB: median(p.cpu), cpuRounds: p.cpu, userMicrosPerMiB: median(p.user), sysMicrosPerMiB: median(p.sys) } : {}) };
  });
  const direct = rows.find((r) => r.mode === 'direct').ttlbMs.p50;
  for (const r of rows) r.ttlbVsDirect = ratio(r.ttlbMs.p50, direct);
  return rows;
}

async function adaptive(streamedUrl, bufferedUrl) {
  const sizes = ['100', '1k', '4k', '16k', '64k', '256k', '1m'];
  const n = quick ? 5 : 40;
  const rows = [];
  for (const size of sizes) {
    for (const [mode, base] of [['streamed', streamedUrl], ['buffered', bufferedUrl]]) {
      const agent = new Agent({ connections: 1 });
      await (await request(`${base}/static/1`, { dispatcher: agent })).body.text();
      const ttlb = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const r = await request(`${base}/static/${size}?m=${mode}-${i}-${Date.now()}`, { dispatcher: agent });
        await r.body.arrayBuffer();
        ttlb.push(performance.now() - t0);
      }
      await agent.close();
      rows.push({ name: `adaptive-${size}`, mode, ttlbMs: percentiles(ttlb) });
    }
  }
  return rows;
}

let pinned = false;

async function main() {
  const m = machine();
  console.log(`sluice streaming bench (${quick ? 'quick' : 'full'}${only === undefined ? '' : `, ${only} only`}) on ${m.cores} cores, node ${m.node}, load ${loadavg()[0].toFixed(1)}`);
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const scenarios = [];
  let nginx;
  if (only === 'bulk') {
    // Only the two bulk-miss scenarios (issue 16): range on a cold object and the whole cold object; with --base, that
    // checkout's proxy as one more target in the same interleaved rounds.
    const proxy = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
    nginx = argv.includes('--no-nginx') ? undefined : await startNginxCache(origin.url, 19000 + Math.floor(Math.random() * 1000));
    const targets = [['direct', origin.url], ['sluice', proxy.url]];
    if (base !== undefined) {
      const b = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'], base);
      targets.push(['sluice-base', b.url, b.pid]);
    }
    // nginx's CPU too (master and its one worker): what a MiB costs it, beside Sluice's (session 10).
    if (nginx !== undefined) targets.push(['nginx', nginx.url, processTree(nginx.pid)]);
    // --pin: every server (origin, proxies, nginx's master and worker) on CPU 0, this process (the client) on CPU 1, as
    // issue 16's table was measured: a proxy's CPU then adds to the wall time instead of running beside the origin.
    if (argv.includes('--pin')) {
      const servers = [origin.pid, proxy.pid, ...targets.slice(2).flatMap((t) => [t[2]].flat())].filter((x) => x !== undefined);
      pinned = pin(servers, '0') && pin([process.pid], '1');
      console.log(pinned ? `pinned: servers ${servers.join(',')} on CPU 0, the client on CPU 1` : '--pin failed: ran unpinned');
    }
    await sleep(200);
    console.log('range on a cold object ...');
    scenarios.push(...(await rangeRounds(origin.url, targets, quick ? 16 * MiB : 100 * MiB, proxy.pid)));
    console.log('whole cold object ...');
    scenarios.push(...(await missWhole(targets, quick ? 16 * MiB : 100 * MiB, proxy.pid)));
  } else if (only === undefined) {
    const fast = await startSluice(['origin', '--fast', '--listen', '127.0.0.1:0']);
    const proxy = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet']);
    nginx = argv.includes('--no-nginx') ? undefined : await startNginxCache(origin.url, 19000 + Math.floor(Math.random() * 1000));
    const streamed = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', fast.url, '--quiet']);
    const buffered = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', fast.url, '--quiet', '--stream-min-bytes', '1g']);
    await sleep(200);
    console.log('range on a cold object ...');
    const targets = [['direct', origin.url], ['sluice', proxy.url]];
    if (nginx !== undefined) targets.push(['nginx', nginx.url]);
    scenarios.push(...(await rangeRounds(origin.url, targets, quick ? 16 * MiB : 100 * MiB, proxy.pid)));
    console.log('whole cold object ...');
    scenarios.push(...(await missWhole(targets, quick ? 16 * MiB : 100 * MiB, proxy.pid)));
    console.log('transit buffer ...');
    scenarios.push(...(await transit(origin.url)));
    console.log('adaptive streaming sweep ...');
    scenarios.push(...(await adaptive(streamed.url, buffered.url)));
  } else if (only === 'transit') {
    console.log('transit buffer ...');
    scenarios.push(...(await transit(origin.url)));
  } else {
    throw new Error(`--scenario: "${only}" is not one of: transit, bulk`);
  }
  await stopAll();
  const result = { date: new Date().toISOString(), quick, scenario: only ?? 'all', pinned, base: base ?? null, machine: m, peer: nginx ? { name: nginx.version, config: 'worker_processes 1; proxy_cache (no slice)' } : null, scenarios };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  for (const s of scenarios) {
    if (s.name === 'range-on-miss') {
      console.log(`range-on-miss  ${s.mode.padEnd(8)} ttfb p50 ${s.ttfbMs.p50} ms (x${s.ttfbVsDirect} direct${s.ttfbVsNginx === undefined ? '' : `, x${s.ttfbVsNginx} nginx`})  origin bytes at ttfb ${(s.originBytesAtTtfb / MiB).toFixed(1)} MiB of ${s.objectBytes / MiB} MiB${s.cpuMicrosPerMiB === undefined ? '' : `  CPU ${s.cpuMicrosPerMiB} us/MiB (user ${s.userMicrosPerMiB}, sys ${s.sysMicrosPerMiB})`}`);
    } else if (s.name === 'miss-whole') {
      console.log(`miss-whole     ${s.mode.padEnd(8)} ttfb p50 ${s.ttfbMs.p50} ms  ttlb p50 ${s.ttlbMs.p50} ms (x${s.ttlbVsDirect} direct)${s.cpuMicrosPerMiB === undefined ? '' : `  CPU ${s.cpuMicrosPerMiB} us/MiB (user ${s.userMicrosPerMiB}, sys ${s.sysMicrosPerMiB})`}`);
    } else if (s.name.startsWith('transit')) {
      console.log(`transit        ${s.mode.padEnd(11)} ${s.bodyBytes / MiB} MiB at ${s.clientMBps} MB/s, fresh proxy: RSS growth median ${s.rssPeakGrowthMiB} MiB (${s.rssPeakGrowthMinMiB}-${s.rssPeakGrowthMaxMiB} over ${s.rounds}; baseline ${s.rssBaselineMiB} MiB), CPU ${s.cpuMicrosPerMiB} us/MiB; by mapping ${Object.entries(s.growthByMappingMedianMiB).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    } else {
      console.log(`${s.name.padEnd(14)} ${s.mode.padEnd(8)} ttlb p50 ${s.ttlbMs.p50} ms  p90 ${s.ttlbMs.p90} ms`);
    }
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
