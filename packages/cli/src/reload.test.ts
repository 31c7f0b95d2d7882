import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin } from '@sluice/fixtures';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

/** Reload without losing the cache (as Varnish's vcl.load/vcl.use): SIGHUP or POST /reload reads --config again. */
const policy = (tag: string, extra = ''): string => `export default { ${extra} hooks: { responseFilter(resp) { resp.headers['x-policy'] = '${tag}'; } } };\n`;

describe('reload', () => {
  it('SIGHUP and POST /reload apply new hooks to new requests, keep the cache, and keep the running policy when the file is broken', async () => {
    const origin = await startFixtureOrigin();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-reload-'));
    const file = path.join(dir, 'sluice.config.mjs');
    writeFileSync(file, policy('v1'));
    const p = spawn(process.execPath, [BIN, 'proxy', '--config', file, '--backend', origin.url, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--admin-token', 's3cret-token', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    let out = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (out += String(d)));
    const waitFor = async (re: RegExp, from = 0): Promise<RegExpExecArray> => {
      for (;;) {
        const m = re.exec(out.slice(from));
        if (m !== null) return m;
        if (p.exitCode !== null) throw new Error(`proxy exited: ${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      const url = (await waitFor(/listening on (http:\S+),/))[1] as string;
      const adminUrl = (await waitFor(/admin API on (http:\S+)/))[1] as string;
      const get = async (): Promise<{ policy: unknown; cache: string }> => {
        const r = await request(`${url}/static/10`);
        await r.body.text();
        return { policy: r.headers['x-policy'], cache: String(r.headers['cache-status']) };
      };
      expect(await get()).toMatchObject({ policy: 'v1', cache: expect.stringMatching(/fwd=uri-miss/) as unknown });
      expect((await get()).cache).toMatch(/^sluice; hit;/);

      writeFileSync(file, policy('v2'));
      let mark = out.length;
      p.kill('SIGHUP');
      expect((await waitFor(/SIGHUP, (.*)\n/, mark))[1]).toBe(`reloaded ${file}`);
      expect(await get()).toMatchObject({ policy: 'v2', cache: expect.stringMatching(/^sluice; hit;/) as unknown });

      writeFileSync(file, 'export default { hooks: { responseFilter( };\n');
      mark = out.length;
      p.kill('SIGHUP');
      expect((await waitFor(/SIGHUP, (.*)\n/, mark))[1]).toMatch(/^reload failed, the running configuration stays: --config: \S+sluice\.config\.mjs:1:\d+: /);
      expect((await get()).policy).toBe('v2');

      writeFileSync(file, policy('v3', "storage: '1GB',"));
      const r = await request(`${adminUrl}/reload`, { method: 'POST', headers: { authorization: 'Bearer s3cret-token' } });
      expect(r.statusCode).toBe(200);
      expect(await r.body.json()).toEqual({ reloaded: `reloaded ${file}; a restart is needed to change storage` });
      expect(await get()).toMatchObject({ policy: 'v3', cache: expect.stringMatching(/^sluice; hit;/) as unknown });
      expect(origin.hits('/static/10')).toBe(1);
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
      await origin.close();
    }
  });
});
