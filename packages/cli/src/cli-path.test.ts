import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BIN, REPO, startCli } from './test-support/run-cli.js';

// Issue 15, "Getting sluice on the PATH": the README's one command makes `sluice` a shell command, and what the
// project prints runs as printed, whether or not that command was run.

const run = promisify(execFile);
const NODE_DIR = path.dirname(process.execPath);
const DEMO = /Sluice demo: proxy (http:\S+)[\s\S]*\n {2}(.* stats --admin \S+ --token \S+) +# the counters[^\n]*\n/;

/** Runs one line through /bin/sh, exactly as a user pastes it. */
function shell(line: string, PATH: string): Promise<{ stdout: string; stderr: string }> {
  return run('/bin/sh', ['-c', line], { env: { PATH, HOME: tmpdir() }, cwd: tmpdir() });
}

describe('sluice on the PATH', () => {
  it('README: `npm link` in the clone makes `sluice` a command', async ({ onTestFinished }) => {
    expect(readFileSync(path.join(REPO, 'README.md'), 'utf8')).toMatch(/^npm link +# once: puts `sluice` on your PATH/m);
    // A throwaway npm prefix stands in for the global one.
    const prefix = mkdtempSync(path.join(tmpdir(), 'sluice-npm-prefix-'));
    onTestFinished(() => rmSync(prefix, { recursive: true, force: true }));
    await run('npm', ['link'], { cwd: REPO, env: { ...process.env, npm_config_prefix: prefix, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
    expect(existsSync(path.join(prefix, 'bin', 'sluice'))).toBe(true);
    const r = await shell('sluice help', [path.join(prefix, 'bin'), NODE_DIR].join(path.delimiter));
    expect(r.stdout).toMatch(/^ {2}proxy +Run the caching, streaming reverse proxy\.$/m);
  });

  it('with `sluice` on the PATH, the demo prints `sluice ...` lines, and they run as printed', async ({ onTestFinished }) => {
    const PATH = [path.join(REPO, 'node_modules/.bin'), NODE_DIR].join(path.delimiter);
    const args = ['demo', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--admin-token', 's3cret-token'];
    const { match } = await startCli(args, DEMO, onTestFinished, { env: { PATH } });
    const line = match[2] as string;
    // A token given with --admin-token is printed too (a placeholder would not run).
    expect(line).toMatch(/^sluice stats --admin http:\S+ --token s3cret-token$/);
    expect((await shell(line, PATH)).stdout).toMatch(/^MAIN\.client_req +\d+  Client requests received \(MAIN\.client_req\)$/m);
  });

  it('without `sluice` on the PATH, the demo prints lines that run all the same', async ({ onTestFinished }) => {
    const PATH = NODE_DIR;
    const { match } = await startCli(['demo', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], DEMO, onTestFinished, { env: { PATH } });
    const line = match[2] as string;
    expect(line.startsWith(`node ${BIN} stats `)).toBe(true);
    expect((await shell(line, PATH)).stdout).toMatch(/^MAIN\.client_req +\d+  Client requests received \(MAIN\.client_req\)$/m);
  });
});
