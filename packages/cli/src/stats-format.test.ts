import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createAdminServer, createProxy } from '@sluice/core';
import { createOriginClient } from '@sluice/origin-client';
import { startFixtureOrigin } from '@sluice/fixtures';
import { filterRows, formatStats, statRows, type Snapshot } from './stats-format.js';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

const snap: Snapshot = {
  main: { client_req: 12, cache_hit: 7, cache_miss: 5, s_resp_bodybytes: 123456789 },
  storage: { bytes: 1000, objects: 3, maxBytes: 4096 },
  backends: [{ name: 'app-server-with-a-long-name', url: 'http://x', requests: 5, queueRejects: 1, healthy: true }],
};

describe('sluice stats output', () => {
  it('one naming scheme: MAIN.<JSON key>, SMA.s0.*, VBE.<backend>.<snake_case>; no camelCase', () => {
    const names = statRows(snap).map((r) => r.name);
    expect(names).toContain('MAIN.cache_hit');
    expect(names).toContain('SMA.s0.g_bytes');
    expect(names).toContain('VBE.app-server-with-a-long-name.queue_rejects');
    expect(names).toContain('VBE.app-server-with-a-long-name.healthy');
    expect(names.filter((n) => /[A-Z]/.test(n.split('.').slice(1).join('.')))).toEqual([]);
  });

  it('aligned columns whatever the name length, each counter with what it counts', () => {
    const lines = formatStats(snap).split('\n');
    const valueEnd = lines.map((l) => /^\S+\s+\d+/.exec(l)?.[0].length);
    expect(new Set(valueEnd).size).toBe(1);
    expect(lines.find((l) => l.startsWith('MAIN.cache_hit '))).toMatch(/Requests served from the cache \(MAIN\.cache_hit\)$/);
    expect(lines.find((l) => l.startsWith('SMA.s0.g_space '))).toMatch(/\b3096\b/);
  });

  it('-f globs filter, ^ excludes', () => {
    expect(filterRows(statRows(snap), ['MAIN.cache_*']).map((r) => r.name)).toEqual(['MAIN.cache_hit', 'MAIN.cache_miss']);
    expect(filterRows(statRows(snap), ['MAIN.*', '^MAIN.cache_*', '^MAIN.n_object']).map((r) => r.name)).toEqual(['MAIN.client_req', 'MAIN.s_resp_bodybytes']);
  });

  it('rates per second against the previous sample when watching', () => {
    const prev: Snapshot = { ...snap, main: { ...snap.main, cache_hit: 3 } };
    expect(formatStats(snap, { prev, seconds: 2, filter: ['MAIN.cache_hit'] })).toMatch(/^MAIN\.cache_hit\s+7\s+2\.0\/s\s+Requests served/);
  });

  it('--watch --json prints one JSON object per line (NDJSON), against a real admin API', async () => {
    const origin = await startFixtureOrigin();
    const upstream = createOriginClient({ backends: [{ url: origin.url }] });
    const proxy = createProxy({ upstream });
    const { port: proxyPort } = await proxy.listen(0);
    await (await request(`http://127.0.0.1:${proxyPort}/static/10`)).body.text();
    const admin = createAdminServer(proxy, { token: 's3cret-token' });
    const { port } = await admin.listen(0);
    const p = spawn(process.execPath, [BIN, 'stats', '--admin', `http://127.0.0.1:${port}`, '--token', 's3cret-token', '--watch', '1', '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    try {
      const lines = await new Promise<string[]>((resolve, reject) => {
        let out = '';
        p.stdout.on('data', (d) => {
          out += String(d);
          const done = out.split('\n').filter((l) => l !== '');
          if (done.length >= 2) resolve(done);
        });
        p.on('exit', (code) => reject(new Error(`stats exited ${String(code)}: ${out}`)));
      });
      const objs = lines.slice(0, 2).map((l) => JSON.parse(l) as Snapshot & { time: string });
      expect(objs.map((o) => o.main['client_req'])).toEqual([1, 1]);
      expect(objs.every((o) => !Number.isNaN(Date.parse(o.time)))).toBe(true);
    } finally {
      p.kill('SIGTERM');
      await admin.close();
      await proxy.close();
      await upstream.destroy();
      await origin.close();
    }
  });
});
