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
