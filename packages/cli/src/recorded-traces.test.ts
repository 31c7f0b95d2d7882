import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { toConfig } from './config.js';
import { serve } from './serve.js';
import { REPO, runCli } from './test-support/run-cli.js';

/**
 * The project's own Varnish traces: fixtures/scripts/record-varnish.sh ran Debian's varnishd 7.1 in front of the
 * fixture origin (`sluice origin`) and recorded 30 requests (miss, hit, HEAD, 304, ranges, pass, hit-for-miss,
 * chunked, 404, Vary, PURGE, an unknown method). These tests replay the committed files against Sluice in front of
 * the same fixture origin; varnish is not needed to run them.
 */
const DIR = path.join(REPO, 'fixtures/varnishlog');

interface Report {
  summary: { requests: number; replayed: number; skipped: number; errors: number; statusMismatches: number; outcomeMismatches: number; outcomesCompared: number };
  requests: Array<{ method: string; url: string; recorded: { status?: number; outcome?: string }; observed: { status?: number; outcome?: string } }>;
}

async function sluiceBehindFixture(onEnd: (fn: () => Promise<void>) => void): Promise<string> {
  const origin = await startFixtureOrigin();
  onEnd(() => origin.close());
  // PURGE from loopback is allowed, as the recording's VCL allowed it; Varnish's builtin rules (--profile varnish),
  // since the recording is Varnish's (the RFC profile stores the Set-Cookie response Varnish made hit-for-miss).
  const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [origin.url], 'purge-allow': ['127.0.0.1'], profile: 'varnish', quiet: true }), () => undefined);
  onEnd(() => s.close());
  return s.url;
}

describe('recorded Varnish traces (fixtures/varnishlog/recorded-*)', () => {
  it('the committed files hold the 30 requests the script sent, with the statuses curl saw', () => {
    const sent = readFileSync(path.join(DIR, 'recorded-requests.txt'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(sent).toHaveLength(30);
    const groups = readFileSync(path.join(DIR, 'recorded-request.log'), 'utf8').split('\n').filter((l) => l.startsWith('*   << Request  >>'));
    expect(groups).toHaveLength(30);
    expect(readFileSync(path.join(DIR, 'recorded-ncsa.log'), 'utf8').trim().split('\n')).toHaveLength(30);
  });

  it('-g request: Sluice gives every recorded status and cache outcome (--fail-on-mismatch exits 0)', async ({ onTestFinished }) => {
    const target = await sluiceBehindFixture(onTestFinished);
    const r = await runCli(['replay', path.join(DIR, 'recorded-request.log'), '--target', target, '--asap', '--json', '--fail-on-mismatch']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.summary).toMatchObject({ requests: 30, replayed: 30, skipped: 0, errors: 0, statusMismatches: 0, outcomeMismatches: 0 });
    expect(rep.summary.outcomesCompared).toBe(30);
    const outcomes = rep.requests.map((q) => q.observed.outcome);
    expect(outcomes.filter((o) => o === 'hit').length).toBe(12);
    expect(outcomes.filter((o) => o === 'pass').length).toBe(3);
    const purge = rep.requests.find((q) => q.method === 'PURGE');
    expect(purge?.observed.status).toBe(200);
  });

  it('-g raw (transactions interleaved) replays the same 30 requests in the same order', async ({ onTestFinished }) => {
    const target = await sluiceBehindFixture(onTestFinished);
    const r = await runCli(['replay', path.join(DIR, 'recorded-raw.log'), '--target', target, '--asap', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.summary).toMatchObject({ requests: 30, replayed: 30, errors: 0, statusMismatches: 0 });
    expect(rep.requests.slice(0, 3).map((q) => q.url)).toEqual(['/static/1k', '/static/1k', '/static/64k']);
  });

  it('varnishncsa output replays with the recorded statuses', async ({ onTestFinished }) => {
    const target = await sluiceBehindFixture(onTestFinished);
    const r = await runCli(['replay', path.join(DIR, 'recorded-ncsa.log'), '--target', target, '--asap', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.summary).toMatchObject({ requests: 30, replayed: 30, errors: 0 });
    // NCSA keeps only Host, Referer and User-Agent: the 304 (If-None-Match), the ranges and the Vary variants are
    // replayed without the headers that made them, so only the plain requests are expected to match.
    const plain = rep.requests.filter((q) => q.recorded.status === 200 && q.method === 'GET');
    expect(plain).toHaveLength(19);
    for (const q of plain) expect(q.observed.status, `${q.method} ${q.url}`).toBe(200);
  });
});
