import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deferred, startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient, type OriginClient, type OriginClientConfig } from './origin-client.js';
import { OriginError } from './errors.js';

const open: Array<{ close(): Promise<void> }> = [];
let client: OriginClient | undefined;
afterEach(async () => {
  await client?.destroy();
  client = undefined;
  while (open.length > 0) await open.pop()?.close();
});

/** Resolves once `cond` holds (checked every 5 ms). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

async function origin(handler: Parameters<typeof startScriptedOrigin>[0]): Promise<ScriptedOrigin> {
  const o = await startScriptedOrigin(handler);
  open.push(o);
  return o;
}

const ok = (name: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(name);
};

function make(config: OriginClientConfig): OriginClient {
  client = createOriginClient(config);
  return client;
}

async function get(c: OriginClient, p = '/', opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; backend: string }> {
  const r = await c.request({ method: opts.method ?? 'GET', path: p, headers: opts.headers ?? {}, body: null }, { signal: new AbortController().signal });
  let body = '';
  for await (const chunk of r.body) body += String(chunk);
  return { status: r.status, body, backend: r.backend };
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('balancing and failover', () => {
  it('round-robin spreads requests over several origins', async () => {
    const os = await Promise.all(['a', 'b', 'c'].map((n) => origin(ok(n))));
    const c = make({ backends: os.map((o) => ({ url: o.url })) });
    const bodies = [];
    for (let i = 0; i < 6; i++) bodies.push((await get(c)).body);
    expect(bodies.sort()).toEqual(['a', 'a', 'b', 'b', 'c', 'c']);
  });

  it('a dead backend costs idempotent requests nothing: they fail over to a live one', async () => {
    const live = await origin(ok('live'));
    const c = make({ backends: [{ url: `http://127.0.0.1:${await deadPort()}`, name: 'dead' }, { url: live.url, name: 'live' }] });
    for (let i = 0; i < 6; i++) expect((await get(c)).body).toBe('live');
    const dead = c.counters().find((b) => b.name === 'dead');
    expect(dead?.failovers).toBe(3);
    expect(live.count).toBe(6);
  });

  it('a POST is not retried on another backend', async () => {
    const live = await origin(ok('live'));
    const c = make({ director: 'fallback', backends: [{ url: `http://127.0.0.1:${await deadPort()}` }, { url: live.url }] });
    await expect(c.request({ method: 'POST', path: '/', headers: {}, body: null }, { signal: new AbortController().signal })).rejects.toMatchObject({
      code: 'ORIGIN_ERR_CONNECT',
      status: 503,
    });
    expect(live.count).toBe(0);
  });

  it('the shard director sends each key to its owner', async () => {
    const os = await Promise.all(['n1', 'n2', 'n3'].map((n) => origin(ok(n))));
    const c = make({ director: 'shard', backends: os.map((o, i) => ({ url: o.url, name: `n${i + 1}` })) });
    for (const key of ['/a', '/b', '/c', '/d']) {
      const owner = c.choose(key)[0]?.name;
      const r = await c.request({ method: 'GET', path: key, headers: {}, body: null, key }, { signal: new AbortController().signal });
      await r.body.resume();
      expect(r.backend).toBe(owner);
    }
  });
});

describe('named directors (req.backend names a director)', () => {
  const named = (c: OriginClient, backend: string, key: string): Promise<{ status: number; body: string; backend: string }> =>
    c.request({ method: 'GET', path: key, headers: {}, body: null, key, backend }, { signal: new AbortController().signal }).then(async (r) => {
      let body = '';
      for await (const chunk of r.body) body += String(chunk);
      return { status: r.status, body, backend: r.backend };
    });

  it('a request naming a director is spread over its backends only; the default director still covers all', async () => {
    const os = await Promise.all(['web', 'api1', 'api2'].map((n) => origin(ok(n))));
    const c = make({ backends: os.map((o, i) => ({ url: o.url, name: ['web', 'api1', 'api2'][i] as string })), directors: { api: { type: 'round-robin', backends: ['api1', 'api2'] } } });
    const viaApi: string[] = [];
    for (let i = 0; i < 6; i++) viaApi.push((await named(c, 'api', `/k${i}`)).body);
    expect(viaApi.sort()).toEqual(['api1', 'api1', 'api1', 'api2', 'api2', 'api2']);
    const all: string[] = [];
    for (let i = 0; i < 3; i++) all.push((await get(c)).body);
    expect(all.sort()).toEqual(['api1', 'api2', 'web']);
    // A backend can still be named on its own.
    expect((await named(c, 'web', '/x')).body).toBe('web');
  });

  it('a shard director keeps each key on its owner among its backends', async () => {
    const os = await Promise.all(['s1', 's2', 's3', 'other'].map((n) => origin(ok(n))));
    const c = make({ backends: os.map((o, i) => ({ url: o.url, name: ['s1', 's2', 's3', 'other'][i] as string })), directors: { shards: { type: 'shard', backends: ['s1', 's2', 's3'] } } });
    const owners = new Map<string, string>();
    for (const key of ['/a', '/b', '/c', '/d', '/e', '/f']) owners.set(key, (await named(c, 'shards', key)).body);
    for (const [key, owner] of owners) expect((await named(c, 'shards', key)).body).toBe(owner);
    expect([...owners.values()].every((o) => o !== 'other')).toBe(true);
    expect(new Set(owners.values()).size).toBeGreaterThan(1);
  });

  it('fails over among its own backends (never to one outside it); every member dead is a 503 naming the director', async () => {
    const live = await origin(ok('live'));
    const outside = await origin(ok('outside'));
    const dead1 = await deadPort();
    const c = make({
      backends: [{ url: `http://127.0.0.1:${dead1}`, name: 'dead' }, { url: live.url, name: 'live' }, { url: outside.url, name: 'outside' }],
      directors: { pair: { type: 'fallback', backends: ['dead', 'live'] }, lone: { type: 'round-robin', backends: ['dead'] } },
    });
    for (let i = 0; i < 3; i++) expect((await named(c, 'pair', '/p')).body).toBe('live');
    expect(c.counters().find((b) => b.name === 'dead')?.failovers).toBe(3);
    await expect(named(c, 'lone', '/l')).rejects.toMatchObject({ code: 'ORIGIN_ERR_CONNECT', status: 503 });
    expect(outside.count).toBe(0);
    await expect(named(c, 'nope', '/n')).rejects.toMatchObject({ code: 'ORIGIN_ERR_NO_BACKEND', status: 503, message: expect.stringMatching(/no backend or director is named "nope"/) });
  });

  it('a director with no backend, an unknown member or a backend\'s name is refused when the client is made', () => {
    const backends = [{ url: 'http://127.0.0.1:1', name: 'a' }];
    expect(() => createOriginClient({ backends, directors: { d: { type: 'random', backends: [] } } })).toThrow(/director "d" has no backends/);
    expect(() => createOriginClient({ backends, directors: { d: { type: 'random', backends: ['b'] } } })).toThrow(/director "d": no backend is named "b"/);
    expect(() => createOriginClient({ backends, directors: { a: { type: 'random', backends: ['a'] } } })).toThrow(/director "a" has the name of a backend/);
  });
});

describe('health probes', () => {
  it('a flapping backend is skipped while sick and used again once healthy', async () => {
    let up = true;
    const flappy = await origin((req, res) => {
      if (req.url === '/health') {
        res.writeHead(up ? 200 : 503);
        res.end();
        return;
      }
      ok('flappy')(req, res);
    });
    const steady = await origin(ok('steady'));
    const c = make({
      backends: [
        { url: flappy.url, name: 'flappy', probe: { path: '/health', window: 4, threshold: 3, intervalMs: 3_600_000 } },
        { url: steady.url, name: 'steady' },
      ],
    });
    const probe = c.backends[0]?.probe;
    if (probe === undefined) throw new Error('probe missing');
    up = false;
    await probe.tick();
    await probe.tick();
    expect(probe.healthy).toBe(false);
    for (let i = 0; i < 4; i++) expect((await get(c)).body).toBe('steady');
    up = true;
    for (let i = 0; i < 3; i++) await probe.tick();
    expect(probe.healthy).toBe(true);
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) bodies.add((await get(c)).body);
    expect(bodies).toEqual(new Set(['flappy', 'steady']));
    expect(c.counters().find((b) => b.name === 'flappy')?.healthChanges).toBe(2);
  });

  it('set by hand (backend.set_health): healthy wins over a sick probe, sick over a healthy one, auto follows the probe again', async () => {
    const sickProbe = await origin((req, res) => {
      if (req.url === '/health') {
        res.writeHead(503);
        res.end();
        return;
      }
      ok('probed-sick')(req, res);
    });
    const steady = await origin(ok('steady'));
    const c = make({
      backends: [
        { url: sickProbe.url, name: 'a', probe: { path: '/health', window: 2, threshold: 2, intervalMs: 3_600_000 } },
        { url: steady.url, name: 'b' },
      ],
    });
    await c.backends[0]?.probe?.tick();
    expect(c.listBackends().map((b) => [b.name, b.admin, b.probe, b.healthy])).toEqual([['a', 'auto', 'sick', false], ['b', 'auto', 'none', true]]);
    expect(c.setHealth('a', 'healthy')).toMatchObject({ admin: 'healthy', probe: 'sick', healthy: true });
    expect(c.setHealth('b', 'sick')).toMatchObject({ admin: 'sick', probe: 'none', healthy: false });
    for (let i = 0; i < 3; i++) expect((await get(c)).body).toBe('probed-sick');
    c.setHealth('a', 'auto');
    await expect(get(c)).rejects.toMatchObject({ code: 'ORIGIN_ERR_NO_BACKEND', status: 503 });
    expect(c.setHealth('nope', 'sick')).toBeUndefined();
    expect(c.counters().map((b) => b.healthChanges)).toEqual([3, 1]);
  });

  it('with every backend sick, requests fail with 503 at once', async () => {
    const o = await origin((_req, res) => {
      res.writeHead(500);
      res.end();
    });
    const c = make({ backends: [{ url: o.url, probe: { window: 2, threshold: 2, intervalMs: 3_600_000 } }] });
    await c.backends[0]?.probe?.tick();
    await expect(get(c)).rejects.toMatchObject({ code: 'ORIGIN_ERR_NO_BACKEND', status: 503 });
  });
});

describe('connections', () => {
  it('keeps connections alive: 20 sequential requests reuse connections; keepAlive off opens one each', async () => {
    const o = await origin(ok('k'));
    const c = make({ backends: [{ url: o.url }] });
    for (let i = 0; i < 20; i++) await get(c);
    // undici may open a second connection when a request is sent in the tick the previous response ends.
    expect(o.connections).toBeLessThanOrEqual(2);
    expect(c.counters()[0]?.connects).toBe(o.connections);
    await c.destroy();
    const o2 = await origin(ok('k'));
    const c2 = make({ backends: [{ url: o2.url, keepAlive: false }] });
    for (let i = 0; i < 20; i++) await get(c2);
    expect(o2.connections).toBe(20);
  });

  it('survives an origin that closes kept-alive connections when a request arrives on them', async () => {
    const served = new WeakMap<Socket, number>();
    const o = await origin((req, res) => {
      const n = served.get(req.socket) ?? 0;
      served.set(req.socket, n + 1);
      // Every second request on a connection finds it closed: the reused-connection race, on purpose.
      if (n % 2 === 1) {
        req.socket.destroy();
        return;
      }
      ok('fine')(req, res);
    });
    const c = make({ backends: [{ url: o.url }] });
    for (let i = 0; i < 30; i++) expect((await get(c)).body).toBe('fine');
    expect(c.counters()[0]?.retries).toBeGreaterThan(5);
  });

  it('bounds the wait for a connection: queue timeout and full queue answer 503', async () => {
    const hold = deferred();
    const o = await origin(async (_req, res) => {
      await hold.promise;
      ok('late')(_req, res);
    });
    const c = make({ backends: [{ url: o.url, maxConnections: 1, queueTimeoutMs: 50, maxQueue: 1 }] });
    const first = get(c);
    const second = get(c);
    const third = get(c);
    await expect(third).rejects.toMatchObject({ code: 'ORIGIN_ERR_QUEUE_FULL', status: 503 });
    await expect(second).rejects.toMatchObject({ code: 'ORIGIN_ERR_QUEUE_TIMEOUT', status: 503 });
    hold.resolve();
    expect((await first).body).toBe('late');
    expect(c.counters()[0]?.queueRejects).toBe(2);
  });

  it('aborting a request mid-body destroys the origin connection', async () => {
    const closed = deferred();
    const o = await origin(async (req, res) => {
      req.socket.once('close', () => closed.resolve());
      res.writeHead(200);
      while (!res.destroyed) if (!res.write(Buffer.alloc(16 * 1024))) await new Promise((r) => res.once('drain', r));
    });
    const c = make({ backends: [{ url: o.url }] });
    const ac = new AbortController();
    const r = await c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: ac.signal });
    // The body comes paused (nothing flows before its consumer listens): the consumer resumes it.
    const first = new Promise((resolve) => r.body.once('data', resolve));
    r.body.resume();
    await first;
    ac.abort();
    await closed.promise;
    expect(c.backends[0]?.active).toBe(0);
  });
});

describe('errors name their cause', () => {
  // Client aborts and undici's refusals of a request used to be logged as `ORIGIN_ERR_CONNECT: cannot reach ...`.
  const failure = (p: Promise<unknown>): Promise<OriginError> => p.then(
    () => { throw new Error('expected a failure'); },
    (e: unknown) => e as OriginError,
  );

  it('our signal aborted (the client left, shutdown) is ORIGIN_ERR_ABORTED, whatever the abort reason', async () => {
    const hold = deferred();
    const o = await origin(async (_req, res) => {
      await hold.promise;
      res.end('late');
    });
    const c = make({ backends: [{ url: o.url }] });
    const ac = new AbortController();
    const p = failure(c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: ac.signal }));
    await until(() => o.count === 1);
    ac.abort(Object.assign(new Error('last reader of an unstored object left'), { code: 'CORE_ERR_NO_READER' }));
    expect(await p).toMatchObject({ code: 'ORIGIN_ERR_ABORTED' });
    hold.resolve();
  });

  it('a request undici refuses (a header value with CRLF, the CONNECT method) is ORIGIN_ERR_REQUEST', async () => {
    const o = await origin(ok('x'));
    const c = make({ backends: [{ url: o.url }] });
    const signal = new AbortController().signal;
    const badHeader = await failure(c.request({ method: 'GET', path: '/', headers: { 'x-a': 'a\r\nb' }, body: null }, { signal }));
    expect(badHeader).toMatchObject({ code: 'ORIGIN_ERR_REQUEST' });
    expect(badHeader.message).toMatch(/UND_ERR_INVALID_ARG/);
    expect(await failure(c.request({ method: 'CONNECT', path: '/', headers: {}, body: null }, { signal }))).toMatchObject({ code: 'ORIGIN_ERR_REQUEST' });
    expect(o.count).toBe(0);
  });

  it('a request body stream that fails (a client sending a broken body) is ORIGIN_ERR_REQUEST', async () => {
    const o = await origin((req, res) => {
      req.resume();
      req.on('end', () => res.end('x'));
    });
    const c = make({ backends: [{ url: o.url }] });
    const body = new Readable({ read() {} });
    body.push('abc');
    const p = failure(c.request({ method: 'POST', path: '/', headers: {}, body }, { signal: new AbortController().signal }));
    await until(() => o.count === 1);
    body.destroy(Object.assign(new Error('bad chunk size'), { code: 'CORE_ERR_BAD_REQUEST' }));
    const err = await p;
    expect(err).toMatchObject({ code: 'ORIGIN_ERR_REQUEST' });
    expect(err.message).toMatch(/bad chunk size/);
  });

  it('only a connection failure is ORIGIN_ERR_CONNECT', async () => {
    const c = make({ backends: [{ url: `http://127.0.0.1:${await deadPort()}` }] });
    const err = await failure(c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal }));
    expect(err).toMatchObject({ code: 'ORIGIN_ERR_CONNECT', status: 503 });
    expect(err.message).toMatch(/^cannot reach .*ECONNREFUSED/);
  });
});

describe('backend settings', () => {
  it('sends the configured Host instead of the client one', async () => {
    const o = await origin((req, res) => ok(String(req.headers.host))(req, res));
    const c = make({ backends: [{ url: o.url, hostHeader: 'www.example.com' }] });
    expect((await get(c, '/', { headers: { host: 'client.test' } })).body).toBe('www.example.com');
  });

  it('gives up on response headers after firstByteTimeoutMs with a 504 error', async () => {
    const hold = deferred();
    const o = await origin(async (req, res) => {
      await hold.promise;
      ok('late')(req, res);
    });
    const c = make({ backends: [{ url: o.url, firstByteTimeoutMs: 100 }] });
    await expect(get(c)).rejects.toMatchObject({ code: 'ORIGIN_ERR_TIMEOUT', status: 504 });
    hold.resolve();
  });
});

describe('authentication to origins', () => {
  const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
  const guarded = (want: string, scheme: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'www-authenticate': `${scheme} realm="x"` });
      res.end('no');
      return;
    }
    ok('secret')(req, res);
  };

  it('adds configured Basic credentials to origin requests', async () => {
    const o = await origin(guarded(basic, 'Basic'));
    const c = make({ backends: [{ url: o.url, auth: { type: 'basic', username: 'u', password: 'p' } }] });
    expect((await get(c)).body).toBe('secret');
    expect(o.count).toBe(1);
  });

  it('answers a 401 challenge with the configured bearer token, once', async () => {
    const o = await origin(guarded('Bearer t0k', 'Bearer'));
    const c = make({ backends: [{ url: o.url, auth: { type: 'bearer', token: 't0k', preemptive: false } }] });
    expect((await get(c)).body).toBe('secret');
    expect(o.count).toBe(2);
    expect(o.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('passes a 401 it cannot answer to the client', async () => {
    const o = await origin(guarded('Bearer other', 'Bearer'));
    const c = make({ backends: [{ url: o.url, auth: { type: 'bearer', token: 't0k', preemptive: false } }] });
    const r = await get(c);
    expect(r.status).toBe(401);
    expect(o.count).toBe(2);
  });
});

describe('TLS to origins', () => {
  let cert = '';
  let key = '';
  beforeAll(() => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=origin.test',
      '-addext', 'subjectAltName=DNS:origin.test,IP:127.0.0.1',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    cert = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
    key = readFileSync(path.join(dir, 'key.pem'), 'utf8');
  });

  async function tlsOrigin(): Promise<{ url: string; servernames: string[] }> {
    const servernames: string[] = [];
    const server = https.createServer({ cert, key }, (req, res) => {
      servernames.push(String((req.socket as TLSSocket).servername));
      res.end('over tls');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    open.push({ close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }) });
    return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, servernames };
  }

  it('verifies the origin certificate against the configured CA and sends SNI', async () => {
    const o = await tlsOrigin();
    const c = make({ backends: [{ url: o.url, tls: { ca: cert, servername: 'origin.test' } }] });
    expect((await get(c)).body).toBe('over tls');
    expect(o.servernames).toEqual(['origin.test']);
  });

  it('refuses an origin certificate it cannot verify (verification is on by default)', async () => {
    const o = await tlsOrigin();
    const c = make({ backends: [{ url: o.url }] });
    const err = await get(c).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OriginError);
    expect((err as OriginError).status).toBe(503);
  });

  it('skips verification only with the explicit dangerous option', async () => {
    const o = await tlsOrigin();
    const c = make({ backends: [{ url: o.url, tls: { dangerouslySkipTlsVerify: true } }] });
    expect((await get(c)).body).toBe('over tls');
  });
});

describe('one backend (session 8: no per-request candidate list)', () => {
  it.each(['round-robin', 'fallback', 'random', 'hash', 'shard'] as const)('%s: served while healthy, refused with a 503 while sick, served again after', async (director) => {
    const o = await origin(ok('only'));
    const c = make({ backends: [{ url: o.url, name: 'only' }], director });
    expect(c.choose('/k').map((b) => b.name)).toEqual(['only']);
    expect(await get(c, '/a')).toMatchObject({ status: 200, body: 'only', backend: 'only' });
    c.setHealth('only', 'sick');
    expect(c.choose('/k')).toEqual([]);
    const failed = await get(c, '/b').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(OriginError);
    expect((failed as OriginError).code).toBe('ORIGIN_ERR_NO_BACKEND');
    expect((failed as OriginError).status).toBe(503);
    c.setHealth('only', 'auto');
    expect(await get(c, '/c')).toMatchObject({ status: 200, body: 'only' });
    expect(o.count).toBe(2);
    expect(c.counters()[0]).toMatchObject({ requests: 2 });
  });

  it('random: a single backend of weight 0 is never chosen (the director still decides)', async () => {
    const o = await origin(ok('w0'));
    const c = make({ backends: [{ url: o.url, name: 'w0', weight: 0 }], director: 'random' });
    expect(c.choose('/k')).toEqual([]);
    expect(o.count).toBe(0);
  });
});
