import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_ENV, REPO, runCli } from './test-support/run-cli.js';

/** `sluice check` (as varnishd -C / nginx -t): valid settings print and exit 0, invalid ones one line and exit 1. */
describe('sluice check', () => {
  it('prints the effective settings of flags and a config file, exit 0', async () => {
    const r = await runCli(['check', '--config', path.join(REPO, 'fixtures/sample-vcl.config.mjs'), '--backend', 'http://127.0.0.1:8080', '--max-body-size', '10MB']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^backends\s+http:\/\/127\.0\.0\.1:8080$/m);
    expect(r.stdout).toMatch(/^default-ttl\s+120s$/m);
    expect(r.stdout).toMatch(/^max-body-size\s+10MB$/m);
    expect(r.stdout).toMatch(/^hooks\s+requestFilter$/m);
    expect(r.stdout).toMatch(/sluice: configuration OK \(.*sample-vcl\.config\.mjs\)\n$/);
  });

  it.each([
    [[], '1MB segments, objects of at least 16MB, read-ahead 4, as runs'],
    [['--no-slice-runs'], '1MB segments, objects of at least 16MB, read-ahead 4, no runs'],
    [['--slice-keep-body'], '1MB segments, objects of at least 16MB, read-ahead 4, as runs, the 200 kept as the first run'],
    [['--slice-runs', '--slice-read-ahead', '8'], '1MB segments, objects of at least 16MB, read-ahead 8, as runs'],
  ])('the slicer line: runs on by default with --slice (%o)', async (extra, line) => {
    const r = await runCli(['check', '--backend', 'http://127.0.0.1:8080', '--slice', '1MB', '--slice-min', '16MB', ...extra]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^slice\\s+${line}$`, 'm'));
  });

  it('the slicer line on arrival (--slice-size): no runs mentioned (runs need the meta object from a response)', async () => {
    const r = await runCli(['check', '--backend', 'http://127.0.0.1:8080', '--slice-size', '1MB']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^slice\s+1MB segments, as requests arrive, read-ahead 4$/m);
  });

  it.each([
    ['a bad flag value', ['--backend', 'http://127.0.0.1:8080', '--grace', 'soon'], /--grace: "soon" is not a duration/],
    ['no backend', [], /no backend/],
  ])('%s: one line naming it, exit 1, nothing on stdout', async (_name, args, message) => {
    const r = await runCli(['check', ...args]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });

  it('an unknown setting in the file: exit 1 naming it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-check-'));
    const file = path.join(dir, 'bad.config.mjs');
    writeFileSync(file, "export default { backends: ['http://127.0.0.1:8080'], graec: '30s' };\n");
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/configuration invalid: config: unknown setting "graec"/);
  });
});

describe('SLUICE_CONFIG', () => {
  it('names the config file when --config is not given', async () => {
    const r = await runCli(['check', '--backend', 'http://127.0.0.1:8080'], { env: { ...CLI_ENV, SLUICE_CONFIG: path.join(REPO, 'fixtures/sample-vcl.config.mjs') } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^hooks\s+requestFilter$/m);
  });
});

describe('config files: errors with file:line:column, JSON accepted', () => {
  const write = (name: string, text: string): string => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-config-'));
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it.each([
    ['a .mjs syntax error', 'bad.config.mjs', "export default {\n  grace: '30s',\n  hooks: { responseFilter( },\n};\n", /bad\.config\.mjs:3:\d+: /],
    ['a .ts syntax error', 'bad.config.ts', 'const a = 1;\nexport default {\n  grace: ,\n};\n', /bad\.config\.ts:3:10: Expression expected/],
    ['a JSON syntax error', 'bad.json', '{\n  "grace": "30s",\n}\n', /bad\.json:3:1: /],
  ])('%s is named with its position, exit 1', async (_name, file, text, where) => {
    const r = await runCli(['check', '--config', write(file, text), '--backend', 'http://127.0.0.1:8080']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(where);
  });

  it('a JSON config holds settings (hooks need a module)', async () => {
    const ok = await runCli(['check', '--config', write('sluice.json', '{ "grace": "30s", "backends": ["http://127.0.0.1:8080"] }\n')]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^grace\s+30s$/m);
    const hooks = await runCli(['check', '--config', write('hooks.json', '{ "hooks": {} }\n'), '--backend', 'http://127.0.0.1:8080']);
    expect(hooks.code).toBe(1);
    expect(hooks.stderr).toMatch(/hooks need a JS or TS module/);
  });
});
