import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { SlabPool } from '../cache/slab-pool.js';
import type { ProxyHooks } from '../policy/hooks.js';
import type { ProxyEnv } from '../context.js';
import { startProxy, startRangeOrigin, until, useCleanup, useUncaughtRecorder, type ProxyHarness } from '../test-support/harness.js';
import { bodyOf, sha } from '../test-support/bodies.js';

/**
 * Session 10 late review (issue 16) of the request path's abort and hold changes, from outside: a client's waits now
 * listen to its response's FetchAbort (`abortWatch`), and a response's slab holds are released per connection
 * (`Connection.releaseWhenWritten`). Clients leave at every stage of a miss (waiting list, before the head, mid-body,
 * blocked on a full socket, during an async hook, an ESI include, a slicer stitch); origins time out with the client
 * gone and present; pipelined large hits, HEAD, 304, Range to paused clients that reset or read on while the objects
 * are purged and the pool refilled. Real loopback origin and proxy; per-object pseudo-random bodies checked by sha256.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const track = useCleanup();
const uncaught = useUncaughtRecorder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface OriginRecord {
  path: string;
  closed: boolean;
  conditional: boolean;
}

/** The proxy's in-flight fetches (its env is private). */
const inflight = (px: ProxyHarness): number => (px.proxy as unknown as { env: ProxyEnv<unknown> }).env.inflight.size;

/**
 * A raw origin. Paths: /s/NAME?n=N[&d=MS][&ms=MS][&stall=1][&gen=1]: a cacheable object (max-age=60, ETag "NAME",
 * Content-Length N) whose head comes after d ms and whose body comes in 64 KiB pieces every `ms` ms (at once without);
 * stall=1: the first piece, then nothing (the connection stays open). gen=1: stall only on the first fetch of the
 * path. /p/NAME...: the same, `private` (a pass). A matching If-None-Match: a 304. Every request is recorded with
 * whether its connection has closed.
 */
