#!/usr/bin/env node
// A log output that stalls, this checkout against a baseline checkout, interleaved in the same run (session 7 attack):
//   stdout-unread: `sluice proxy --log text` whose stdout pipe nobody reads, N requests (half hits, half uncacheable),
//                  then SIGTERM: RSS growth, proxy CPU per request (schedstat), log_dropped, exit code and whether it
//                  exited within 20 s.
//   fifo-stuck:    `--log-file` on a FIFO whose reader never reads, requests with a 30 KB header (62 KB of log each)
//                  until 64 MiB wait, then SIGTERM: whether and how the process exits (killed after 20 s if not).
// Usage: node bench/log-stall.mjs --base /work/s7-base [--rounds 2] [--requests 10000] [--out FILE]
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { cpuNanos, machine, ROOT } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const BASE = opt('base', undefined);
const ROUNDS = Number(opt('rounds', 2));
const N = Number(opt('requests', 10000));
const OUT = opt('out', path.join(ROOT, 'bench/results/2026-12-01-s7-attack-log-stall.json'));
const targets = [{ name: 'head', root: ROOT }, ...(BASE === undefined ? [] : [{ name: 'base', root: BASE }])];

const body = Buffer.alloc(1024, 'x');
const origin = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
  res.writeHead(200, { 'content-length': body.length, 'cache-control': req.url === '/hit' ? 'max-age=600' : 'no-store' });
  res.end(body);
});
await new Promise((r) => origin.listen(0, '127.0.0.1', r));
const originUrl = `http://127.0.0.1:${origin.address().port}`;
const rss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const load = () => os.loadavg()[0];

function start(root, extra) {
  const p = spawn(process.execPath, [path.join(root, 'packages/cli/bin/run.js'), 'proxy', '--backend', originUrl, '--listen', '127.0.0.1:0', '--quiet', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const onOut = (d) => (out += d);
  p.stdout.on('data', onOut);
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m === null) return;
      clearInterval(t);
      p.stdout.off('data', onOut);
      p.stdout.pause(); // nobody reads stdout from here on
      resolve({ p, url: m[1], exited, err: () => err });
    }, 10);
    exited.then((e) => reject(new Error(`exited ${JSON.stringify(e)}: ${err}`)));
  });
}

async function burst(url, n, headers = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let next = 0;
  let ok = 0;
  let maxMs = 0;
  const one = (p) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const rq = http.get(new URL(p, url), { agent, headers }, (r) => {
        r.resume();
        r.on('end', () => {
          maxMs = Math.max(maxMs, performance.now() - t0);
          resolve(r.statusCode);
        });
      });
      rq.setTimeout(30000, () => rq.destroy(new Error('stalled 30 s')));
      rq.on('error', reject);
    });
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) {
        const k = next++;
        if ((await one(k % 2 === 0 ? '/hit' : `/p${k}`)) === 200) ok++;
      }
    }),
  );
  agent.destroy();
  return { ok, maxMs };
}

async function stop(px) {
  const t0 = performance.now();
  px.p.kill('SIGTERM');
  let killed = false;
  const t = setTimeout(() => {
    killed = true;
    px.p.kill('SIGKILL');
  }, 20000);
  const e = await px.exited;
  clearTimeout(t);
  return { exitCode: e.code, signal: e.sig, exitedWithin20s: !killed, stopMs: Math.round(performance.now() - t0), stderr: px.err().trim().split('\n').slice(-2) };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'log-stall-'));
const results = [];
for (let round = 0; round < ROUNDS; round++) {
  for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
    // stdout-unread
    {
      const px = await start(t.root, ['--log', 'text']);
      const pid = px.p.pid;
      await burst(px.url, 200);
      const rss0 = rss(pid);
      const cpu0 = cpuNanos(pid);
      const l0 = load();
      const b = await burst(px.url, N);
      const r = { scenario: 'stdout-unread', target: t.name, round, requests: N, ok: b.ok, maxRequestMs: Math.round(b.maxMs), rssStartMiB: +(rss0 / 2 ** 20).toFixed(1), rssGrowthMiB: +((rss(pid) - rss0) / 2 ** 20).toFixed(1), cpuUsPerRequest: +((cpuNanos(pid) - cpu0) / 1000 / N).toFixed(1), load: [+l0.toFixed(1), +load().toFixed(1)] };
      Object.assign(r, await stop(px));
      const dropped = /(\d+) groups? dropped/.exec(r.stderr.join('\n'));
      r.logDropped = dropped === null ? 0 : Number(dropped[1]);
      console.log(JSON.stringify(r));
      results.push(r);
    }
    // fifo-stuck
    {
      const fifo = path.join(dir, `f-${t.name}-${round}`);
      execFileSync('mkfifo', [fifo]);
      const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      const px = await start(t.root, ['--log', 'text', '--log-file', fifo, '--shutdown-timeout', '1s']);
      const b = await burst(px.url, 1400, { 'x-pad': 'a'.repeat(30000) });
      const r = { scenario: 'fifo-stuck', target: t.name, round, requests: 1400, ok: b.ok, rssMiB: +(rss(px.p.pid) / 2 ** 20).toFixed(1), load: +load().toFixed(1) };
      Object.assign(r, await stop(px));
      closeSync(rfd);
      console.log(JSON.stringify(r));
      results.push(r);
    }
  }
}
rmSync(dir, { recursive: true, force: true });
origin.close();
writeFileSync(OUT, `${JSON.stringify({ bench: 'log-stall', date: new Date().toISOString(), machine: machine(), base: BASE, rounds: ROUNDS, requests: N, results }, null, 2)}\n`);
console.log(`wrote ${OUT}`);
process.exit(0);
