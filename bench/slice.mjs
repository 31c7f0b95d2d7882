// The slicer (segmented caching of large objects). Usage: node bench/slice.mjs [--quick] [--out FILE]
//   range-on-miss: a cold 100 MiB object, 1000 bytes asked for in the middle: time to first byte and origin bytes sent
//                  by then; direct, Sluice without slicing (fetches the whole object, answers when the bytes pass by)
//                  and Sluice with 1 MiB segments (fetches segment 0 for the meta object and the one segment needed)
//   full:          the whole 100 MiB object, cold then warm: time to last byte and origin bytes, same three targets
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { ROOT, machine, originBytes, percentiles, rangeOnMiss, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-slice.json`);
const MiB = 1024 * 1024;
const SIZE = quick ? 16 * MiB : 100 * MiB;
const RUNS = quick ? 1 : 3;

async function full(originUrl, targets) {
  const rows = [];
  for (const [mode, base] of targets) {
    const cold = [];
    const warm = [];
    const sent = [];
    for (let i = 0; i < RUNS; i++) {
      const url = `${base}/big/${SIZE}?full=${mode}-${i}-${Date.now()}`;
      for (const into of [cold, warm]) {
        const before = await originBytes(originUrl);
        const t0 = performance.now();
        const res = await request(url);
        let got = 0;
        for await (const c of res.body) got += c.length;
        if (res.statusCode !== 200 || got !== SIZE) throw new Error(`full ${mode}: status ${res.statusCode}, ${got} bytes`);
        into.push(performance.now() - t0);
        if (into === cold) sent.push((await originBytes(originUrl)) - before);
      }
      await sleep(200);
    }
    rows.push({ name: 'full', mode, objectBytes: SIZE, coldTtlbMs: percentiles(cold), warmTtlbMs: percentiles(warm), originBytesCold: sent.sort((a, b) => a - b)[Math.floor(sent.length / 2)] });
  }
  return rows;
}

async function main() {
  const m = machine();
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const plain = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB']);
  const sliced = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB', '--slice-size', '1MB', '--slice-url', '^/big/']);
  await sleep(200);
  const targets = [['direct', origin.url], ['sluice', plain.url], ['sliced', sliced.url]];
  const scenarios = [...(await rangeOnMiss(origin.url, targets, { size: SIZE, runs: RUNS })), ...(await full(origin.url, targets))];
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), quick, machine: m, segmentBytes: MiB, scenarios }, null, 2)}\n`);
  for (const s of scenarios) {
    if (s.name === 'range-on-miss') {
      console.log(`range-on-miss ${s.mode.padEnd(7)} ttfb p50 ${s.ttfbMs.p50} ms  origin bytes at ttfb ${(s.originBytesAtTtfb / MiB).toFixed(1)} MiB of ${s.objectBytes / MiB} MiB`);
    } else {
      console.log(`full          ${s.mode.padEnd(7)} cold ttlb p50 ${s.coldTtlbMs.p50} ms, warm ${s.warmTtlbMs.p50} ms  origin bytes cold ${(s.originBytesCold / MiB).toFixed(1)} MiB`);
    }
  }
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
