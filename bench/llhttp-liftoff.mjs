// What keeping undici's llhttp parser on Liftoff costs (issue 16, pass memory: `sluice proxy` sets --liftoff-only
// unless --wasm-tier-up). Usage: node bench/llhttp-liftoff.mjs [--rounds N] [--out FILE]
// Each round runs this file as a child twice, with and without --liftoff-only (interleaved): the child's undici
// client reads 5000 1 KiB responses (head parsing dominates) and 8 bodies of 32 MiB (Content-Length) from a raw
// socket server in the same process, after a warm-up of 3000 + 3; CPU time of the child (user + system) per small
// response and per MiB. Medians over the rounds (`<date>-s6-passmem-llhttp.json` unless --out).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

if (process.argv[2] !== '--child') {
  const argv = process.argv.slice(2);
  const opt = (n, d) => (argv.includes(n) ? argv[argv.indexOf(n) + 1] : d);
  const rounds = Number(opt('--rounds', 5));
  const self = fileURLToPath(import.meta.url);
  const out = opt('--out', path.join(path.dirname(self), 'results', `${new Date().toISOString().slice(0, 10)}-s6-passmem-llhttp.json`));
  const rows = { turbofan: [], liftoff: [] };
  const loads = [];
  for (let r = 0; r < rounds; r++) {
    for (const [mode, flags] of [['turbofan', []], ['liftoff', ['--liftoff-only']]]) {
      const p = spawnSync(process.execPath, [...flags, self, '--child'], { encoding: 'utf8' });
      if (p.status !== 0) throw new Error(p.stderr);
      rows[mode].push(JSON.parse(p.stdout));
    }
    loads.push(loadavg()[0]);
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summary = Object.fromEntries(Object.entries(rows).map(([m, xs]) => [m, { smallUs: med(xs.map((x) => x.smallUs)), bigUsPerMiB: med(xs.map((x) => x.bigUsPerMiB)), rounds: xs }]));
  for (const [m, s] of Object.entries(summary)) console.log(`${m.padEnd(9)} CPU per 1 KiB response ${s.smallUs} us, per MiB of body ${s.bigUsPerMiB} us`);
  console.log(`load ${loads.map((l) => l.toFixed(1)).join(' ')}`);
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, loadavg: loads, summary }, null, 2)}\n`);
  console.log(`written ${out}`);
  process.exit(0);
}
import net from 'node:net';
import { request, Agent } from 'undici';
const big = 32 * 1048576;
const chunk = Buffer.alloc(65536, 'x');
const srv = net.createServer((s) => {
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
      const head = buf.slice(0, i); buf = buf.slice(i + 4);
      if (head.includes('/big')) {
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${big}\r\ncache-control: private\r\n\r\n`);
        for (let o = 0; o < big; o += chunk.length) s.write(chunk);
      } else {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: max-age=60\r\netag: "abc"\r\nlast-modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nvary: accept-encoding\r\ncontent-length: 1024\r\n\r\n' + 'y'.repeat(1024));
      }
    }
  });
});
await new Promise((r) => srv.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${srv.address().port}`;
const agent = new Agent({ connections: 1 });
const get = async (p) => { const r = await request(url + p, { dispatcher: agent }); let n = 0; for await (const c of r.body) n += c.length; return n; };
for (let i = 0; i < 3000; i++) await get('/small'); // warm (tier-up when allowed)
for (let i = 0; i < 3; i++) await get('/big');
const cpu = () => { const u = process.cpuUsage(); return u.user + u.system; };
let c0 = cpu();
for (let i = 0; i < 5000; i++) await get('/small');
const small = (cpu() - c0) / 5000;
c0 = cpu();
for (let i = 0; i < 8; i++) await get('/big');
const perMiB = (cpu() - c0) / (8 * 32);
console.log(JSON.stringify({ smallUs: +small.toFixed(1), bigUsPerMiB: Math.round(perMiB) }));
await agent.close(); srv.close();
