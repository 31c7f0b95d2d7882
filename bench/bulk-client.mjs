// Cold whole-object misses through a proxy: N reads of /big/SIZE with unique URLs (one warm-up first), printing the
// proxy's CPU per MiB (schedstat of PID) and wall time each. Usage: node bench/bulk-client.mjs URL PID [N] [SIZE] [QUERY]
// QUERY: more of the query string, e.g. cc=no-store for an unstored (pass-through) object.
import { request } from 'undici';
import { cpuMicros } from './lib.mjs';
const [url, pidArg, nArg, sizeArg, query] = process.argv.slice(2);
const pid = Number(pidArg);
const N = Number(nArg ?? 5);
const size = Number(sizeArg ?? 100 * 1048576);
async function one(tag) {
  const t0 = performance.now();
  const r = await request(`${url}/big/${size}?bulk=${tag}-${Date.now()}${query === undefined ? '' : `&${query}`}`);
  let n = 0;
  for await (const c of r.body) n += c.length;
  if (n !== size) throw new Error(`got ${n}`);
  return performance.now() - t0;
}
await one('warm');
const rows = [];
for (let i = 0; i < N; i++) {
  const c0 = cpuMicros(pid);
  const ms = await one(i);
  await new Promise((r) => setTimeout(r, 30));
  rows.push({ ms: Math.round(ms), cpuPerMiB: Math.round((cpuMicros(pid) - c0) / (size / 1048576)) });
}
console.log(JSON.stringify(rows));
