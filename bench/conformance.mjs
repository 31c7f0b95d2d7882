// HTTP cache conformance (issue 12). Usage: node bench/conformance.mjs [--id TEST-ID] [--label NAME] [--out FILE]
//                                                                 [-- extra sluice proxy flags]
// Runs the public HTTP cache test suite (npm `http-cache-tests`, the suite behind cache-tests.fyi) against Sluice on
// loopback, with Sluice's default settings unless flags follow `--`:
//   origin   the suite's own server (node_modules/http-cache-tests/server/server.mjs) on a free loopback port
//   proxy    `sluice proxy --backend <origin> --listen 127.0.0.1:0 --quiet` in its own process
//   client   the suite's command-line client (cli.mjs), pointed at the proxy, in its own process
// Prints required and optimal passed/total (the way cache-tests.fyi counts them: a test whose dependency failed does
// not count as passed) and writes bench/results/<date>-conformance.json with every test's kind and result.
// With --id runs one test and prints the suite's request/response dump (for debugging one failure).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, machine, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash >= 0 ? argv.slice(0, dash) : argv;
const extraFlags = dash >= 0 ? argv.slice(dash + 1) : [];
const flag = (name, dflt) => {
  const i = own.indexOf(name);
  return i >= 0 && own[i + 1] !== undefined ? own[i + 1] : dflt;
};
const testId = flag('--id', '');
const label = flag('--label', extraFlags.length === 0 ? 'defaults' : extraFlags.join(' '));
const date = new Date().toISOString().slice(0, 10);
const out = flag('--out', path.join(ROOT, 'bench/results', `${date}-conformance.json`));
const SUITE = path.join(ROOT, 'node_modules/http-cache-tests');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The suite's origin server; it reads its settings from npm_config_* variables as `npm run server` would set. */
async function startOrigin() {
  const port = await freePort();
  const env = { ...process.env, npm_config_protocol: 'http', npm_config_port: String(port), npm_config_pidfile: path.join(os.tmpdir(), `cache-tests-${process.pid}.pid`) };
  const p = spawn(process.execPath, ['server/server.mjs'], { cwd: SUITE, env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let seen = '';
    p.stdout.on('data', (d) => {
      seen += String(d);
      if (seen.includes('Listening on')) resolve();
    });
    p.once('exit', (code) => reject(new Error(`the suite's origin exited ${String(code)}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => p.kill('SIGTERM') };
}

/** The suite's CLI client against `base`; resolves with its stdout (JSON results, or a dump with --id). */
function runClient(base) {
  // cli.mjs reads npm_config_id || npm_package_config_id: both set, so '' means every test.
  const env = { ...process.env, npm_config_base: base, npm_config_id: testId, npm_package_config_id: testId };
  const p = spawn(process.execPath, ['--no-warnings', 'cli.mjs'], { cwd: SUITE, env, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  p.stdout.on('data', (d) => (text += String(d)));
  return new Promise((resolve, reject) => {
    p.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`the suite's client exited ${String(code)}`))));
  });
}

/** Every test of the suite (as cli.mjs runs them: the index plus Surrogate-Control), by id. */
async function loadTests() {
  const index = (await import(pathToFileURL(path.join(SUITE, 'tests/index.mjs')).href)).default;
  const surrogate = (await import(pathToFileURL(path.join(SUITE, 'tests/surrogate-control.mjs')).href)).default;
  const byId = new Map();
  for (const suite of [...index, surrogate]) {
    for (const t of suite.tests) if (t.browser_only !== true) byId.set(t.id, { ...t, suite: suite.id });
  }
  return byId;
}

/**
 * The verdict lib/display.mjs determineTestResult gives (that module needs a browser): pass, fail, optional_fail,
 * yes/no for checks, dependency_fail, setup_fail, retry, untested.
 */
function verdict(tests, results, id) {
  const test = tests.get(id);
  const r = results[id];
  if (r === undefined) return 'untested';
  for (const dep of test.depends_on ?? []) {
    if (!['pass', 'yes'].includes(verdict(tests, results, dep))) return 'dependency_fail';
  }
  if (Array.isArray(r) && r[0] === 'Setup') return r[1] === 'retry' ? 'retry' : 'setup_fail';
  const kind = test.kind ?? 'required';
  if (kind === 'check') return r === true ? 'yes' : 'no';
  if (r === true) return 'pass';
  return kind === 'optimal' ? 'optional_fail' : 'fail';
}

async function main() {
  const origin = await startOrigin();
  let proxy;
  try {
    proxy = await startSluice(['proxy', '--backend', origin.url, '--listen', '127.0.0.1:0', '--quiet', ...extraFlags]);
    const text = await runClient(proxy.url);
    if (testId !== '') {
      process.stdout.write(text);
      return;
    }
    const results = JSON.parse(text);
    const tests = await loadTests();
    const perTest = {};
    const totals = { required: { passed: 0, total: 0 }, optimal: { passed: 0, total: 0 }, check: { yes: 0, total: 0 } };
    for (const [id, t] of tests) {
      const kind = t.kind ?? 'required';
      const v = verdict(tests, results, id);
      perTest[id] = { suite: t.suite, kind, verdict: v, result: results[id] ?? null };
      if (kind === 'check') {
        totals.check.total++;
        if (v === 'yes') totals.check.yes++;
      } else {
        totals[kind].total++;
        if (v === 'pass') totals[kind].passed++;
      }
    }
    const suiteVersion = JSON.parse(readFileSync(path.join(SUITE, 'package.json'), 'utf8')).version;
    console.log(`http-cache-tests ${suiteVersion} against sluice (${label})`);
    console.log(`required ${totals.required.passed}/${totals.required.total}   optimal ${totals.optimal.passed}/${totals.optimal.total}   checks yes ${totals.check.yes}/${totals.check.total}`);
    for (const [id, r] of Object.entries(perTest)) {
      if (r.verdict === 'fail' || r.verdict === 'setup_fail' || r.verdict === 'retry') console.log(`  ${r.verdict.padEnd(11)} ${id}: ${Array.isArray(r.result) ? r.result[1] : ''}`);
    }
    mkdirSync(path.dirname(out), { recursive: true });
    const record = { date, suite: `http-cache-tests@${suiteVersion}`, label, flags: extraFlags, machine: machine(), totals, tests: perTest };
    writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`);
    console.log(`wrote ${path.relative(ROOT, out)}`);
  } finally {
    await stopAll();
    origin.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
