// Side by side with Varnish (when varnishd is installed: `apt-get install varnish`): the shared sample's request.log
// replayed on its recorded schedule against Varnish 7 running the sample's own default.vcl and against Sluice with
// the same policy (fixtures/sample-vcl.config.mjs), both in front of `sluice origin --sample`. Prints per request the
// recorded, Varnish's and Sluice's status and outcome. Usage: node bench/replay-varnish.mjs [--out FILE]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const outIdx = argv.indexOf('--out');
const out = outIdx >= 0 ? argv[outIdx + 1] : path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-replay-varnish.json`);
const SHARED = path.resolve(ROOT, '../shared/varnishlog');
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');
const VARNISHD = ['/usr/sbin/varnishd', '/usr/bin/varnishd'].find((p) => existsSync(p));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `sluice replay request.log --target A --target B --json`: both replayed in turn, then compared. */
function compareTargets(a, b) {
  const r = spawnSync(process.execPath, [BIN, 'replay', path.join(SHARED, 'request.log'), '--target', a, '--target', b, '--json'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`replay failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function main() {
  if (VARNISHD === undefined) {
    console.log('varnishd is not installed (apt-get install varnish); nothing to compare');
    return;
  }
  const version = spawnSync(VARNISHD, ['-V'], { encoding: 'utf8' }).stderr.split('\n')[0];
  const origin = await startSluice(['origin', '--sample', '--listen', '127.0.0.1:0']);
  const originPort = new URL(origin.url).port;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-varnish-'));
  const vcl = path.join(dir, 'default.vcl');
  writeFileSync(vcl, readFileSync(path.join(SHARED, 'default.vcl'), 'utf8').replace(/\.port = "\d+";/, `.port = "${originPort}";`));
  const varnishPort = await freePort();
  const varnish = spawn(VARNISHD, ['-F', '-j', 'none', '-n', path.join(dir, 'vn'), '-a', `127.0.0.1:${varnishPort}`, '-T', '127.0.0.1:0', '-f', vcl, '-s', 'malloc,32m'], { stdio: 'ignore' });
  const sluice = await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--config', path.join(ROOT, 'fixtures/sample-vcl.config.mjs')]);
  try {
    const varnishUrl = `http://127.0.0.1:${varnishPort}`;
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`${varnishUrl}/no/such/warmup`).then(() => true, () => false);
      if (ok) break;
      await sleep(100);
    }
    // The two replays one after the other (each on the recorded schedule), each against a cold cache.
    const comparison = compareTargets(varnishUrl, sluice.url);
    const [v, s] = comparison.reports;
    const rows = v.requests.map((r, i) => ({
      seq: r.seq,
      method: r.method,
      url: r.url.length > 40 ? `${r.url.slice(0, 39)}…` : r.url,
      recorded: `${r.recorded.status} ${r.recorded.outcome}`,
      varnish: `${r.observed.status} ${r.observed.outcome}`,
      sluice: `${s.requests[i].observed.status} ${s.requests[i].observed.outcome}`,
    }));
    for (const r of rows) {
      const mark = r.varnish === r.sluice ? '' : '   <- differs';
      console.log(`${String(r.seq).padStart(3)} ${r.method.padEnd(5)} ${r.url.padEnd(41)} recorded ${r.recorded.padEnd(10)} varnish ${r.varnish.padEnd(14)} sluice ${r.sluice.padEnd(10)}${mark}`);
    }
    const summary = {
      varnish: { version, statusMismatches: v.summary.statusMismatches, outcomeMismatches: v.summary.outcomeMismatches, ttfbMs: v.summary.ttfbMs },
      sluice: { statusMismatches: s.summary.statusMismatches, outcomeMismatches: s.summary.outcomeMismatches, ttfbMs: s.summary.ttfbMs },
      sameStatusAndOutcome: rows.length - comparison.differences.length,
    };
    console.log(`\n${version}: ${summary.varnish.statusMismatches} status / ${summary.varnish.outcomeMismatches} outcome mismatches against the recording`);
    console.log(`sluice: ${summary.sluice.statusMismatches} status / ${summary.sluice.outcomeMismatches} outcome mismatches; same answer as Varnish for ${summary.sameStatusAndOutcome} of ${rows.length}`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), summary, rows }, null, 2)}\n`);
    console.log(`\nwritten ${path.relative(ROOT, out)}`);
  } finally {
    varnish.kill('SIGTERM');
    await stopAll();
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (e) => {
  console.error(`bench failed: ${e.message}`);
  await stopAll();
  process.exit(1);
});
