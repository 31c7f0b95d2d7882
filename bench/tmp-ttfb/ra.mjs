import { request } from 'undici';
import { sleep, startSluice, stopAll } from '../lib.mjs';
const SIZE = 32 * 1024 * 1024;
const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const common = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '1GB'];
const t = [['unsliced', (await startSluice(common)).url]];
for (const ra of process.argv.slice(2)) t.push([`ra${ra}`, (await startSluice([...common, '--slice', '1MB', '--slice-min', '1MB', '--slice-read-ahead', ra])).url]);
await sleep(300);
const res = Object.fromEntries(t.map(([m]) => [m, []]));
for (let r = 0; r < 6; r++) for (let k = 0; k < t.length; k++) {
  const [m, base] = t[(r + k) % t.length];
  const t0 = performance.now();
  const x = await request(`${base}/big/${SIZE}?q=${m}${r}${Date.now()}`);
  for await (const _ of x.body);
  res[m].push(performance.now() - t0);
  await sleep(50);
}
await stopAll();
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [m] of t) console.log(m, med(res[m]).toFixed(1), 'ratio', med(res[m].map((v, i) => v / res.unsliced[i])).toFixed(2));
