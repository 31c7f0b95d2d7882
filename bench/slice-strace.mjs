// Which origin requests one cold sliced range sends, and when (issue 13, session 10): a proxy of ROOT with FLAGS,
// 40 warm-up cold ranges (1000 B at the middle of a new 100 MiB object), then `strace -f -tt -T` on it (network,
// read, write, writev, epoll_wait) over K cold ranges 300 ms apart, each followed by the same range read direct.
// Prints [[sliced first byte ms, direct first byte ms], ...]; the trace goes to $OUT (default /tmp/slice-strace.txt).
//   OUT=/tmp/x.txt node bench/slice-strace.mjs ROOT K -- --slice-size 1MB
import { spawn } from 'node:child_process';
import { request } from 'undici';
const [ROOT, K] = process.argv.slice(2, 4);
const extra = process.argv.slice(process.argv.indexOf('--') + 1);
function start(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const on = (d) => { buf += d; const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(buf); if (m) resolve({ url: m[1], p }); };
    p.stdout.on('data', on); p.stderr.on('data', () => {});
  });
}
const origin = await start([`${ROOT}/packages/cli/bin/run.js`, 'origin', '--listen', '127.0.0.1:0']);
const proxy = await start([`${ROOT}/packages/cli/bin/run.js`, 'proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB', ...extra]);
const SIZE = 100 * 1024 * 1024;
async function cold(tag) {
  const t0 = process.hrtime.bigint();
  const r = await request(`${proxy.url}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } });
  let tf; for await (const c of r.body) tf ??= process.hrtime.bigint();
  return Number(tf - t0) / 1e6;
}
async function direct(tag) {
  const t0 = process.hrtime.bigint();
  const r = await request(`${origin.url}/big/${SIZE}?t=${tag}`, { headers: { range: `bytes=${SIZE / 2}-${SIZE / 2 + 999}` } });
  let tf; for await (const c of r.body) tf ??= process.hrtime.bigint();
  return Number(tf - t0) / 1e6;
}
for (let i = 0; i < 40; i++) await cold(`w${i}`);
const st = spawn('strace', ['-f', '-tt', '-T', '-e', 'trace=network,read,write,writev,epoll_wait', '-p', String(proxy.p.pid), '-o', process.env.OUT ?? '/tmp/slice-strace.txt'], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 1500));
const res = [];
for (let i = 0; i < Number(K); i++) { await new Promise((r) => setTimeout(r, 300)); console.error('MARK', i, new Date().toISOString()); res.push([await cold(`m${i}`), await direct(`d${i}`)]); }
await new Promise((r) => setTimeout(r, 500));
st.kill('SIGINT'); await new Promise((r) => st.on('exit', r));
console.log(JSON.stringify(res));
proxy.p.kill('SIGINT'); origin.p.kill('SIGINT');
process.exit(0);
