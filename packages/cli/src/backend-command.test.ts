import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin } from '@sluice/fixtures';
import { toConfig } from './config.js';
import { serve } from './serve.js';
import { runCli } from './test-support/run-cli.js';

const TOKEN = 's3cret-token';

/** A proxy over two fixture origins (round-robin), with its admin API. */
async function twoBackends(onEnd: (fn: () => Promise<void>) => void) {
  const a = await startFixtureOrigin();
  const b = await startFixtureOrigin();
  onEnd(() => a.close());
  onEnd(() => b.close());
  const s = await serve(toConfig({ listen: '127.0.0.1:0', backend: [a.url, b.url], 'admin-listen': '127.0.0.1:0', 'admin-token': TOKEN, quiet: true }), () => undefined);
  onEnd(() => s.close());
  const admin = ['--admin', s.adminUrl as string, '--token', TOKEN];
  const names = [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`] as const;
  return { a, b, s, admin, names };
}

/** `n` requests that each reach an origin (no-store answers are never cached); their statuses. */
async function fetches(base: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(`${base}/no-store?i=${i}`);
    await r.body.text();
    out.push(r.statusCode);
  }
  return out;
}

describe('sluice backend list / set-health', () => {
  it('lists every backend with its admin setting, probe and health, as varnishadm backend.list', { timeout: 60_000 }, async ({ onTestFinished }) => {
    const { s, admin, names } = await twoBackends(onTestFinished);
    const r = await runCli(['backend', 'list', ...admin]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^Backend name +Admin +Probe +Health +Active +URL$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 4))).toEqual(names.map((n) => [n, 'auto', 'none', 'healthy']));
    const json = await runCli(['backend', 'list', ...admin, '--json']);
    expect(JSON.parse(json.stdout)).toEqual(names.map((n) => ({ name: n, url: `http://${n}`, admin: 'auto', probe: 'none', healthy: true, active: 0 })));
    const direct = await request(`${s.adminUrl}/backends`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(direct.statusCode).toBe(200);
    expect(await direct.body.json()).toHaveLength(2);
  });

  it('sick by hand: the director skips it; both sick: 503 at once; auto: both used again', { timeout: 60_000 }, async ({ onTestFinished }) => {
    const { a, b, s, admin, names } = await twoBackends(onTestFinished);
    expect(await fetches(s.url, 4)).toEqual([200, 200, 200, 200]);
    expect([a.hits('/no-store'), b.hits('/no-store')]).toEqual([2, 2]);

    const sick = await runCli(['backend', 'set-health', names[0], 'sick', ...admin]);
    expect(sick.code).toBe(0);
    expect(sick.stdout).toMatch(new RegExp(`\\n${names[0].replace(/\./g, '\\.')} +sick +none +sick +0 +http://`));
    expect(await fetches(s.url, 4)).toEqual([200, 200, 200, 200]);
    expect([a.hits('/no-store'), b.hits('/no-store')]).toEqual([2, 6]);

    // The same through the admin API (what the command sends).
    const set = async (name: string, health: string): Promise<number> => {
      const r = await request(`${s.adminUrl}/backends/health`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ name, health }) });
      await r.body.text();
      return r.statusCode;
    };
    expect(await set(names[1], 'sick')).toBe(200);
    expect(await fetches(s.url, 2)).toEqual([503, 503]);
    expect([a.hits('/no-store'), b.hits('/no-store')]).toEqual([2, 6]);

    // healthy by hand wins over anything; auto gives it back to the probe (none here: healthy).
    expect(await set(names[0], 'healthy')).toBe(200);
    expect(await set(names[1], 'auto')).toBe(200);
    expect(await fetches(s.url, 4)).toEqual([200, 200, 200, 200]);
    expect([a.hits('/no-store'), b.hits('/no-store')]).toEqual([4, 8]);
    const list = JSON.parse((await runCli(['backend', 'list', ...admin, '--json'])).stdout) as Array<{ admin: string; healthy: boolean }>;
    expect(list.map((x) => [x.admin, x.healthy])).toEqual([['healthy', true], ['auto', true]]);
  });

  it('an unknown backend is a failure (exit 1) naming it; a health other than sick/healthy/auto is a usage error (exit 2)', { timeout: 60_000 }, async ({ onTestFinished }) => {
    const { admin } = await twoBackends(onTestFinished);
    const unknown = await runCli(['backend', 'set-health', 'nope', 'sick', ...admin]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim()).toBe('sluice: admin API POST /backends/health: 404 no backend named "nope"');
    const bad = await runCli(['backend', 'set-health', 'nope', 'dead', ...admin]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^sluice: .*dead.*sick, healthy, auto/s);
  });
});
