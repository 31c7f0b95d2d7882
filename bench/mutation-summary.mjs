#!/usr/bin/env node
// Turns Stryker's reports/mutation/mutation.json (from `pnpm mutate`) into a short Markdown summary: the score per
// file and every surviving or uncovered mutant, for committing under bench/results/.
//   node bench/mutation-summary.mjs [reports/mutation/mutation.json] > bench/results/DATE-mutation-NAME.md
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'reports/mutation/mutation.json';
const report = JSON.parse(readFileSync(file, 'utf8'));
const rows = [];
const left = [];
const total = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, other: 0 };
for (const [path, f] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
  const c = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, other: 0 };
  for (const m of f.mutants) {
    c[m.status in c ? m.status : 'other']++;
    if (m.status === 'Survived' || m.status === 'NoCoverage') {
      const line = f.source.split('\n')[m.location.start.line - 1]?.trim() ?? '';
      left.push(`| ${path}:${m.location.start.line} | ${m.status} | ${m.mutatorName} | \`${line.slice(0, 70).replace(/\|/g, '\\|')}\` → \`${String(m.replacement ?? '').slice(0, 50).replace(/\|/g, '\\|').replace(/\n/g, ' ')}\` |`);
    }
  }
  for (const k of Object.keys(total)) total[k] += c[k];
  rows.push([path, c]);
}
const score = (c) => {
  const detected = c.Killed + c.Timeout;
  const valid = detected + c.Survived + c.NoCoverage;
  return valid === 0 ? 'n/a' : `${((100 * detected) / valid).toFixed(2)} %`;
};
const out = [
  '| file | score | killed | timeout | survived | no coverage |',
  '|---|---|---|---|---|---|',
  ...rows.map(([p, c]) => `| ${p} | ${score(c)} | ${c.Killed} | ${c.Timeout} | ${c.Survived} | ${c.NoCoverage} |`),
  `| **all** | **${score(total)}** | ${total.Killed} | ${total.Timeout} | ${total.Survived} | ${total.NoCoverage} |`,
  '',
  '### Surviving and uncovered mutants',
  '',
  '| where | status | mutator | original → replacement |',
  '|---|---|---|---|',
  ...left,
];
console.log(out.join('\n'));
