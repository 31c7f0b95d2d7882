// Reads a URL's body N times (after one warm-up) with one client and prints the reader's own CPU per MiB (user+sys,
// process.cpuUsage): the floor a proxy's origin side cannot beat. Modes: undici (request, 'data' listener),
// dispatch (undici dispatcher handler, onData), net (raw socket, no HTTP parsing).
// Usage: node bench/bulk-floor-reader.mjs MODE URL [N]
import net from 'node:net';
import { request, Agent } from 'undici';
const [mode, url, nArg] = process.argv.slice(2);
const N = Number(nArg ?? 3);
const u = new URL(url);
const agent = new Agent();
async function viaUndici() {
  const res = await request(url, { dispatcher: agent });
  let n = 0, chunks = 0;
  await new Promise((resolve, reject) => {
    res.body.on('data', (c) => { n += c.length; chunks++; });
    res.body.on('end', resolve); res.body.on('error', reject);
  });
  return { n, chunks };
}
function viaDispatch() {
  return new Promise((resolve, reject) => {
    let n = 0, chunks = 0;
    agent.dispatch({ origin: u.origin, path: u.pathname, method: 'GET' }, {
      onConnect() {}, onHeaders() { return true; }, onData(c) { n += c.length; chunks++; return true; },
      onComplete() { resolve({ n, chunks }); }, onError: reject,
    });
  });
}
function viaNet() {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let n = 0, chunks = 0;
    s.on('connect', () => s.write(`GET ${u.pathname} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`));
    s.on('data', (c) => { n += c.length; chunks++; });
    s.on('end', () => resolve({ n, chunks })); s.on('error', reject);
  });
}
const once = mode === 'net' ? viaNet : mode === 'dispatch' ? viaDispatch : viaUndici;
await once();
const c0 = process.cpuUsage(); const t0 = performance.now();
let r;
for (let i = 0; i < N; i++) r = await once();
const c = process.cpuUsage(c0);
const mib = (r.n * N) / 1048576;
console.log(JSON.stringify({ mode, bytes: r.n, chunks: r.chunks, cpuMicrosPerMiB: Math.round((c.user + c.system) / mib), wallMsEach: Math.round((performance.now() - t0) / N) }));
await agent.close();
