import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup, type ProxyHarness } from '../test-support/harness.js';
import { createAdminServer } from './admin.js';
import type { ProxyOptions } from './proxy.js';

const track = useCleanup();
/** A plain hit, exactly: not hit-for-miss or hit-for-pass (whose Cache-Status also says "hit"), not grace. */
const HIT = /^sluice; hit; ttl=\d+$/;
const TOKEN = 'test-admin-token';

async function setup(opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}) {
  const origin: ScriptedOrigin = track(
    await startScriptedOrigin((req, res, n) => {
      const tags = /\/tagged\/(\w+)/.exec(req.url ?? '')?.[1];
      res.writeHead(req.url?.startsWith('/missing') ? 404 : 200, {
        'cache-control': 'max-age=600',
        'content-type': req.url?.endsWith('.html') ? 'text/html' : 'text/plain',
        ...(tags === undefined ? {} : { 'surrogate-key': `all ${tags}` }),
      });
      res.end(`v${n} ${req.url}`);
    }),
  );
  const px: ProxyHarness = track(await startProxy(origin.url, { banLurkBatch: 0, ...opts }));
  const admin = createAdminServer(px.proxy, { token: TOKEN });
  const { port } = await admin.listen(0);
  track(admin);
  const adminUrl = `http://127.0.0.1:${port}`;
  const get = async (path: string, host = 'site.test') => {
    const r = await request(`${px.url}${path}`, { headers: { host } });
    return { status: r.statusCode, body: await r.body.text(), cacheStatus: String(r.headers['cache-status']), headers: r.headers };
  };
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown, token = TOKEN) => {
    const r = await request(`${adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.body.text();
    return { status: r.statusCode, text, json: (r.headers['content-type'] ?? '').toString().includes('json') ? (JSON.parse(text) as unknown) : undefined };
  };
  return { origin, px, get, call };
}

describe('purge', () => {
  it('the PURGE method from an allowed address removes every variant of the URL', async () => {
    const { px, get, origin } = await setup({ purgeAllow: ['127.0.0.1'] });
    await get('/p');
    expect((await get('/p')).cacheStatus).toMatch(HIT);
    const r = await request(`${px.url}/p`, { method: 'PURGE', headers: { host: 'site.test' } });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('Purged 1\n');
    expect((await get('/p')).body).toBe('v2 /p');
    expect(origin.count).toBe(2);
  });

  it('PURGE from an address not allowed gets 405 and removes nothing', async () => {
    const { px, get } = await setup();
    await get('/p');
    const r = await request(`${px.url}/p`, { method: 'PURGE', headers: { host: 'site.test' } });
    expect(r.statusCode).toBe(405);
    await r.body.text();
    expect((await get('/p')).cacheStatus).toMatch(HIT);
  });

  it('admin purge by URL and by Surrogate-Key tag; tags are not shown to clients', async () => {
    const { get, call } = await setup();
    await get('/a');
    await get('/tagged/red');
    await get('/tagged/blue');
    expect((await get('/tagged/red')).headers['surrogate-key']).toBeUndefined();
    expect((await call('POST', '/purge', { url: '/a', host: 'site.test' })).json).toEqual({ purged: 1 });
    expect((await get('/a')).cacheStatus).toMatch(/fwd=/);
    expect((await call('POST', '/purge', { tags: ['red'] })).json).toEqual({ purged: 1 });
    expect((await get('/tagged/red')).cacheStatus).toMatch(/fwd=/);
    expect((await get('/tagged/blue')).cacheStatus).toMatch(HIT);
    expect((await call('POST', '/purge', { tags: ['all'] })).json).toEqual({ purged: 2 });
  });
});

describe('bans', () => {
  it('apply lazily at lookup, only to objects stored before the ban', async () => {
    const { get, call, px } = await setup();
    await get('/products/1');
    await get('/products/2.html');
    await get('/blog/1');
    const ban = await call('POST', '/ban', { expr: 'req.url ~ ^/products/ && obj.http.content-type ~ "text/plain"' });
    expect(ban.status).toBe(201);
    expect((await call('GET', '/bans')).json).toHaveLength(1);
    expect((await get('/products/1')).cacheStatus).toMatch(/fwd=/); // banned: refetched
    expect((await get('/products/2.html')).cacheStatus).toMatch(HIT); // html: not matched
    expect((await get('/blog/1')).cacheStatus).toMatch(HIT);
    // The refetched object is newer than the ban: it stays.
    expect((await get('/products/1')).cacheStatus).toMatch(HIT);
    expect(px.proxy.stats.bans_obj_killed).toBe(1);
  });

  it('the sweeper removes banned objects nobody requests, a slice at a time', async () => {
    const { get, call, px } = await setup();
    for (let i = 0; i < 10; i++) await get(`/old/${i}`);
    await get('/keep');
    await call('POST', '/ban', { expr: 'req.url ~ ^/old/' });
    expect(px.proxy.store.objectCount).toBe(11);
    // Each slice tests at most its budget of objects.
    const first = px.proxy.store.lurk(4);
    expect(first).toBeLessThanOrEqual(4);
    expect(px.proxy.store.objectCount).toBe(11 - first);
    let removed = first;
    let slices = 1;
    while (px.proxy.store.activeBans.length > 0) {
      removed += px.proxy.store.lurk(4);
      slices++;
    }
    expect(slices).toBe(3);
    expect(removed).toBe(10);
    expect(px.proxy.store.objectCount).toBe(1);
    expect((await get('/keep')).cacheStatus).toMatch(HIT);
  });

  it('a bad ban expression is refused with a message', async () => {
    const { call } = await setup();
    const r = await call('POST', '/ban', { expr: 'obj.colour == red' });
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/bad ban expression: expected obj.status/);
  });
});

describe('one host, one cache object', () => {
  it('Host case, a trailing dot and the default port :80 make the same key for lookups, purges and bans', async () => {
    const { get, call, origin } = await setup();
    expect((await get('/h', 'site.test')).cacheStatus).toMatch(/fwd=/);
    for (const host of ['Site.TEST', 'site.test.', 'SITE.test.:80', 'site.test:']) {
      expect((await get('/h', host)).cacheStatus, host).toMatch(/; hit/);
    }
    expect(origin.count).toBe(1);
    // Another port is another site.
    expect((await get('/h', 'site.test:8080')).cacheStatus).toMatch(/fwd=/);
    // Purge names the host any of those ways.
    expect((await call('POST', '/purge', { url: '/h', host: 'Site.Test.:80' })).json).toEqual({ purged: 1 });
    expect((await get('/h', 'site.test')).body).toBe('v3 /h');
    // Bans test the host the object was stored under, normalised the same way as the ban's value.
    await get('/b', 'Site.Test.');
    expect((await call('POST', '/ban', { expr: 'req.http.host == site.test:80 && req.url ~ ^/b' })).status).toBe(201);
    expect((await get('/b', 'site.test')).cacheStatus).toMatch(/fwd=/);
  });
});

describe('admin API', () => {
  it('needs the token for everything but /health', async () => {
    const { call } = await setup();
    expect((await call('GET', '/health', undefined, 'wrong')).status).toBe(200);
    expect((await call('GET', '/stats', undefined, 'wrong-token!')).status).toBe(401);
    expect((await call('POST', '/ban', { expr: 'obj.status == 200' }, 'nope')).status).toBe(401);
  });

  it('serves counters as JSON and in Prometheus format', async () => {
    const { get, call } = await setup();
    await get('/x');
    await get('/x');
    const stats = (await call('GET', '/stats')).json as { main: Record<string, number>; storage: { objects: number }; backends: Array<Record<string, unknown>> };
    expect(stats.main['cache_hit']).toBe(1);
    expect(stats.main['cache_miss']).toBe(1);
    expect(stats.storage.objects).toBe(1);
    expect(stats.backends[0]?.['requests']).toBe(1);
    const prom = (await call('GET', '/metrics')).text;
    expect(prom).toContain('# TYPE sluice_cache_hit_total counter\nsluice_cache_hit_total 1\n');
    expect(prom).toMatch(/sluice_objects 1\n/);
    expect(prom).toMatch(/sluice_backend_requests_total\{backend="127\.0\.0\.1:\d+"\} 1\n/);
    expect(prom).toMatch(/sluice_backend_healthy\{backend="127\.0\.0\.1:\d+"\} 1\n/);
  });

  it('/metrics is valid exposition text: HELP and TYPE for every metric, counters in _total, histograms by outcome', async () => {
    const { get, call } = await setup();
    await get('/x');
    await get('/x');
    await get('/x');
    const prom = (await call('GET', '/metrics')).text;
    const lines = prom.trimEnd().split('\n');
    const declared = new Map<string, string>();
    const helped = new Set<string>();
    for (const l of lines) {
      const help = /^# HELP (\S+) \S/.exec(l);
      if (help !== null) helped.add(help[1] as string);
      const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(l);
      if (type !== null) declared.set(type[1] as string, type[2] as string);
      if (l.startsWith('#')) continue;
      // name{labels} value, and the family is declared and described.
      const m = /^([a-z_][a-z0-9_]*)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|\+Inf)$/.exec(l);
      expect(m, l).not.toBeNull();
      const family = (m?.[1] as string).replace(/_(bucket|sum|count)$/, '');
      expect(declared.has(family) || declared.has(m?.[1] as string), l).toBe(true);
      expect(helped.has(family) || helped.has(m?.[1] as string), l).toBe(true);
    }
    for (const [name, type] of declared) if (type === 'counter') expect(name).toMatch(/_total$/);
    // One miss and two hits: the duration histogram counts them by outcome, its buckets cumulative up to +Inf.
    expect(prom).toMatch(/^sluice_request_duration_seconds_count\{outcome="hit"\} 2$/m);
    expect(prom).toMatch(/^sluice_request_duration_seconds_count\{outcome="miss"\} 1$/m);
    expect(prom).toMatch(/^sluice_request_duration_seconds_bucket\{outcome="hit",le="\+Inf"\} 2$/m);
    expect(prom).toMatch(/^sluice_ttfb_seconds_count\{outcome="hit"\} 2$/m);
    const hitBuckets = [...prom.matchAll(/^sluice_request_duration_seconds_bucket\{outcome="hit",le="[^"]+"\} (\d+)$/gm)].map((x) => Number(x[1]));
    expect(hitBuckets).toEqual([...hitBuckets].sort((a, b) => a - b));
    for (const name of ['process_resident_memory_bytes', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_p99_seconds']) expect(declared.has(name)).toBe(true);
  });
});
