import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { percentiles } from './percentiles.js';
import { formatTable, terminalWidth } from './table.js';
import { toConfig } from './config.js';
import { serve } from './serve.js';
import { CLI_ENV, REPO, runCli } from './test-support/run-cli.js';

describe('the table helper', () => {
  const cols = [{ header: 'name' }, { header: 'n', align: 'right' as const }, { header: 'what', shrink: true, min: 10 }];
  const rows = [
    ['a', '1', 'short'],
    ['a-much-longer-name', '12345', 'a description that goes on for quite a while, longer than any terminal line should be'],
  ];

  it('aligns every column on its widest cell, numbers to the right, no trailing spaces', () => {
    const lines = formatTable(cols, rows);
    expect(lines[0]).toBe('name                    n  what');
    expect(lines[1]).toBe('a                       1  short');
    expect(lines[2]?.startsWith('a-much-longer-name  12345  a description')).toBe(true);
    for (const l of lines) expect(l).toBe(l.trimEnd());
  });

  it('fits a width by cutting the shrinkable column with an ellipsis, never below its minimum', () => {
    const lines = formatTable(cols, rows, { width: 50 });
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(50);
    expect(lines[2]).toMatch(/…$/);
    const narrow = formatTable(cols, rows, { width: 10 });
    expect(narrow[2]).toMatch(/^a-much-longer-name {2}12345 {2}.{9}…$/);
  });

  it('COLUMNS sets the width; without it a pipe gets every character', () => {
    expect(terminalWidth(process.stdout, { COLUMNS: '72' })).toBe(72);
    expect(terminalWidth({ isTTY: false, columns: 0 } as unknown as NodeJS.WriteStream, {})).toBeUndefined();
  });
});

describe('the percentile helper', () => {
  it('nearest rank: p50 of 1..10 is 5, p90 is 9, p99 and max are 10; undefined and NaN are left out', () => {
    const xs = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, undefined, NaN];
    expect(percentiles(xs)).toEqual({ p50: 5, p90: 9, p99: 10, max: 10, n: 10 });
  });

  it('rounds to the decimals asked; an empty sample has n 0', () => {
    expect(percentiles([1.23456], 2)).toEqual({ p50: 1.23, p90: 1.23, p99: 1.23, max: 1.23, n: 1 });
    expect(percentiles([]).n).toBe(0);
  });
});

describe('tables through the real binary', () => {
  it('sluice replay with COLUMNS=80: every report line fits, URLs cut with an ellipsis', async ({ onTestFinished }) => {
    const origin = await startFixtureOrigin();
    onTestFinished(() => origin.close());
    const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [origin.url], quiet: true }), () => undefined);
    onTestFinished(() => s.close());
    const trace = path.join(REPO, 'fixtures/varnishlog/recorded-request.log');
    const r = await runCli(['replay', trace, '--target', s.url, '--asap'], { env: { ...CLI_ENV, COLUMNS: '80' } });
    expect(r.code).toBe(0);
    const table = r.stdout.split('\n\n')[0]?.split('\n') ?? [];
    expect(table[0]).toMatch(/^seq {2}method {2}url +recorded +observed +ttfb ms$/);
    expect(table).toHaveLength(31);
    for (const l of table) expect(l.length).toBeLessThanOrEqual(80);
    expect(table.some((l) => l.includes('/chunked?chunks=3…') || l.includes('…'))).toBe(true);
    const wide = await runCli(['replay', trace, '--target', s.url, '--asap']);
    expect(wide.stdout).toContain('/chunked?chunks=3&delay=50');
  });
});
