import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BenchResult } from './bench/report.js';
import type { ScenarioRow } from './bench/scenarios.js';
import { BIN, runCli } from './test-support/run-cli.js';



const row = (r: BenchResult, name: string, mode: string): ScenarioRow => {
  const found = r.scenarios.find((s) => s.name === name && s.mode === mode);
  if (found === undefined) throw new Error(`no ${name}/${mode} in ${r.scenarios.map((s) => `${s.name}/${s.mode}`).join(', ')}`);
  return found;
};

/** Debian's chromium, which .ci/run installs; on a developer machine without it the chart check cannot run. */
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const CHART_CHECK = CHROMIUM !== undefined || process.env['CI'] === 'true';

describe('sluice bench --quick', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-bench-test-'));
  const html = path.join(dir, 'report.html');
  let result: BenchResult | undefined;

  it('runs every scenario end to end and produces sane results', { timeout: 120_000 }, async () => {
    const r = await runCli(['bench', '--quick', '--json', '--html', html]);
    expect(r.code, r.stderr).toBe(0);
    result = JSON.parse(r.stdout) as BenchResult;
    expect(result.machine.cores).toBeGreaterThan(0);
    expect(result.machine.node).toBe(process.version);

    // A miss from an origin sending 3 chunks 60 ms apart: streamed TTFB well under buffered, which waits ~120 ms.
    const direct = row(result, 'miss-ttfb', 'direct');
    const streamed = row(result, 'miss-ttfb', 'streamed');
    const buffered = row(result, 'miss-ttfb', 'buffered');
    expect(buffered.ttfbMs?.p50).toBeGreaterThanOrEqual(110);
    expect(streamed.ttfbMs?.p50).toBeLessThan((buffered.ttfbMs?.p50 ?? 0) / 4);
    expect(direct.ttfbMs?.n).toBe(3);
    expect(streamed.ttfbSamplesMs).toHaveLength(3);

    for (const size of ['1k', '64k']) {
      for (const mode of ['direct', 'content-length', 'chunked']) expect(row(result, `hit-${size}`, mode).rps).toBeGreaterThan(0);
      expect(row(result, `hit-${size}`, 'chunked').ratioToDirect).toBeGreaterThan(0);
    }

    const load = row(result, 'load', 'streamed');
    expect(load.rps).toBeGreaterThan(0);
    expect(load.ttfbMs?.n).toBeGreaterThan(0);

    const co = row(result, 'coalesce', 'streamed');
    expect(co['originRequests']).toBe(1);
    expect(co['allComplete']).toBe(true);

    for (const size of ['100', '4k', '64k', '1m']) {
      for (const mode of ['direct', 'streamed', 'buffered']) expect(row(result, `sweep-${size}`, mode).ttlbMs?.n).toBe(3);
    }
  });

  it.runIf(CHART_CHECK)('writes an HTML page whose charts render in headless Chromium', { timeout: 60_000 }, () => {
    expect(CHROMIUM, 'Debian chromium is needed (apt-get install chromium); .ci/run installs it').toBeDefined();
    expect(existsSync(html)).toBe(true);
    const dump = spawnSync(
      CHROMIUM as string,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--user-data-dir=${mkdtempSync(path.join(tmpdir(), 'chromium-'))}`,
        '--dump-dom', `file://${html}`],
      { encoding: 'utf8', timeout: 50_000 },
    );
    const dom = dump.stdout;
    expect(dom).toContain('data-rendered="yes"');
    // TTFB distribution: one dot per sample (3 modes x 3 runs) and a median bar per mode.
    expect(dom).toMatch(/<svg class="chart" id="chart-ttfb"/);
    expect(dom.match(/<circle class="sample"/g)).toHaveLength(9);
    expect(dom.match(/<rect class="median"/g)).toHaveLength(3);
    // Threshold sweep: one line per mode, a point per size.
    expect(dom).toMatch(/<svg class="chart" id="chart-sweep"/);
    expect(dom.match(/<polyline class="series"/g)).toHaveLength(3);
    expect(dom.match(/<circle class="point"/g)).toHaveLength(12);
    // The table lists every row.
    expect(dom.match(/<tr>/g)?.length).toBe((result?.scenarios.length ?? 0) + 1);
    expect(readFileSync(html, 'utf8')).not.toMatch(/<script src=|<link /);
  });
});

describe('sluice bench --target', () => {
  it('measures another proxy with the same harness', { timeout: 60_000 }, async () => {
    // A free port for the fixture origin, and a Sluice (standing in for any proxy) that forwards to it.
    const originPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const peer = spawn(process.execPath, [BIN, 'proxy', '--listen', '127.0.0.1:0', '--backend', `http://127.0.0.1:${originPort}`, '--quiet'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const url = await new Promise<string>((resolve) => {
        let out = '';
        peer.stdout.on('data', (d) => {
          out += String(d);
          const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
          if (m?.[1] !== undefined) resolve(m[1]);
        });
      });
      const r = await runCli(['bench', '--quick', '--json', '--target', url, '--origin-port', String(originPort), '--scenario', 'miss-ttfb', '--scenario', 'coalesce']);
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as BenchResult;
      expect(res.target).toBe(url);
      expect(res.scenarios.map((s) => `${s.name}/${s.mode}`)).toEqual(['miss-ttfb/direct', 'miss-ttfb/target', 'coalesce/target']);
      expect(row(res, 'coalesce', 'target')['originRequests']).toBe(1);
    } finally {
      peer.kill('SIGTERM');
    }
  });
});
