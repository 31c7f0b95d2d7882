import { readFileSync } from 'node:fs';
const lines = readFileSync('/tmp/slprof/tx.log', 'utf8').split('\n');
let cur = {}; const rows = [];
for (const l of lines) {
  const m = /^(\S+)\s+Timestamp\s+(\w+): (\d+\.\d+)/.exec(l);
  if (/^\*\s+<< Request/.test(l)) { if (cur.start) rows.push(cur); cur = {}; }
  if (!m) continue;
  const [, lvl, name, t] = m; const ts = Number(t) * 1000;
  if (lvl === '-' && name === 'Start') cur.start = ts;
  if (lvl === '---' && name === 'Bereq') cur.bereq ??= ts;
  if (lvl === '---' && name === 'Beresp') cur.beresp ??= ts;
  if (lvl === '-' && name === 'Process') cur.process = ts;
}
rows.push(cur);
for (const r of rows) if (r.bereq) console.log(`to bereq ${(r.bereq - r.start).toFixed(2)}  origin ${(r.beresp - r.bereq).toFixed(2)}  beresp->head ${(r.process - r.beresp).toFixed(2)}`);
