import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startFixtureOrigin } from '@sluice/fixtures';
import { toConfig } from './config.js';
import { serve } from './serve.js';
import { BIN, runCli } from './test-support/run-cli.js';

const TOKEN = 's3cret-token';

/** A proxy with its admin API, in this process (so the test can see when `sluice log` has attached). */
async function running(onEnd: (fn: () => Promise<void>) => void) {
  const origin = await startFixtureOrigin();
  onEnd(() => origin.close());
  const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [origin.url], 'admin-listen': '127.0.0.1:0', 'admin-token': TOKEN, quiet: true }), () => undefined);
  onEnd(() => s.close());
  return s;
}

/** Starts `sluice log ...`, waits until it is attached, runs `traffic`, and returns what it printed. */
async function tail(s: Awaited<ReturnType<typeof running>>, args: string[], traffic: () => Promise<void>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn(process.execPath, [BIN, 'log', '--admin', s.adminUrl as string, '--token', TOKEN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += String(d)));
  p.stderr.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => p.on('exit', resolve));
  while (!s.live.active) {
    if (p.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await traffic();
  const code = await exited;
  return { code, stdout, stderr };
}

const get2 = async (agent: Agent, url: string, headers: Record<string, string>): Promise<void> => {
  const r = await request(url, { headers, dispatcher: agent });
  await r.body.text();
};

const get = async (base: string, path: string): Promise<void> => {
  const r = await request(`${base}${path}`);
  await r.body.text();
};

describe('sluice log', () => {
  it('prints request groups in varnishlog layout while attached, then stops after --count', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    expect(s.live.active).toBe(false);
    const r = await tail(s, ['--count', '2'], async () => {
      await get(s.url, '/static/10');
      await get(s.url, '/static/10');
    });
    expect(r.code).toBe(0);
    const blocks = r.stdout.split('\n\n').filter(Boolean);
    expect(blocks).toHaveLength(2);
    expect(blocks[0]).toMatch(/^\* {3}<< Request  >> \d+ +\n/);
    expect(blocks[0]).toMatch(/\n\*\* {2}<< BeReq {4}>> \d+/);
    expect(blocks[0]).toMatch(/\n- {3}ReqURL {9}\/static\/10\n/);
    expect(blocks[1]).toMatch(/\n- {3}Hit {12}\d+ /);
    expect(blocks[1]).toMatch(/\n- {3}ReqAcct {8}\d+ 0 \d+ \d+ 10 \d+\n/);
    // Detached again: the proxy stops building records.
    for (let i = 0; i < 100 && s.live.active; i++) await new Promise((res) => setTimeout(res, 10));
    expect(s.live.active).toBe(false);
  });

  it('filters by URL and status class on the proxy side', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const r = await tail(s, ['--url', '^/nothing', '--status', '4xx', '--count', '1', '--ndjson'], async () => {
      await get(s.url, '/static/5');
      await get(s.url, '/nothing/here');
    });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const g = JSON.parse(lines[0] as string) as { records: Array<[string, string]> };
    expect(g.records.find(([t]) => t === 'ReqURL')?.[1]).toBe('/nothing/here');
    expect(g.records.filter(([t]) => t === 'RespStatus').pop()?.[1]).toBe('404');
  });

  it('-g vxid prints one block per transaction, sessions included', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const r = await tail(s, ['-g', 'vxid', '--count', '2'], async () => {
      const res = await request(`${s.url}/static/7`, { headers: { connection: 'close' } });
      await res.body.text();
    });
    expect(r.code).toBe(0);
    const heads = r.stdout.split('\n').filter((l) => l.startsWith('*'));
    expect(heads.map((h) => h.replace(/>> \d+ +$/, '>>'))).toEqual(['*   << BeReq    >>', '*   << Request  >>', '*   << Session  >>']);
    expect(r.stdout).toMatch(/\n- {3}SessClose {6}(REQ_CLOSE|REM_CLOSE|RESP_CLOSE) [\d.]+\n/);
  });

  it('-g session prints a connection with its requests when it closes', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const r = await tail(s, ['-g', 'session', '--count', '1'], async () => {
      // Two requests on one connection, the second closes it.
      const agent = new Agent({ connections: 1 });
      await get2(agent, `${s.url}/static/3`, {});
      await get2(agent, `${s.url}/static/4`, { connection: 'close' });
      await agent.close();
    });
    expect(r.code).toBe(0);
    const heads = r.stdout.split('\n').filter((l) => l.startsWith('*')).map((h) => h.replace(/>> \d+ +$/, '>>'));
    expect(heads).toEqual(['*   << Session  >>', '**  << Request  >>', '**  << Request  >>', '*** << BeReq    >>', '*** << BeReq    >>']);
    expect(r.stdout).toMatch(/\n- {3}SessClose {6}REQ_CLOSE [\d.]+\n/);
  });

  it('-q: a varnishlog query (tag, Tag:Header, numbers, regex, and/or/not, parentheses) picks the groups', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const q = 'ReqURL ~ "^/static/2" and RespStatus >= 200 and (ReqHeader:X-Pick eq "yes" or not ReqHeader:X-Pick) and {2}BerespStatus == 200';
    const r = await tail(s, ['-q', q, '--count', '1'], async () => {
      await get(s.url, '/static/1');
      await get2(new Agent(), `${s.url}/static/2`, { 'x-pick': 'no' });
      await get2(new Agent(), `${s.url}/static/20`, { 'x-pick': 'yes' });
    });
    expect(r.code).toBe(0);
    const urls = r.stdout.split('\n').filter((l) => /^- {3}ReqURL /.test(l));
    expect(urls).toEqual(['-   ReqURL         /static/20']);
  });

  it('-g raw prints one record per line (vxid, tag, c or b, value), with -q per transaction', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const r = await tail(s, ['-g', 'raw', '-q', 'BerespStatus == 200', '--count', '1'], async () => {
      await get(s.url, '/static/9');
    });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    for (const l of lines) expect(l).toMatch(/^ {0,9}\d+ \S+ +b /);
    expect(lines[0]).toMatch(/^ +\d+ Begin {10}b bereq \d+ fetch$/);
    expect(lines).toContainEqual(expect.stringMatching(/^ +\d+ BerespStatus {3}b 200$/));
    expect(lines.at(-1)).toMatch(/ End {12}b $/);
  });

  it('the admin /log route wants the token and a valid query', async ({ onTestFinished }) => {
    const s = await running(onTestFinished);
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await request(`${s.adminUrl}/log`)).statusCode).toBe(401);
    const bad = await request(`${s.adminUrl}/log?status=teapot`, { headers: auth });
    expect(bad.statusCode).toBe(400);
    expect(await bad.body.json()).toEqual({ error: 'status must be a code (404) or a class (5xx), not "teapot"' });
    const grouping = await request(`${s.adminUrl}/log?grouping=raw`, { headers: auth });
    expect(grouping.statusCode).toBe(400);
    await grouping.body.text();
    expect(s.live.active).toBe(false);
  });

  it.each([
    [['log', '--token', TOKEN, '--status', 'teapot'], /^sluice: --status: "teapot" is not a status/],
    [['log', '--token', TOKEN, '--url', '('], /^sluice: --url: "\(" is not a regular expression/],
    [['log', '--token', TOKEN, '-q', 'RespStatus >= high'], /^sluice: -q: ">=" compares numbers, and "high" is not one/],
    [['log', '--token', TOKEN, '-q', '(ReqURL ~ x'], /^sluice: -q: missing "\)" in the query/],
  ])('bad input %j: one line, exit 2', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  // Issue 15: an unreachable admin API is a runtime failure (exit 1), not a usage error (it exited 2 before).
  it('an unreachable admin API: one line, exit 1', async () => {
    const r = await runCli(['log', '--token', TOKEN, '--admin', 'http://127.0.0.1:9']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sluice: cannot reach the admin API at http:\/\/127\.0\.0\.1:9/);
  });
});