async function startOrigin(): Promise<{ url: string; seen: OriginRecord[]; count(prefix: string): number; close(): Promise<void> }> {
  const seen: OriginRecord[] = [];
  const fetched = new Map<string, number>();
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    let current: OriginRecord | undefined;
    s.on('close', () => {
      socks.delete(s);
      if (current !== undefined) current.closed = true;
    });
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        const m = /^(GET|HEAD) (\/([spe])\/([a-z0-9]+)\?n=(\d+)((?:&[a-z]+=\d+)*))/.exec(head);
        if (m === null) {
          s.destroy();
          return;
        }
        const [, method, path, kind, name, n, rest] = m as unknown as [string, string, string, string, string, string, string];
        const rec: OriginRecord = { path, closed: false, conditional: /\r\nif-none-match:/i.test(head) };
        current = rec;
        seen.push(rec);
        const q = new Map([...rest.matchAll(/&([a-z]+)=(\d+)/g)].map((x) => [x[1] as string, Number(x[2])]));
        const nth = fetched.get(path) ?? 0;
        fetched.set(path, nth + 1);
        const body = bodyOf(name, Number(n));
        const cc = kind === 'p' ? 'private' : `max-age=${q.get('ma') ?? 60}`;
        const stall = q.get('stall') === 1 && (q.get('gen') !== 1 || nth === 0);
        const send = (): void => {
          if (s.destroyed) return;
          if (kind === 'e') {
            // An ESI page around an include of /s/fNAME (N bytes, head after 150 ms, 64 KiB every 2 ms).
            // two=1: two includes (/s/fNAME and /s/gNAME, N bytes each, at once), for a response holding several objects.
            const page = Buffer.from(
              q.get('two') === 1
                ? `<p>${name};<esi:include src="/s/f${name}?n=${n}"/>;mid;<esi:include src="/s/g${name}?n=${n}"/>;end</p>`
                : `<p>${name};<esi:include src="/s/f${name}?n=${n}&d=150&ms=2"/>;end</p>`,
            );
            s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nx-esi: 1\r\ncontent-length: ${page.length}\r\n\r\n${page.toString()}`);
            return;
          }
          if (new RegExp(`\\r\\nif-none-match: "${name}"`, 'i').test(head)) {
            s.write(`HTTP/1.1 304 Not Modified\r\ncache-control: ${cc}\r\netag: "${name}"\r\n\r\n`);
            return;
          }
          s.write(`HTTP/1.1 200 OK\r\ncache-control: ${cc}\r\netag: "${name}"\r\ncontent-length: ${body.length}\r\n\r\n`);
          if (method === 'HEAD') return;
          const every = q.get('ms');
          if (stall) {
            s.write(body.subarray(0, 64 * KiB));
            return;
          }
          if (every === undefined) {
            s.write(body);
            return;
          }
          let at = 0;
          const piece = (): void => {
            if (s.destroyed || at >= body.length) return;
            s.write(body.subarray(at, at + 64 * KiB));
            at += 64 * KiB;
            setTimeout(piece, every);
          };
          piece();
        };
        const d = q.get('d');
        if (d === undefined) send();
        else setTimeout(send, d);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    seen,
    count: (prefix) => seen.filter((r) => r.path.startsWith(prefix)).length,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** A raw client: sends `req`; `firstBytes` once something came back; `done` at close with all bytes and whether it ended cleanly. */
function rawClient(port: number, req: string, pauseAtFirst = false): { socket: net.Socket; firstBytes: Promise<void>; bytes(): number; done: Promise<{ all: Buffer; ended: boolean }> } {
  const s = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  let got = 0;
  let first!: () => void;
  const firstBytes = new Promise<void>((r) => (first = r));
  s.on('data', (d: Buffer) => {
    if (got === 0) {
      if (pauseAtFirst) s.pause();
      first();
    }
    got += d.length;
    parts.push(d);
  });
  s.on('error', () => undefined);
  let ended = false;
  s.on('end', () => (ended = true));
  const done = new Promise<{ all: Buffer; ended: boolean }>((resolve) => s.on('close', () => resolve({ all: Buffer.concat(parts), ended })));
  s.write(req);
  return { socket: s, firstBytes, bytes: () => got, done };
}

const reqOf = (path: string, extra = '', close = true, method = 'GET'): string => `${method} ${path} HTTP/1.1\r\nHost: t\r\n${close ? 'Connection: close\r\n' : ''}${extra}\r\n`;

/** One HTTP/1.1 response at `at` of `all` (Content-Length framing): head, body, where the next one starts. */
function responseAt(all: Buffer, at: number, bodyless = false): { head: string; status: number; body: Buffer; next: number } {
  const h = all.indexOf('\r\n\r\n', at);
  if (h < 0) throw new Error(`no response head at ${at} of ${all.length}`);
  const head = all.subarray(at, h).toString('latin1');
  const status = Number(head.slice(9, 12));
  const p = h + 4;
  const cl = /\r\ncontent-length: (\d+)/i.exec(head);
  if (bodyless || status === 304 || cl === null) return { head, status, body: Buffer.alloc(0), next: p };
  return { head, status, body: all.subarray(p, p + Number(cl[1])), next: p + Number(cl[1]) };
}

async function get(px: ProxyHarness, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; headers: Record<string, unknown> }> {
  const r = await request(`${px.url}${path}`, { headers: { host: 't', ...headers } });
  return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()), headers: r.headers };
}

async function purge(px: ProxyHarness, path: string): Promise<void> {
  const r = await request(`${px.url}${path}`, { method: 'PURGE', headers: { host: 't' } });
  await r.body.text();
  expect(r.statusCode).toBe(200);
}

/** A chunked body's bytes. */
function dechunk(b: Buffer): Buffer {
  const parts: Buffer[] = [];
  let p = 0;
  for (;;) {
    const e = b.indexOf('\r\n', p);
    const n = parseInt(b.subarray(p, e).toString('latin1'), 16);
    if (!(n > 0)) return Buffer.concat(parts);
    parts.push(b.subarray(e + 2, e + 2 + n));
    p = e + 2 + n + 2;
  }
}

/** Counts of Node's active timers and TCP handles (listeners and sockets): what a leaking wait would keep. */
function resources(): { timers: number; tcp: number } {
  const info = process.getActiveResourcesInfo();
  return { timers: info.filter((x) => x === 'Timeout').length, tcp: info.filter((x) => x === 'TCPSocketWrap' || x === 'TCPServerWrap').length };
}

describe('clients leaving at every stage of a miss (abortWatch)', () => {
  it('coalesced on one stored miss: a waiter that leaves on the waiting list and one that leaves mid-body do not disturb the others; one origin fetch, then an exact hit', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url));
    const path = '/s/co?n=2097152&d=150&ms=5';
    const body = bodyOf('co', 2 * MiB);
    const a = get(px, path);
    await until(() => o.seen.length === 1);
    const waiter = rawClient(px.port, reqOf(path));
    await until(() => px.proxy.stats.busy_sleep === 1);
    waiter.socket.destroy();
    await waiter.done;
    const mid = rawClient(px.port, reqOf(path));
    await until(() => px.proxy.stats.busy_sleep === 2);
    const b = get(px, path);
    await until(() => px.proxy.stats.busy_sleep === 3);
    // Mid leaves once it has some of the body (the origin is still sending: 32 pieces 5 ms apart).
    await until(() => mid.bytes() > 100 * KiB);
    mid.socket.destroy();
    const [ra, rb] = await Promise.all([a, b]);
    expect(sha(ra.body)).toBe(sha(body));
    expect(sha(rb.body)).toBe(sha(body));
    expect((await mid.done).all.length).toBeLessThan(2 * MiB);
    // The waiter that left ended its own wait: only mid and b (still there at the head) were woken off the list.
    expect(px.proxy.stats.busy_wakeup).toBe(2);
    const hit = await get(px, path);
    expect(sha(hit.body)).toBe(sha(body));
    expect(String(hit.headers['cache-status'])).toMatch(/; hit/);
    expect(o.count('/s/co')).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('a pass (Cookie) whose client leaves before the origin answers: the origin request is dropped at once, not held to the orphan watch', async () => {
    const o = track(await startOrigin());
    // The orphan watch (30 s by default) is what dropped it before: longer than the test's timeout.
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000 }));
    const c = rawClient(px.port, reqOf('/p/pb?n=8388608&d=100&stall=1', 'Cookie: a=1\r\n'));
    await until(() => o.seen.length === 1);
    c.socket.destroy();
    await c.done;
    // The origin answers 100 ms later with its head and one piece, then stalls: only a drop closes its connection.
    await until(() => (o.seen[0] as OriginRecord).closed);
    expect(px.proxy.stats.s_pass).toBe(1);
    expect(inflight(px)).toBe(0);
    expect(uncaught).toEqual([]);
  });

  it('a pass whose client is already gone when the pass step runs (it left during an async requestFilter) sends nothing to the origin', async () => {
    const o = track(await startOrigin());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const hooks: ProxyHooks = {
      async requestFilter() {
        calls++;
        await gate;
        return 'pass' as const;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    const c = rawClient(px.port, reqOf('/p/gone?n=1000'));
    await until(() => calls === 1);
    c.socket.destroy();
    await c.done;
    // The proxy has seen the close (its connection is gone) before the hook answers.
    await until(() => px.proxy.server.connections.size === 0);
    release();
    await until(() => px.proxy.stats.s_pass === 1);
    await until(() => inflight(px) === 0);
    expect(o.seen.length).toBe(0);
    // The proxy still serves the next pass.
    const r = await get(px, '/p/gone?n=1000');
    expect(sha(r.body)).toBe(sha(bodyOf('gone', 1000)));
    expect(o.seen.length).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('a pass client that stops reading (the proxy blocked on its full socket) then resets: the origin connection is dropped', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url, { sendTimeoutMs: 60_000 }));
    const c = rawClient(px.port, reqOf('/p/pf?n=67108864&ms=1'), true);
    await c.firstBytes;
    // Let the socket buffers fill: the delivery then waits for 'drain' on the client's abortWatch.
    await sleep(100);
    expect(c.bytes()).toBeLessThan(64 * MiB);
    c.socket.resetAndDestroy();
    await until(() => (o.seen[0] as OriginRecord).closed);
    expect(uncaught).toEqual([]);
  });

  it('a cacheable miss whose only client leaves mid-body is still fetched whole and stored exactly', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url));
    const path = '/s/lm?n=1048576&ms=3';
    const c = rawClient(px.port, reqOf(path));
    await until(() => c.bytes() > 64 * KiB);
    c.socket.destroy();
    await c.done;
    await until(() => inflight(px) === 0);
    const hit = await get(px, path);
    expect(sha(hit.body)).toBe(sha(bodyOf('lm', MiB)));
    expect(String(hit.headers['cache-status'])).toMatch(/; hit/);
    expect(o.count('/s/lm')).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('many misses: 100 sequential on one kept-alive connection and 60 clients leaving before the head leave no timers, sockets or in-flight fetches behind', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url));
    // Warm both sides (pools, first connections), then take the baseline.
    await get(px, '/s/w?n=1000');
    const before = resources();
    const s = net.connect(px.port, '127.0.0.1');
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
    for (let i = 0; i < 100; i++) {
      buf = Buffer.alloc(0);
      s.write(reqOf(`/s/k${i}?n=3000&d=1`, '', false));
      await until(() => {
        const h = buf.indexOf('\r\n\r\n');
        return h >= 0 && buf.length >= h + 4 + 3000;
      });
      const r = responseAt(buf, 0);
      expect(r.status).toBe(200);
      expect(r.body.equals(bodyOf(`k${i}`, 3000))).toBe(true);
    }
    s.destroy();
    for (let i = 0; i < 60; i++) {
      const c = rawClient(px.port, reqOf(`/s/l${i}?n=3000&d=20`));
      await until(() => o.count(`/s/l${i}?`) === 1);
      c.socket.destroy();
      await c.done;
      // One at a time (the origin pool stays at one connection: the socket count below is about leaks, not the pool).
      await until(() => inflight(px) === 0);
    }
    // The fetches go on without their clients (cacheable) and are stored; nothing waits any more.
    await until(() => inflight(px) === 0);
    await sleep(50);
    const after = resources();
    expect(after.timers).toBeLessThanOrEqual(before.timers + 3);
    expect(after.tcp).toBeLessThanOrEqual(before.tcp + 3);
    for (const i of [0, 31, 59]) expect(sha((await get(px, `/s/l${i}?n=3000&d=20`)).body)).toBe(sha(bodyOf(`l${i}`, 3000)));
    expect(o.count('/s/l')).toBe(60);
    expect(uncaught).toEqual([]);
  }, 120_000);

  it('a client that leaves while an async requestFilter runs: nothing escapes, and the next client is served exactly', async () => {
    const o = track(await startOrigin());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const hooks: ProxyHooks = {
      async requestFilter() {
        if (calls++ === 0) await gate;
        return undefined;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    const path = '/s/ah?n=300000';
    const c = rawClient(px.port, reqOf(path));
    await until(() => calls === 1);
    c.socket.destroy();
    await c.done;
    release();
    await sleep(50);
    const r = await get(px, path);
    expect(sha(r.body)).toBe(sha(bodyOf('ah', 300000)));
    expect(o.count('/s/ah')).toBeLessThanOrEqual(1);
    await until(() => inflight(px) === 0);
    expect(uncaught).toEqual([]);
  });

  it('a client that leaves during a 304 revalidation: the 304 still refreshes the stale object, later hits are exact', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url));
    const path = '/s/rv?n=524288&ma=1&d=100';
    expect(sha((await get(px, path)).body)).toBe(sha(bodyOf('rv', 512 * KiB)));
    await sleep(1100);
    // Stale now (max-age 1, kept with its ETag): the next request revalidates; its client leaves before the 304.
    const c = rawClient(px.port, reqOf(path));
    await until(() => o.count('/s/rv') === 2);
    c.socket.destroy();
    await c.done;
    await until(() => inflight(px) === 0);
    expect((o.seen[1] as OriginRecord).conditional).toBe(true);
    const r = await get(px, path);
    expect(sha(r.body)).toBe(sha(bodyOf('rv', 512 * KiB)));
    expect(String(r.headers['cache-status'])).toMatch(/; hit/);
    expect(o.count('/s/rv')).toBe(2);
    expect(uncaught).toEqual([]);
  });
});

describe('retries and restarts with the client gone', () => {
  it('an async backendError that asks for retries while the client leaves: the retries run out, nothing escapes, the next request is served', async () => {
    const o = track(await startOrigin());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const hooks: ProxyHooks = {
      async backendError() {
        if (calls++ === 0) await gate;
        return 'retry' as const;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    // /bad: the origin closes the connection without an answer, every time.
    const c = rawClient(px.port, reqOf('/bad'));
    await until(() => calls === 1);
    c.socket.destroy();
    await c.done;
    await until(() => px.proxy.server.connections.size === 0);
    release();
    await until(() => inflight(px) === 0);
    expect(px.proxy.stats.s_retry).toBeGreaterThanOrEqual(1);
    expect(px.proxy.stats.fetch_failed).toBeGreaterThanOrEqual(1);
    const r = await get(px, '/s/ok?n=5000');
    expect(sha(r.body)).toBe(sha(bodyOf('ok', 5000)));
    expect(uncaught).toEqual([]);
  });

  it('an async responseFilter that restarts after the client left: the restarted walk ends, nothing escapes, the object is exact for the next client', async () => {
    const o = track(await startOrigin());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const hooks: ProxyHooks = {
      async responseFilter(_resp, req) {
        calls++;
        if (req.restarts === 0 && calls === 1) {
          await gate;
          return 'restart' as const;
        }
        return undefined;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    const path = '/s/rs?n=400000';
    const c = rawClient(px.port, reqOf(path));
    await until(() => calls === 1);
    c.socket.destroy();
    await c.done;
    await until(() => px.proxy.server.connections.size === 0);
    release();
    await until(() => inflight(px) === 0);
    await sleep(20);
    const r = await get(px, path);
    expect(sha(r.body)).toBe(sha(bodyOf('rs', 400000)));
    expect(o.count('/s/rs')).toBe(1);
    expect(uncaught).toEqual([]);
  });
});

describe('origin timeouts with the client gone and present', () => {
  it('between-bytes timeout, client present: cut (fewer bytes than Content-Length, no clean end), nothing cached; the next fetch stores the exact body', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url, {}, { betweenBytesTimeoutMs: 200 }));
    const path = '/s/bt?n=1048576&stall=1&gen=1';
    const c = rawClient(px.port, reqOf(path));
    const got = await c.done;
    const r = responseAt(got.all, 0, true);
    expect(r.status).toBe(200);
    expect(got.all.length - r.next).toBeLessThan(MiB);
    expect(got.ended && got.all.length - r.next === MiB).toBe(false);
    expect(px.proxy.stats.fetch_failed).toBeGreaterThanOrEqual(1);
    const again = await get(px, path);
    expect(sha(again.body)).toBe(sha(bodyOf('bt', MiB)));
    expect(o.count('/s/bt')).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('between-bytes timeout after the client left: the orphan fetch fails, nothing truncated is cached', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url, {}, { betweenBytesTimeoutMs: 200 }));
    const path = '/s/bg?n=1048576&stall=1&gen=1';
    const c = rawClient(px.port, reqOf(path));
    await c.firstBytes;
    c.socket.destroy();
    await c.done;
    await until(() => px.proxy.stats.fetch_failed >= 1);
    await until(() => inflight(px) === 0);
    const again = await get(px, path);
    expect(sha(again.body)).toBe(sha(bodyOf('bg', MiB)));
    expect(o.count('/s/bg')).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('first-byte timeout with one client gone (on the waiting list) and one present: the present one gets a 503 (or stale), the process goes on', async () => {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url, {}, { firstByteTimeoutMs: 200 }));
    const path = '/s/fb?n=1000&d=5000';
    const present = get(px, path);
    await until(() => o.seen.length === 1);
    const gone = rawClient(px.port, reqOf(path));
    await until(() => px.proxy.stats.busy_sleep === 1);
    gone.socket.destroy();
    await gone.done;
    const r = await present;
    expect(r.status).toBeGreaterThanOrEqual(500);
    expect(px.proxy.stats.fetch_failed).toBeGreaterThanOrEqual(1);
    await until(() => inflight(px) === 0);
    expect(uncaught).toEqual([]);
  });
});

describe('holds of large hits (Connection.releaseWhenWritten), attacked', () => {
  const SIZE = 4 * MiB;

  async function setup(directWrites: boolean): Promise<{ px: ProxyHarness; pool: SlabPool }> {
    const o = track(await startOrigin());
    const px = track(await startProxy(o.url, { storageBytes: 6 * SIZE, purgeAllow: ['127.0.0.1'], directWrites }));
    return { px, pool: px.proxy.store.slabs as SlabPool };
  }

  /** Misses of SIZE each, purged after the next: they fill slabs given back. */
  async function churn(px: ProxyHarness, tag: string, n = 3): Promise<void> {
    for (let i = 0; i < n; i++) {
      expect(sha((await get(px, `/s/${tag}${i}?n=${SIZE}`)).body)).toBe(sha(bodyOf(`${tag}${i}`, SIZE)));
      if (i > 0) await purge(px, `/s/${tag}${i - 1}?n=${SIZE}`);
    }
    await purge(px, `/s/${tag}${n - 1}?n=${SIZE}`);
  }

  it.each([true, false])('8 connections pipelining GET, HEAD, Range, a conditional 304 and GET of two large hits, not reading; half reset, half read on after purge and refill: exact bytes, and every slab back (direct writes %s)', async (directWrites) => {
    const { px, pool } = await setup(directWrites);
    const pa = `/s/ha?n=${SIZE}`;
    const pb = `/s/hb?n=${SIZE}`;
    const A = bodyOf('ha', SIZE);
    const B = bodyOf('hb', SIZE);
    expect(sha((await get(px, pa)).body)).toBe(sha(A));
    expect(sha((await get(px, pb)).body)).toBe(sha(B));
    const pipeline = reqOf(pa, '', false) + reqOf(pb, '', false, 'HEAD') + reqOf(pa, 'Range: bytes=1000-300999\r\n', false) + reqOf(pb, 'If-None-Match: "hb"\r\n', false) + reqOf(pb);
    const clients = Array.from({ length: 8 }, () => rawClient(px.port, pipeline, true));
    await Promise.all(clients.map((c) => c.firstBytes));
    await sleep(100);
    await purge(px, pa);
    await purge(px, pb);
    // Purged, but the paused clients' queued responses keep their slabs out of the pool.
    expect(pool.inUse).toBeGreaterThan(0);
    await churn(px, `c${directWrites ? 'd' : 'w'}`);
    for (let i = 0; i < clients.length; i += 2) (clients[i] as ReturnType<typeof rawClient>).socket.resetAndDestroy();
    for (let i = 1; i < clients.length; i += 2) (clients[i] as ReturnType<typeof rawClient>).socket.resume();
    for (let i = 1; i < clients.length; i += 2) {
      const all = (await (clients[i] as ReturnType<typeof rawClient>).done).all;
      const r1 = responseAt(all, 0);
      const r2 = responseAt(all, r1.next, true);
      const r3 = responseAt(all, r2.next);
      const r4 = responseAt(all, r3.next, true);
      const r5 = responseAt(all, r4.next);
      expect([r1.status, r2.status, r3.status, r4.status, r5.status]).toEqual([200, 200, 206, 304, 200]);
      expect(sha(r1.body)).toBe(sha(A));
      expect(r2.head).toMatch(new RegExp(`content-length: ${SIZE}`, 'i'));
      expect(sha(r3.body)).toBe(sha(A.subarray(1000, 301000)));
      expect(sha(r5.body)).toBe(sha(B));
      expect(r5.next).toBe(all.length);
    }
    for (let i = 0; i < clients.length; i += 2) {
      const all = (await (clients[i] as ReturnType<typeof rawClient>).done).all;
      // What a reset client got before it left is a prefix of the first response's exact bytes.
      const h = all.indexOf('\r\n\r\n');
      const got = all.subarray(h + 4, h + 4 + SIZE);
      expect(got.equals(A.subarray(0, got.length))).toBe(true);
    }
    // Requests after the purge refetched (the objects are stored again): purge them, and every slab is free.
    await purge(px, pa);
    await purge(px, pb);
    await until(() => pool.inUse === 0);
    expect(pool.inUse + pool.freeCount).toBeLessThanOrEqual(pool.maxSlabs);
    expect(uncaught).toEqual([]);
  });

  it.each([true, false])('a large hit to a client that half-closes and never reads, then resets: its slabs come back after the purge (direct writes %s)', async (directWrites) => {
    const { px, pool } = await setup(directWrites);
    const pa = `/s/hh?n=${SIZE}`;
    expect(sha((await get(px, pa)).body)).toBe(sha(bodyOf('hh', SIZE)));
    const c = rawClient(px.port, reqOf(pa, '', false) + reqOf(pa, '', false), true);
    await c.firstBytes;
    c.socket.end();
    await purge(px, pa);
    await sleep(50);
    // Still held: the bytes are queued for the paused client.
    expect(pool.inUse).toBe(SIZE / pool.slabBytes);
    await churn(px, `h${directWrites ? 'd' : 'w'}`);
    c.socket.resetAndDestroy();
    await c.done;
    await until(() => pool.inUse === 0);
    expect(uncaught).toEqual([]);
  });
});

describe('leaving during an ESI include and a slicer stitch', () => {
  it('an ESI page whose client leaves while its include waits for the origin: the fragment is still stored, the next page is exact', async () => {
    const o = track(await startOrigin());
    const hooks: ProxyHooks = {
      upstreamResponseFilter(beresp) {
        if (beresp.headers['x-esi'] !== undefined) beresp.doEsi = true;
        return undefined;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    const c = rawClient(px.port, reqOf('/e/pg?n=600000'));
    await c.firstBytes;
    await until(() => o.count('/s/fpg') === 1);
    c.socket.destroy();
    await c.done;
    await until(() => inflight(px) === 0);
    const r = await get(px, '/e/pg?n=600000');
    expect(r.body.equals(Buffer.concat([Buffer.from('<p>pg;'), bodyOf('fpg', 600000), Buffer.from(';end</p>')]))).toBe(true);
    expect(o.count('/s/fpg')).toBe(1);
    expect(o.count('/e/pg')).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it.each([true, false])('an ESI page of two large fragments (one response holding two objects) to a paused client: exact across a purge and refill, then every slab back (direct writes %s)', async (directWrites) => {
    const o = track(await startOrigin());
    const hooks: ProxyHooks = {
      upstreamResponseFilter(beresp) {
        if (beresp.headers['x-esi'] !== undefined) beresp.doEsi = true;
        return undefined;
      },
    };
    // Large enough that the kernel's socket buffers (several MiB on loopback) cannot take the whole page.
    const N = 8 * MiB;
    const px = track(await startProxy(o.url, { hooks, directWrites, storageBytes: 5 * N, purgeAllow: ['127.0.0.1'] }));
    const pool = px.proxy.store.slabs as SlabPool;
    const page = `/e/tw?n=${N}&two=1`;
    const want = Buffer.concat([Buffer.from('<p>tw;'), bodyOf('ftw', N), Buffer.from(';mid;'), bodyOf('gtw', N), Buffer.from(';end</p>')]);
    expect(sha((await get(px, page)).body)).toBe(sha(want));
    // All hits now (page and both fragments), to a client that takes the first bytes and stops.
    const c = rawClient(px.port, reqOf(page), true);
    await c.firstBytes;
    await sleep(100);
    await purge(px, `/s/ftw?n=${N}`);
    await purge(px, `/s/gtw?n=${N}`);
    // Purged, but what the paused page still sends (or reads) keeps slabs out of the pool.
    expect(pool.inUse).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) {
      expect(sha((await get(px, `/s/r${i}?n=${N}`)).body)).toBe(sha(bodyOf(`r${i}`, N)));
      await purge(px, `/s/r${i}?n=${N}`);
    }
    c.socket.resume();
    const all = (await c.done).all;
    const h = all.indexOf('\r\n\r\n');
    const head = all.subarray(0, h).toString('latin1');
    const got = all.subarray(h + 4);
    // Chunked or by length: take the body out of its framing.
    const bodyBytes = /transfer-encoding: chunked/i.test(head) ? dechunk(got) : got;
    expect(sha(bodyBytes)).toBe(sha(want));
    await until(() => pool.inUse === 0);
    expect(o.count('/s/ftw')).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('a sliced whole read whose client leaves mid-stitch: no escape, later whole and range reads are exact', async () => {
    const body = bodyOf('sl', 3 * MiB + 12345);
    const o = track(await startRangeOrigin(body));
    const px = track(await startProxy(o.url, { slice: { sizeBytes: 256 * KiB } }));
    const c = rawClient(px.port, reqOf('/big'), true);
    await c.firstBytes;
    await sleep(50);
    c.socket.destroy();
    await c.done;
    await until(() => inflight(px) === 0);
    const r = await get(px, '/big');
    expect(sha(r.body)).toBe(sha(body));
    const rr = await get(px, '/big', { range: 'bytes=1000000-1300000' });
    expect(rr.status).toBe(206);
    expect(sha(rr.body)).toBe(sha(body.subarray(1000000, 1300001)));
    expect(uncaught).toEqual([]);
  });
});
