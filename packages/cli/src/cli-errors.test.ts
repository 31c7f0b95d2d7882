import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin } from '@sluice/fixtures';
import { runCli, startCli, type CliResult } from './test-support/run-cli.js';
import { busyPort, freePort } from './test-support/ports.js';

// Issue 15, "Errors and exit codes": every failure is one whole line on stderr (no stack, no banner cut to its first
// line); exit 2 when the command line is wrong, 1 when the work failed.

/** One line on stderr, no stack frame, nothing cut at a colon. */
function expectOneLine(r: CliResult): void {
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(lines[0]).not.toMatch(/:$/);
}

const LISTENING = /listening on (http:\/\/[\d.]+:\d+)[\s\S]*admin API on (http:\S+)/;

describe('usage errors: the whole message on one line, exit 2', () => {
  it.each([
    [['replay', 'trace.log'], /^sluice: Missing required flag --target\b.*See sluice replay --help/],
    [['ban'], /^sluice: Missing 1 required arg: expr \(ban expression\)\. See (sluice|node \S+run\.js) ban --help/],
    // No note about --target eating the argument: it takes one value per flag.
    [['replay'], /^sluice: Missing 1 required arg: trace \(Trace file to replay\)\. See sluice replay --help\.\n$/],
    [['replay', '--target', 'http://127.0.0.1:9', '/nonexistent/trace.log'], /^sluice: cannot read \/nonexistent\/trace\.log: no such file\n$/],
    [['proxy', '--backend', 'http://127.0.0.1:1', '--max-ranges', 'abc'], /^sluice: --max-ranges: Expected an integer but received: abc\b/],
    [['proxy', '--backend', 'http://127.0.0.1:1', '--max-ranges', '0'], /^sluice: --max-ranges: Expected an integer greater than or equal to 1 but received: 0\b/],
    [['origin', '--fast', '--sample'], /^sluice: --fast=true cannot also be provided when using --sample\b/],
  ])('%j', async (args, message) => {
    const r = await runCli(args);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('The following error occurred');
    expectOneLine(r);
    expect(r.code).toBe(2);
  });

  it('--log-file in a missing directory: one line before listening, not a crash after', async () => {
    const r = await runCli(['proxy', '--listen', '127.0.0.1:0', '--backend', 'http://127.0.0.1:1', '--log', 'text', '--log-file', '/nonexistent/dir/x.log']);
    expect(r.stderr).toMatch(/^sluice: --log-file: cannot open \/nonexistent\/dir\/x\.log \(ENOENT: no such file or directory\)\n$/);
    expect(r.stdout).not.toContain('listening');
    expectOneLine(r);
    expect(r.code).toBe(2);
  });
});

describe('runtime failures: one line, exit 1', () => {
  it('an unreachable admin API', async () => {
    const port = await freePort();
    const r = await runCli(['stats', '--admin', `http://127.0.0.1:${port}`, '--token', 'abcdefgh']);
    expect(r.stderr).toBe(`sluice: cannot reach the admin API at http://127.0.0.1:${port} (ECONNREFUSED)\n`);
    expect(r.code).toBe(1);
  });

  it('sluice origin on a busy port names the address', async ({ onTestFinished }) => {
    const busy = await busyPort();
    onTestFinished(busy.close);
    const r = await runCli(['origin', '--listen', `127.0.0.1:${busy.port}`]);
    expect(r.stderr).toBe(`sluice: --listen: cannot listen on 127.0.0.1:${busy.port}: EADDRINUSE (address already in use)\n`);
    expect(r.code).toBe(1);
  });

  it('a busy admin port is named as the admin address, not the client one', async ({ onTestFinished }) => {
    const busy = await busyPort();
    onTestFinished(busy.close);
    const r = await runCli(['proxy', '--listen', '127.0.0.1:0', '--backend', 'http://127.0.0.1:1', '--admin-listen', `127.0.0.1:${busy.port}`]);
    expect(r.stderr).toBe(`sluice: --admin-listen: cannot listen on 127.0.0.1:${busy.port}: EADDRINUSE (address already in use)\n`);
    expect(r.code).toBe(1);
  });

  it('a busy client port is named as the client address', async ({ onTestFinished }) => {
    const busy = await busyPort();
    onTestFinished(busy.close);
    const r = await runCli(['proxy', '--listen', `127.0.0.1:${busy.port}`, '--backend', 'http://127.0.0.1:1']);
    expect(r.stderr).toBe(`sluice: --listen: cannot listen on 127.0.0.1:${busy.port}: EADDRINUSE (address already in use)\n`);
    expect(r.code).toBe(1);
  });

  it('HTTP 401 and a bad ban expression from the admin API', async ({ onTestFinished }) => {
    const { match } = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', 'http://127.0.0.1:1', '--admin-listen', '127.0.0.1:0', '--admin-token', 's3cret-token'], LISTENING, onTestFinished);
    const admin = match[2] as string;
    const wrong = await runCli(['stats', '--admin', admin, '--token', 'wrong-token']);
    expect(wrong.stderr).toBe('sluice: admin API GET /stats: 401 missing or wrong bearer token\n');
    expect(wrong.code).toBe(1);
    const ban = await runCli(['ban', 'req.nope ~ x', '--admin', admin, '--token', 's3cret-token']);
    expect(ban.stderr).toMatch(/^sluice: admin API POST \/ban: 400 .*req\.nope/);
    expectOneLine(ban);
    expect(ban.code).toBe(1);
  });
});

describe('sluice purge', () => {
  it('a path without --host that matched nothing says the key includes the Host, and how to give it', async ({ onTestFinished }) => {
    const origin = await startFixtureOrigin();
    onTestFinished(() => origin.close());
    const { match } = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--admin-listen', '127.0.0.1:0', '--admin-token', 's3cret-token'], LISTENING, onTestFinished);
    const [, url, admin] = match as unknown as [string, string, string];
    await (await request(`${url}/static/1k`)).body.text();
    const auth = ['--admin', admin, '--token', 's3cret-token'];
    const bare = await runCli(['purge', '/static/1k', ...auth]);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toBe('purged 0 objects\n');
    expect(bare.stderr).toBe('sluice: nothing matched: the cache key includes the Host, and none was given; purge http://HOST/static/1k or add --host HOST (the Host clients send)\n');
    const withHost = await runCli(['purge', '/static/1k', '--host', new URL(url).host, ...auth]);
    expect(withHost.stdout).toBe('purged 1 object\n');
    expect(withHost.stderr).toBe('');
  });
});
