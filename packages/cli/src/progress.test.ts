import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { formatEta, Progress, progressWanted } from './progress.js';
import { toConfig } from './config.js';
import { serve } from './serve.js';
import { REPO, runCli } from './test-support/run-cli.js';

function recorder(): { out: { write(s: string): void }; text: () => string } {
  let text = '';
  return { out: { write: (s: string) => void (text += s) }, text: () => text };
}

describe('progress on stderr', () => {
  it('on a terminal: one line redrawn in place (\\r, clear to end of line), ended by a newline', () => {
    let t = 0;
    const r = recorder();
    const p = new Progress(r.out, true, true, () => t);
    p.begin('[1/2] sweep', 4, 'requests');
    t = 1000;
    p.tick();
    t = 2000;
    p.tick();
    p.end();
    const frames = r.text().split('\r\x1b[K').filter(Boolean);
    expect(frames[0]).toBe('[1/2] sweep  0/4 requests    0%  ETA ?');
    // Two requests in 2 s: two more take about 2 s.
    expect(frames).toContain('[1/2] sweep  2/4 requests   50%  ETA 2s');
    expect(frames.at(-1)).toBe('[1/2] sweep  4/4 requests  100%  done in 2s\n');
  });

  it('not a terminal (with --progress): a line per tenth, no control characters', () => {
    const r = recorder();
    const p = new Progress(r.out, true, false, () => 0);
    p.begin('replay', 100, 'requests');
    for (let i = 0; i < 100; i++) p.tick();
    p.end();
    const lines = r.text().trim().split('\n');
    expect(lines).toHaveLength(11);
    expect(r.text()).not.toMatch(/[\r\x1b]/);
    expect(lines.at(-1)).toMatch(/^replay {2}100\/100 requests {2}100% {2}done in 0s$/);
  });

  it('off: writes nothing; wanted by default only when stderr is a terminal', () => {
    const r = recorder();
    const p = new Progress(r.out, false, true);
    p.note('x');
    p.begin('a', 3, 'requests');
    p.tick();
    p.end();
    expect(r.text()).toBe('');
    expect(progressWanted(undefined, { isTTY: true })).toBe(true);
    expect(progressWanted(undefined, { isTTY: false })).toBe(false);
    expect(progressWanted(true, { isTTY: false })).toBe(true);
    expect(progressWanted(false, { isTTY: true })).toBe(false);
    expect([formatEta(5), formatEta(245), formatEta(3720)]).toEqual(['5s', '4m05s', '1h02m']);
  });

  it('sluice replay --json --progress: the counter on stderr, stdout still one JSON document; quiet without --progress', { timeout: 60_000 }, async ({ onTestFinished }) => {
    const origin = await startFixtureOrigin();
    onTestFinished(() => origin.close());
    const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [origin.url], quiet: true }), () => undefined);
    onTestFinished(() => s.close());
    const trace = path.join(REPO, 'fixtures/varnishlog/recorded-request.log');
    const r = await runCli(['replay', trace, '--target', s.url, '--asap', '--json', '--progress']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { summary: { replayed: number } }).summary.replayed).toBe(30);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^replay http:\/\/127\.0\.0\.1:\d+ {2}0\/30 requests {4}0% {2}ETA \?$/);
    expect(lines.at(-1)).toMatch(/^replay http:\/\/127\.0\.0\.1:\d+ {2}30\/30 requests {2}100% {2}done in \d+s$/);
    const quiet = await runCli(['replay', trace, '--target', s.url, '--asap', '--json']);
    expect(quiet.stderr).toBe('');
  });

  it('sluice bench --json --progress: a counter within each scenario on stderr, JSON on stdout', { timeout: 120_000 }, async () => {
    const r = await runCli(['bench', '--quick', '--scenario', 'coalesce', '--json', '--progress']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { scenarios: Array<{ name: string }> }).scenarios.map((x) => x.name)).toEqual(['coalesce']);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe('starting origins and proxies ...');
    expect(lines).toContain('[1/1] coalesce  0/20 clients    0%  ETA ?');
    expect(lines.some((l) => /^\[1\/1\] coalesce {2}\d+\/20 clients +\d+% {2}ETA \d+s$/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^\[1\/1\] coalesce {2}20\/20 clients {2}100% {2}done in \d+s$/);
  });
});
