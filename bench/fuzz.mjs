// The long fuzz run (issue 10): the same fast-check properties CI runs (the *.fuzz.test.ts files of core's parsers and
// decoders), with many more cases and a random seed, through vitest so the properties are not written twice.
// Writes bench/results/<date>-fuzz.json and <date>-fuzz.md.
//
//   node bench/fuzz.mjs [--runs 200000] [--seed N]
//
// The wire fuzz (proxy/wire.fuzz.test.ts) is not part of it: it is bounded by sockets and idle timers, not by cases;
// run it longer with `FUZZ_RUNS=2000 npx vitest run packages/core/src/proxy/wire.fuzz.test.ts`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, machine } from './lib.mjs';

const FILES = [
  'packages/core/src/http1/parse-head.fuzz.test.ts',
  'packages/core/src/http1/body-reader.fuzz.test.ts',
  'packages/core/src/http/parsers.fuzz.test.ts',
];

const { values } = parseArgs({ options: { runs: { type: 'string', default: '200000' }, seed: { type: 'string' } } });
const runs = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
console.log(`fuzz: ${runs} cases per property, seed ${seed} (rerun with --seed ${seed})`);

const report = path.join(os.tmpdir(), `sluice-fuzz-${process.pid}.ndjson`);
rmSync(report, { force: true });
const started = new Date();
const machineNote = machine();
const t0 = performance.now();
const vitest = spawnSync('npx', ['vitest', 'run', ...FILES], {
  cwd: ROOT,
  stdio: 'inherit',
  env: { ...process.env, FUZZ_RUNS: String(runs), FUZZ_SEED: String(seed), FUZZ_REPORT: report },
});
const wallSec = Math.round((performance.now() - t0) / 1000);
let properties = [];
try {
  properties = readFileSync(report, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
} catch {
  // No report: vitest failed before any property ran; the exit status below says so.
}
rmSync(report, { force: true });

const failed = properties.filter((p) => p.failed);
const result = {
  date: started.toISOString(),
  machine: machineNote,
  settings: { runsPerProperty: runs, seed, files: FILES },
  wallSec,
  vitestExit: vitest.status,
  totalCases: properties.reduce((s, p) => s + p.runs, 0),
  failed: failed.length,
  properties,
};
const dir = path.join(ROOT, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const stem = path.join(dir, `${started.toISOString().slice(0, 10)}-fuzz`);
writeFileSync(`${stem}.json`, `${JSON.stringify(result, null, 2)}\n`);

const md = [
  `# Fuzz run ${result.date}`,
  '',
  `${runs} cases per property, seed ${seed}; ${result.totalCases} cases in ${wallSec} s; ${failed.length} properties failed.`,
  `Machine: ${machineNote.cores} cores ${machineNote.cpu}, Node ${machineNote.node}, ${machineNote.platform}, load average at start ${machineNote.loadavgAtStart.join(' ')}.`,
  '',
  '| property | cases | ms | outcome |',
  '| --- | ---: | ---: | --- |',
  ...properties.map((p) => `| ${p.property} | ${p.runs} | ${p.ms} | ${p.failed ? 'FAILED' : 'ok'} |`),
  '',
  ...failed.map((p) => `## ${p.property}\n\n\`\`\`\n${p.counterexample}\n\`\`\`\n`),
].join('\n');
writeFileSync(`${stem}.md`, md);
console.log(`wrote ${stem}.json and ${stem}.md`);
process.exitCode = vitest.status === 0 && failed.length === 0 ? 0 : 1;
