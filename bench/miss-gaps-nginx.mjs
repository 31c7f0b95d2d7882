// nginx's side of bench/miss-gaps.mjs (session 10, issue 16, miss first byte): the nginx peer (proxy_cache, one worker)
// in front of the fixture origin, 1000 warm misses, then strace -f -ttt on the worker over N misses GAP ms apart on one
// kept-alive raw connection, a new URL each: per miss the inbound stretch (client request read -> origin request
// write), outbound (origin response read -> first client write), the origin's time, and syscalls per miss by name.
// strace stops the worker at every system call: nginx's stretches are mostly that cost (~15 calls per miss, cache
// files included), Sluice's (3 calls per miss) are JavaScript; compare shapes, not wall times.
// Usage: node bench/miss-gaps-nginx.mjs [GAP_MS=30] [MISSES=100] [OUT]
import { spawn, execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, startSluice, startNginxCache, freePort, sleep, stopAll } from './lib.mjs';
const GAP = Number(process.argv[2] ?? 30), N = Number(process.argv[3] ?? 100);
const OUT = process.argv[4];
const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const ng = await startNginxCache(origin.url, await freePort());
const worker = execSync(`pgrep -P ${ng.pid}`).toString().trim().split('\n')[0];
const u = new URL(ng.url);
const s = await new Promise((r) => { const c = net.connect(Number(u.port), u.hostname, () => r(c)); c.setNoDelay(true); });
let seq = 0;
const miss = (tag) => new Promise((resolve) => { let buf = Buffer.alloc(0); const on = (d) => { buf = Buffer.concat([buf, d]); const e = buf.indexOf('\r\n\r\n'); if (e < 0) return; const m = /content-length: *(\d+)/i.exec(buf.subarray(0, e).toString('latin1')); if (m && buf.length >= e + 4 + Number(m[1])) { s.off('data', on); resolve(); } }; s.on('data', on); s.write(`GET /static/1k?ng=${tag}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`); });
for (let i = 0; i < 1000; i++) await miss('w');
const file = path.join(os.tmpdir(), `sluice-nginx-strace-${process.pid}-${GAP}.txt`);
const st = spawn('strace', ['-f', '-ttt', '-s', '24', '-p', worker, '-o', file], { stdio: 'ignore' });
await sleep(1000);
for (let i = 0; i < N; i++) { await miss('m'); if (GAP > 0) await sleep(GAP); }
st.kill('SIGINT'); await new Promise((r) => st.once('exit', r));
const rows = []; let cur;
for (const line of readFileSync(file, 'utf8').split('\n')) {
  const m = /^(\d+)\s+(\d+\.\d+)\s+(\w+)\((\d+)?,?\s*(.*)$/.exec(line); if (!m) continue;
  const [, , ts, call, fdt, rest] = m; const t = Number(ts) * 1e6; const fd = Number(fdt);
  if (/^(read|recvfrom|readv)$/.test(call) && rest.includes('"GET /static/1k?ng=m')) { if (cur) rows.push(cur); cur = { fd, tRead: t, calls: {} }; continue; }
  if (!cur) continue; cur.calls[call] = (cur.calls[call] ?? 0) + 1;
  if (cur.tB === undefined && /^(write|writev|sendmsg|send)$/.test(call) && fd !== cur.fd && rest.includes('GET ')) { cur.tB = t; cur.ofd = fd; }
  else if (cur.tB !== undefined && cur.tR === undefined && /^(read|recvfrom|readv)$/.test(call) && fd === cur.ofd && rest.includes('HTTP/1.1')) cur.tR = t;
  else if (cur.tR !== undefined && cur.tW === undefined && /^(write|writev|sendmsg|send|sendfile)$/.test(call) && fd === cur.fd) cur.tW = t;
}
if (cur) rows.push(cur);
const ok = rows.filter((r) => r.tW !== undefined); const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const calls = {}; for (const r of ok) for (const [k, v] of Object.entries(r.calls)) calls[k] = (calls[k] ?? 0) + v / ok.length;
const result = { date: new Date().toISOString(), machine: machine(), loadavgAtEnd: os.loadavg(), gap: GAP, misses: ok.length, inboundUs: med(ok.map((r) => r.tB - r.tRead)), outboundUs: med(ok.map((r) => r.tW - r.tR)), originUs: med(ok.map((r) => r.tR - r.tB)), callsPerMiss: Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, Math.round(v * 10) / 10])) };
console.log(JSON.stringify(result));
if (OUT !== undefined) { mkdirSync(path.dirname(path.resolve(ROOT, OUT)), { recursive: true }); writeFileSync(path.resolve(ROOT, OUT), `${JSON.stringify(result, null, 2)}\n`); }
s.destroy(); await stopAll(); process.exit(0);
