import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFixtureOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { loadConfigFile, toConfig } from './config.js';
import { readTrace } from './replay/trace.js';
import { serve } from './serve.js';
import { REPO, runCli } from './test-support/run-cli.js';

/**
 * Issue 14: a trace recorded by a real varnishd (Debian's 7.1.1) with restarts and ESI in it.
 * fixtures/scripts/record-varnish-policy.sh ran it in front of the fixture origin with a VCL that restarts a 404 under
 * /restart/ once as /static/1k (vcl_deliver) and sets beresp.do_esi for /esi/page (which includes /esi/frag), and sent
 * 12 requests. These tests read the committed files only (varnish is not needed) and replay the request log against
 * Sluice configured with fixtures/varnish-policy.config.ts, the same policy as hooks.
 */
const DIR = path.join(REPO, 'fixtures/varnishlog');
const LOG = path.join(DIR, 'recorded-policy-request.log');
const RAW = path.join(DIR, 'recorded-policy-raw.log');
const POLICY = path.join(REPO, 'fixtures/varnish-policy.config.ts');

interface Report {
  summary: { requests: number; replayed: number; skipped: number; errors: number; statusMismatches: number; outcomeMismatches: number; outcomesCompared: number };
  requests: Array<{ method: string; url: string; recorded: { status?: number; outcome?: string }; observed: { status?: number; outcome?: string } }>;
  skipped: Array<{ ref: string; reason: string }>;
}

/** [URL, status, outcome] of each client request, in the order the script sent them (recorded-policy-requests.txt). */
const EXPECTED: Array<[string, number, string]> = [
  ['/restart/a', 200, 'miss'], // 404 miss, restarted as /static/1k: miss
  ['/restart/a', 200, 'hit'], // 404 hit, restarted: /static/1k hit
  ['/restart/b', 200, 'hit'], // 404 miss, restarted: /static/1k hit
  ['/esi/page', 200, 'miss'], // page miss, its include /esi/frag a miss
  ['/esi/page', 200, 'hit'], // page hit, include hit
  ['/esi/frag', 200, 'hit'],
  ['/static/2k', 200, 'miss'],
  ['/static/2k', 200, 'hit'],
  ['/missing', 404, 'miss'], // a 404 outside /restart/ is not restarted
  ['/missing', 404, 'hit'],
  ['/private', 200, 'miss'], // builtin.vcl: uncacheable, hit-for-miss
  ['/esi/page', 200, 'hit'],
];

async function sluiceWithPolicy(onEnd: (fn: () => Promise<void>) => void): Promise<{ url: string; origin: FixtureOrigin }> {
  const origin = await startFixtureOrigin();
  onEnd(() => origin.close());
  // As `sluice proxy --backend <origin> --config fixtures/varnish-policy.config.ts` builds it.
  const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [origin.url], quiet: true }, await loadConfigFile(POLICY)), () => undefined);
  onEnd(() => s.close());
  return { url: s.url, origin };
}

/** The URLs varnishd fetched from the origin (BereqURL of each BeReq group), counted per path. */
function recordedFetches(): Record<string, number> {
  const n: Record<string, number> = {};
  for (const m of readFileSync(LOG, 'utf8').matchAll(/^-+ +BereqURL +(\S+)$/gm)) n[m[1] as string] = (n[m[1] as string] ?? 0) + 1;
  return n;
}

describe('a real Varnish trace with restarts and ESI (fixtures/varnishlog/recorded-policy-*)', () => {
  it('the committed files hold the 12 requests sent, and varnishd logged the restarts and ESI includes as expected', () => {
    const sent = readFileSync(path.join(DIR, 'recorded-policy-requests.txt'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(sent.map((l) => l.split('\t').slice(1, 2).concat(new URL(l.split('\t')[2] as string).pathname))).toEqual(EXPECTED.map(([u, s]) => [String(s), u]));
    const text = readFileSync(LOG, 'utf8');
    // Varnish prints a restarted request as a group of its own at the top level, begun by its predecessor's vxid, and
    // an ESI include one level down, begun by the page's.
    expect(text.match(/^- {3}Link {11}req \d+ restart$/gm)).toHaveLength(3);
    expect(text.match(/^\* {3}<< Request {2}>> \d+ *\n- {3}Begin {10}req \d+ restart$/gm)).toHaveLength(3);
    expect(text.match(/^- {3}Link {11}req \d+ esi$/gm)).toHaveLength(3);
    expect(text.match(/^-- {2}Begin {10}req \d+ esi$/gm)).toHaveLength(3);
  });

  it('parses into the 12 client requests: restarts followed to the request the client got, ESI includes left to the target', () => {
    for (const file of [LOG, RAW]) {
      const trace = readTrace(file);
      expect(trace.requests.map((r) => [r.url, r.recorded.status, r.recorded.outcome]), file).toEqual(EXPECTED);
      expect(trace.requests.slice(0, 3).map((r) => r.notes.some((n) => /^restarted into request \d+$/.test(n)))).toEqual([true, true, true]);
      expect(trace.skipped, file).toHaveLength(3);
      for (const k of trace.skipped) expect(k.reason).toMatch(/^ESI subrequest of request \d+: the target makes it/);
    }
  });

  it('-g request replayed against Sluice with the equivalent policy: every status and cache outcome matches', async ({ onTestFinished }) => {
    const { url: target, origin } = await sluiceWithPolicy(onTestFinished);
    const r = await runCli(['replay', LOG, '--target', target, '--asap', '--json', '--fail-on-mismatch']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.summary).toMatchObject({ requests: 15, replayed: 12, skipped: 3, errors: 0, statusMismatches: 0, outcomeMismatches: 0, outcomesCompared: 12 });
    expect(rep.requests.map((q) => [q.url, q.observed.status, q.observed.outcome])).toEqual(EXPECTED);
    expect(rep.requests.map((q) => [q.url, q.recorded.status, q.recorded.outcome])).toEqual(EXPECTED);
    // Sluice fetched from the origin what varnishd did, once each: the 404s and the fallback they restarted into, the
    // page and (as its include, before the direct request hit it) the fragment.
    expect(recordedFetches()).toEqual({ '/restart/a': 1, '/static/1k': 1, '/restart/b': 1, '/esi/page': 1, '/esi/frag': 1, '/static/2k': 1, '/missing': 1, '/private': 1 });
    expect(Object.fromEntries(origin.counters.perPath)).toEqual(recordedFetches());
  });

  it('-g raw (transactions interleaved) replays the same 12 requests with the same statuses and outcomes', async ({ onTestFinished }) => {
    const { url: target } = await sluiceWithPolicy(onTestFinished);
    const r = await runCli(['replay', RAW, '--target', target, '--asap', '--json', '--fail-on-mismatch']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.summary).toMatchObject({ replayed: 12, skipped: 3, errors: 0, statusMismatches: 0, outcomeMismatches: 0, outcomesCompared: 12 });
    expect(rep.requests.map((q) => [q.url, q.observed.status, q.observed.outcome])).toEqual(EXPECTED);
  });
});
