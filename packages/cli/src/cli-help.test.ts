import { describe, expect, it } from 'vitest';
import { runCli } from './test-support/run-cli.js';

// Issue 15, oclif conventions: `help` as a command, -h, suggestions for typos, truthful help text.

const COMMANDS = ['ban', 'bench', 'check', 'demo', 'help', 'log', 'origin', 'proxy', 'purge', 'replay', 'stats'];

describe('sluice help', () => {
  it('`sluice help` lists every command and says what Sluice is', async () => {
    const r = await runCli(['help']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} +\\S`, 'm'));
    expect(r.stdout).not.toContain('proxy, demo, origin');
    expect(r.stdout).toMatch(/^Sluice, a streaming caching HTTP reverse proxy/);
    // The bare `sluice --help` prints the same.
    expect((await runCli(['--help'])).stdout).toBe(r.stdout);
  });

  it('`sluice help proxy` and `sluice proxy -h` print what `sluice proxy --help` prints', async () => {
    const long = await runCli(['proxy', '--help']);
    expect(long.code).toBe(0);
    expect(long.stdout).toContain('--max-ranges=N');
    for (const args of [['help', 'proxy'], ['proxy', '-h']]) {
      const r = await runCli(args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(long.stdout);
    }
  });

  it('the backend topic: listed by `sluice help`; `sluice help backend` and `sluice help backend set-health` show it', { timeout: 90_000 }, async () => {
    const top = await runCli(['help']);
    expect(top.stdout).toMatch(/^TOPICS\n {2}backend +List a running proxy's backends/m);
    const topic = await runCli(['help', 'backend']);
    expect(topic.code).toBe(0);
    expect(topic.stdout).toMatch(/^ {2}backend list +/m);
    expect(topic.stdout).toMatch(/^ {2}backend set-health +/m);
    const one = await runCli(['help', 'backend', 'set-health']);
    expect(one.code).toBe(0);
    expect(one.stdout).toBe((await runCli(['backend', 'set-health', '--help'])).stdout);
    expect(one.stdout).toContain('varnishadm backend.set_health');
  });

  it('proxy --help says --backend is required unless the --config file lists backends', async () => {
    const r = await runCli(['proxy', '--help']);
    expect(r.stdout).toMatch(/\$ sluice proxy --backend URL\.\.\. \[FLAGS\]\n\s+\$ sluice proxy --config FILE \[FLAGS\]/);
    expect(r.stdout).toMatch(/--backend=URL\.\.\.\n\s+Origin server URL; required unless the --config file lists\s+backends\./);
  });
});

describe('an unknown command', () => {
  it.each([
    [['prxy'], 'sluice: unknown command "prxy"; did you mean "proxy"? (sluice help lists the commands)\n'],
    [['prxy', '--backend', 'http://127.0.0.1:1'], 'sluice: unknown command "prxy"; did you mean "proxy"? (sluice help lists the commands)\n'],
    [['replya', 'x.log'], 'sluice: unknown command "replya"; did you mean "replay"? (sluice help lists the commands)\n'],
    [['help', 'prxy'], 'sluice: unknown command "prxy"; did you mean "proxy"? (sluice help lists the commands)\n'],
    [['frobnicate'], 'sluice: unknown command "frobnicate" (sluice help lists the commands)\n'],
    [['backend', 'lst'], 'sluice: unknown command "backend lst"; did you mean "backend list"? (sluice help lists the commands)\n'],
    [['help', 'backend', 'set-helth'], 'sluice: unknown command "backend set-helth"; did you mean "backend set-health"? (sluice help lists the commands)\n'],
  ])('%j gets a suggestion and exit 2', async (args, message) => {
    const r = await runCli(args);
    expect(r.stderr).toBe(message);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(2);
  });
});
