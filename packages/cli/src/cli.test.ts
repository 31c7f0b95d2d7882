import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { BIN, CLI_ENV, runCli } from './test-support/run-cli.js';


let child: ChildProcess | undefined;
let origin: FixtureOrigin | undefined;
afterEach(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  child = undefined;
  await origin?.close();
  origin = undefined;
});


/** Starts the CLI and resolves with the URL it prints once it listens. */
function startCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    child = p;
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out) ?? /Sluice demo: proxy (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('exit', (code) => reject(new Error(`exited ${String(code)}: ${err}`)));
  });
}

describe('sluice CLI', () => {
  it.each([
    [['proxy', '--backend', 'foo'], /^sluice: --backend: "foo" is not a URL/],
    [['proxy', '--backend', 'http://127.0.0.1:1', '--storage', 'lots'], /^sluice: --storage: "lots" is not a size/],
    [['proxy', '--backend', 'http://127.0.0.1:1', '--young-gc', 'often'], /^sluice: --young-gc: "often" is not a size/],
    [['proxy', '--backend', 'http://127.0.0.1:1', '--heap-growing', '-1'], /^sluice: --heap-growing: Expected an integer greater than or equal to 0/],
    [['proxy', '--nope'], /^sluice: Nonexistent flag: --nope/],
    [['proxy'], /^sluice: no backend/],
    [['proxy', '--config', '/does/not/exist.js'], /^sluice: --config: file not found/],
  ])('%o prints one line naming the problem and exits non-zero', async (args, msg) => {
    const r = await runCli(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(msg);
  });

  it('--help documents every flag with an example', async () => {
    const r = await runCli(['proxy', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--listen', '--backend', '--director', '--connect-allow', '--admin-listen', '--admin-token', '--purge-allow', '--log', '--log-file', '--config', '--storage', '--default-ttl', '--grace', '--keep', '--hit-for-miss-ttl', '--transit-buffer', '--stream-min-bytes', '--max-ranges', '--slice-size', '--slice-url', '--log-grouping', '--[no-]stream', '--quiet', '--young-gc', '--wasm-tier-up', '--heap-growing']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('sluice proxy --listen 127.0.0.1:6081 --backend http://127.0.0.1:8080');
  });

  it('runs the proxy from the documented invocation and caches', async () => {
    origin = await startFixtureOrigin();
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--storage', '16MB']);
    const a = await request(`${url}/static/1k`);
    await a.body.text();
    const b = await request(`${url}/static/1k`);
    expect(await b.body.text()).toHaveLength(1024);
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(origin.hits('/static/1k')).toBe(1);
  });

  it('loads a TypeScript --config module with settings and policy hooks', async () => {
    origin = await startFixtureOrigin();
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-cfg-'));
    const file = path.join(dir, 'sluice.config.ts');
    writeFileSync(
      file,
      `
      interface Resp { headers: Record<string, string | string[]> }
      const tag: string = 'from-config';
      export default {
        backends: ['${origin.url}'],
        storage: '8MB',
        hooks: {
          // Cache even with a Cookie (the builtin would pass).
          requestFilter(req: { headers: Record<string, unknown> }) { delete req.headers['cookie']; return undefined; },
          responseFilter(resp: Resp) { resp.headers['x-policy'] = tag; },
        },
      };
    `,
    );
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--config', file]);
    const a = await request(`${url}/static/100`, { headers: { cookie: 'a=1' } });
    await a.body.text();
    const b = await request(`${url}/static/100`, { headers: { cookie: 'b=2' } });
    await b.body.text();
    expect(b.headers['x-policy']).toBe('from-config');
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
  });

  it('demo runs the proxy in front of an embedded fixture origin and says what to curl', async () => {
    const url = await startCli(['demo', '--listen', '127.0.0.1:0']);
    const r = await request(`${url}/static/1k`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toHaveLength(1024);
  });

  it('demo with --admin-listen prints how to tail its log, and that command works', async () => {
    const p = spawn(process.execPath, [BIN, 'demo', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    child = p;
    let out = '';
    const m = await new Promise<RegExpExecArray>((resolve) => {
      p.stdout.on('data', (d) => {
        out += String(d);
        // Waits for the stats line too: the two lines may arrive in separate chunks.
        const found = /Sluice demo: proxy (http:\S+)[\s\S]*sluice log --admin (http:\S+) --token (\S+)[\s\S]*sluice stats .*\n/.exec(out);
        if (found !== null) resolve(found);
      });
    });
    const [, url, admin, token] = m as unknown as [string, string, string, string];
    expect(out).toContain(`sluice stats --admin ${admin} --token ${token}`);
    const tail = runCli(['log', '--admin', admin, '--token', token, '--count', '1']);
    // Requests until the tail has attached and printed one group (bounded: at most 600, some 30 s; the `sluice log`
    // process alone can take several seconds to start on a loaded machine).
    let done = false;
    void tail.then(() => (done = true));
    for (let i = 0; i < 600 && !done; i++) {
      await (await request(`${url}/static/1k`)).body.text();
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await tail;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\* {3}<< Request  >> \d+/);
    expect(r.stdout).toMatch(/\n- {3}ReqURL {9}\/static\/1k\n/);
  });

  it('config-file backends with a fallback director fail over from a dead backend', async () => {
    origin = await startFixtureOrigin();
    const dead = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-cfg-'));
    const file = path.join(dir, 'backends.mjs');
    writeFileSync(
      file,
      `export default { director: 'fallback', backends: [{ name: 'primary', url: 'http://127.0.0.1:${dead}' }, { name: 'spare', url: '${origin.url}', maxConnections: 4 }] };\n`,
    );
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--config', file]);
    for (let i = 0; i < 3; i++) {
      const r = await request(`${url}/static/10?i=${i}`);
      expect(r.statusCode).toBe(200);
      expect(await r.body.text()).toBe('abcdefghij');
    }
    expect(origin.hits('/static/10')).toBe(3);
  });

  it('config-file named directors: a hook sends /api/ over its director (shard by key), the rest over the default one', async ({ onTestFinished }) => {
    origin = await startFixtureOrigin();
    const api1 = await startFixtureOrigin();
    const api2 = await startFixtureOrigin();
    onTestFinished(async () => {
      await api1.close();
      await api2.close();
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-cfg-'));
    const file = path.join(dir, 'directors.mjs');
    writeFileSync(
      file,
      `export default {
        backends: [{ name: 'web', url: '${origin.url}' }, { name: 'api1', url: '${api1.url}' }, { name: 'api2', url: '${api2.url}' }],
        director: 'fallback',
        directors: { api: { type: 'shard', backends: ['api1', 'api2'] } },
        hooks: { requestFilter(req) { if (req.url.startsWith('/static/10?api')) req.backend = 'api'; return undefined; } },
      };\n`,
    );
    const check = await runCli(['check', '--config', file]);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/director api +shard over api1, api2/);
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--config', file]);
    for (let i = 0; i < 16; i++) expect(await (await request(`${url}/static/10?api=${i}`)).body.text()).toBe('abcdefghij');
    for (let i = 0; i < 3; i++) expect(await (await request(`${url}/static/10?web=${i}`)).body.text()).toBe('abcdefghij');
    // Sixteen keys sharded over the two api backends, none to web; the fallback default sends the rest to web.
    expect(api1.hits('/static/10') + api2.hits('/static/10')).toBe(16);
    expect(api1.hits('/static/10')).toBeGreaterThan(0);
    expect(api2.hits('/static/10')).toBeGreaterThan(0);
    expect(origin.hits('/static/10')).toBe(3);
  });

  it('serves the admin API with --admin-listen; stats, purge and ban work against it', async () => {
    origin = await startFixtureOrigin();
    const adminPort = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--admin-listen', `127.0.0.1:${adminPort}`, '--admin-token', 's3cret-token']);
    const admin = ['--admin', `http://127.0.0.1:${adminPort}`, '--token', 's3cret-token'];
    for (let i = 0; i < 2; i++) await (await request(`${url}/static/10`, { headers: { host: 'site.test' } })).body.text();
    const stats = await runCli(['stats', ...admin, '--json']);
    expect(stats.code, stats.stderr).toBe(0);
    expect((JSON.parse(stats.stdout) as { main: { cache_hit: number } }).main.cache_hit).toBe(1);
    const purge = await runCli(['purge', 'http://site.test/static/10', ...admin]);
    expect(purge.stdout.trim()).toBe('purged 1 object');
    const ban = await runCli(['ban', 'req.url ~ ^/static/', ...admin]);
    expect(ban.stdout.trim()).toBe('ban 1 added: req.url ~ ^/static/');
    const wrong = await runCli(['stats', '--admin', `http://127.0.0.1:${adminPort}`, '--token', 'wrong-token']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr.trim()).toBe('sluice: admin API GET /stats: 401 missing or wrong bearer token');
  });

  it('writes the transaction log as varnishlog text to --log-file', async () => {
    origin = await startFixtureOrigin();
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-log-'));
    const file = path.join(dir, 'tx.log');
    const url = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--log', 'text', '--log-file', file]);
    await (await request(`${url}/static/10`)).body.text();
    let text = '';
    while (!text.includes('<< BeReq')) {
      await new Promise((r) => setTimeout(r, 20));
      text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    }
    expect(text).toMatch(/^\*   << Request  >> \d+ +\n-   Begin          req \d+ rxreq\n/);
    expect(text).toMatch(/\n-   ReqURL         \/static\/10\n/);
    expect(text).toMatch(/\n--  BerespStatus   200\n/);
  });
});
