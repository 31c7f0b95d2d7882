import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import type { BenchResult } from './bench/report.js';
import type { ScenarioRow } from './bench/scenarios.js';
import { compose } from './compose.js';
import { toConfig } from './config.js';
import { BIN, runCli } from './test-support/run-cli.js';
import { countColor, decodePng } from './test-support/png.js';

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

    // A miss from an origin sending chunks apart, each mode measured: how long is the benchmark's to report, not
    // this test's (what streamed and buffered mean is tested below, without a clock).
    for (const mode of ['direct', 'streamed', 'buffered']) {
      const m = row(result, 'miss-ttfb', mode);
      expect(m.ttfbMs?.n).toBe(3);
      expect(m.ttfbSamplesMs).toHaveLength(3);
      expect(m.ttfbMs?.p50).toBeGreaterThan(0);
      expect(m.ttlbMs?.p50).toBeGreaterThanOrEqual(m.ttfbMs?.p50 ?? Infinity);
    }

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

  it.runIf(CHART_CHECK)('writes a static HTML page (no script) whose SVG charts render in headless Chromium', { timeout: 60_000 }, () => {
    expect(CHROMIUM, 'Debian chromium is needed (apt-get install chromium); .ci/run installs it').toBeDefined();
    expect(existsSync(html)).toBe(true);
    const page = readFileSync(html, 'utf8');
    // Static: nothing to run, nothing to load.
    expect(page).not.toMatch(/<script|<link |src=/);
    const dump = spawnSync(CHROMIUM as string, [...CHROMIUM_ARGS(), '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 50_000 });
    const dom = dump.stdout;
    // TTFB distribution: one dot per sample (3 modes x 3 runs) and a median bar per mode, on a labelled log axis.
    expect(dom).toMatch(/<svg class="chart" id="chart-ttfb"/);
    expect(dom.match(/<circle class="sample"/g)).toHaveLength(9);
    expect(dom.match(/<rect class="median"/g)).toHaveLength(3);
    expect(dom).toContain('time to first byte (log scale)');
    // Threshold sweep: one line per mode, a point per size, both axes log and labelled.
    expect(dom).toMatch(/<svg class="chart" id="chart-sweep"/);
    expect(dom.match(/<polyline class="series"/g)).toHaveLength(3);
    expect(dom.match(/<circle class="point"/g)).toHaveLength(12);
    expect(dom).toContain('object size (log scale)');
    expect(dom).toContain('time to last byte, median (log scale)');
    // Hit framing (2 sizes x 3 modes), load (latency and miss TTFB percentiles) and coalescing charts.
    expect(dom.match(/<svg class="chart" id="chart-hits"[\s\S]*?<\/svg>/)?.[0].match(/<rect class="bar"/g)).toHaveLength(6);
    expect(dom.match(/<svg class="chart" id="chart-load"[\s\S]*?<\/svg>/)?.[0].match(/<rect class="bar"/g)).toHaveLength(6);
    expect(dom.match(/<svg class="chart" id="chart-coalesce"[\s\S]*?<\/svg>/)?.[0]).toMatch(/>origin requests</);
    // Tick labels are round numbers: no 53 / 212.1 / 848.3.
    for (const t of dom.match(/<text class="tick"[^>]*>([^<]*)</g) ?? []) expect(t.replace(/<[^>]*>/g, '').replace('<', '')).toMatch(/^(\d+(\.\d+)? (ms|s)|\d+(\.\d+)? (B|KiB|MiB)|\d+)$/);
    // The table lists every row.
    expect(dom.match(/<tr>/g)?.length).toBe((result?.scenarios.length ?? 0) + 1);

    // A screenshot: not blank, and the charts' series colors are on it.
    const png = path.join(dir, 'report.png');
    const shot = spawnSync(CHROMIUM as string, [...CHROMIUM_ARGS(), '--hide-scrollbars', '--window-size=960,2400', `--screenshot=${png}`, `file://${html}`], { encoding: 'utf8', timeout: 50_000 });
    expect(existsSync(png), shot.stderr).toBe(true);
    const img = decodePng(readFileSync(png));
    expect([img.width, img.height]).toEqual([960, 2400]);
    const white = countColor(img, '#ffffff', 3);
    expect(white).toBeLessThan(img.width * img.height * 0.95);
    for (const [mode, color] of [['direct', '#777777'], ['streamed', '#1b7f3b'], ['buffered', '#c0392b'], ['content-length', '#2c6fbb'], ['chunked', '#d68910']]) {
      expect(countColor(img, color as string, 8), `${mode} (${color}) on the screenshot`).toBeGreaterThan(50);
    }
  });
});

/** Headless Chromium, isolated: its own profile, no network beyond the file. */
const CHROMIUM_ARGS = (): string[] => [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', `--user-data-dir=${mkdtempSync(path.join(tmpdir(), 'chromium-'))}`,
];

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

/** Whether `p` settles within `ms`: a missing event fails an assertion, not the test timeout. Never a measurement. */
const settlesWithin = (p: Promise<unknown>, ms: number): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);

describe("what miss-ttfb's streamed and buffered modes mean, by order of events rather than time", () => {
  /**
   * The two Sluice set-ups miss-ttfb compares (`sluice proxy`, and `sluice proxy --no-stream`), in front of an origin
   * that sends its first chunk and then holds the last one until `release`; `events` records what happened in order.
   */
  async function stack(stream: boolean, onEnd: (fn: () => Promise<void>) => void) {
    const release = deferred();
    const firstSent = deferred();
    const events: string[] = [];
    const origin = await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
      res.write('first chunk\n', () => firstSent.resolve());
      await release.promise;
      events.push('origin sent its last chunk');
      res.end('last chunk\n');
    });
    onEnd(() => origin.close());
    const px = compose(toConfig({ backend: [origin.url], quiet: true, stream }, {}));
    onEnd(() => px.close());
    const { port } = await px.proxy.listen(0, '127.0.0.1');
    const res = request(`http://127.0.0.1:${port}/chunked`).then(async (r) => {
      const chunks: string[] = [];
      for await (const c of r.body) {
        if (chunks.length === 0) events.push('client got its first body bytes');
        chunks.push(String(c));
      }
      return chunks.join('');
    });
    return { release, firstSent, events, res };
  }

  it('streamed: the client gets the first chunk while the origin still holds the last (the origin waits for it)', async ({ onTestFinished }) => {
    const s = await stack(true, onTestFinished);
    // The origin-side barrier: the last chunk is sent only once the client has the first.
    const clientHasFirst = (async () => {
      while (!s.events.includes('client got its first body bytes')) await new Promise((r) => setImmediate(r));
    })();
    const streamed = await settlesWithin(clientHasFirst, 5000);
    s.release.resolve();
    expect(streamed).toBe(true);
    expect(await s.res).toBe('first chunk\nlast chunk\n');
    expect(s.events).toEqual(['client got its first body bytes', 'origin sent its last chunk']);
  });

  it('buffered (--no-stream): the client gets nothing until the origin has sent the whole body', async ({ onTestFinished }) => {
    const s = await stack(false, onTestFinished);
    await s.firstSent.promise;
    // The first chunk is out of the origin; the client has nothing while the last is held (bounded wait, not a measure).
    expect(await settlesWithin(s.res, 300)).toBe(false);
    expect(s.events).toEqual([]);
    s.release.resolve();
    expect(await s.res).toBe('first chunk\nlast chunk\n');
    expect(s.events).toEqual(['origin sent its last chunk', 'client got its first body bytes']);
  });
});
