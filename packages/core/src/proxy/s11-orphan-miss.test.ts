import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { ProxyEnv } from '../context.js';
import { settlesWithin, startProxy, until, useCleanup, useUncaughtRecorder, type ProxyHarness } from '../test-support/harness.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';

/**
 * Session 11, defect 1: a miss whose response turns out not to be stored (private, no-store, Set-Cookie: the builtin
 * rules make it hit-for-miss; or too large), whose only client left before the origin's head, kept reading the origin
 * until the orphan watch (30 s) ended it. A pass dropped its origin at once already (session 10). Now such a fetch is
 * abandoned as soon as the response is known not to be stored and nobody reads it: the fetch fails, logged once. A
 * cacheable miss with no client still fetches into the cache. A relapse shows as the origin connection staying open
 * (the orphan watch here is 60 s, past the test's bound).
 */
const KiB = 1024;
const track = useCleanup();
const uncaught = useUncaughtRecorder();

interface Seen {
  path: string;
  closed: boolean;
}

/**
 * A raw origin: GET /NAME?cc=...&d=MS answers after d ms with `Cache-Control: cc` (and `Set-Cookie` when sc=1),
 * Content-Length 8 MiB, then one 64 KiB piece and nothing more (the connection stays open), or the whole body (256 KiB)
 * when whole=1; from the second request for the path on, with `cc2`, `Cache-Control: cc2` and the stall. Every request is recorded with whether its connection closed.
 */
async function startStallingOrigin(): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    let buf = '';
    let rec: Seen | undefined;
    s.on('close', () => {
      socks.delete(s);
      if (rec !== undefined) rec.closed = true;
    });
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const path = buf.slice(4, buf.indexOf(' ', 4));
      buf = buf.slice(i + 4);
      rec = { path, closed: false };
      seen.push(rec);
      const q = new URL(path, 'http://x').searchParams;
      const again = seen.filter((x) => x.path === path).length > 1;
      if (again && q.get('cc2') !== null) {
        q.set('cc', q.get('cc2') as string);
        q.delete('whole');
      }
      const size = q.get('whole') === '1' ? 256 * KiB : 8 * 1024 * KiB;
      const head =
        `HTTP/1.1 200 OK\r\ncache-control: ${q.get('cc') ?? 'max-age=60'}\r\n` +
        (q.get('sc') === '1' ? 'set-cookie: s=1\r\n' : '') +
        `content-length: ${size}\r\n\r\n`;
      setTimeout(() => {
        if (s.destroyed) return;
        s.write(head);
        s.write(Buffer.alloc(q.get('whole') === '1' ? size : 64 * KiB, 0x61));
      }, Number(q.get('d') ?? 0));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

const inflight = (px: ProxyHarness): number => (px.proxy as unknown as { env: ProxyEnv<unknown> }).env.inflight.size;

/** Sends a request and closes the socket once the origin has seen it (before the origin's head, which comes later). */
async function leaveBeforeHead(px: ProxyHarness, o: { seen: Seen[] }, path: string, extra = ''): Promise<void> {
  const n = o.seen.length;
  const s = net.connect(px.port, '127.0.0.1');
  s.on('error', () => undefined);
  s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${extra}\r\n`);
  await until(() => o.seen.length === n + 1);
  s.destroy();
  await new Promise((r) => s.once('close', r));
}

describe('a miss whose only client left before the head (defect 1)', () => {
  it.each([
    ['private', '/a?cc=private&d=100', 'rfc'],
    ['no-store', '/b?cc=no-store&d=100', 'rfc'],
    ['Set-Cookie, varnish profile', '/c?cc=max-age%3D60&sc=1&d=100', 'varnish'],
  ] as const)('uncacheable (%s): the origin request is dropped once the head shows it is not stored; the fetch fails, logged once', async (_name, path, profile) => {
    const o = track(await startStallingOrigin());
    const sink = new MemorySink();
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000, txlog: new TxLog([sink]), profile }));
    await leaveBeforeHead(px, o, path);
    expect(await settlesWithin(until(() => o.seen[0]?.closed === true), 5000)).toBe(true);
    await until(() => inflight(px) === 0);
    expect(px.proxy.stats.cache_miss).toBe(1);
    expect(px.proxy.stats.fetch_failed).toBe(1);
    expect(px.proxy.stats.backend_fail).toBe(0);
    await until(() => sink.groups.length === 1);
    const bereq = (sink.groups[0] as Transaction).children.filter((t) => t.type === 'BeReq');
    expect(bereq.length).toBe(1);
    const errors = bereq.flatMap((t) => t.records.filter((r) => r.tag === 'FetchError'));
    expect(errors.length).toBe(1);
    expect(o.seen.length).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('too large to store: dropped the same way', async () => {
    const o = track(await startStallingOrigin());
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000, storageBytes: 1024 * KiB }));
    await leaveBeforeHead(px, o, '/big?d=100');
    expect(await settlesWithin(until(() => o.seen[0]?.closed === true), 5000)).toBe(true);
    await until(() => inflight(px) === 0);
    expect(px.proxy.stats.fetch_failed).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('cacheable: fetched whole into the cache with no client, the next request is a hit without a second origin request', async () => {
    const o = track(await startStallingOrigin());
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000 }));
    const path = '/keep?whole=1&d=100';
    await leaveBeforeHead(px, o, path);
    await until(() => inflight(px) === 0);
    expect(px.proxy.stats.fetch_failed).toBe(0);
    const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(body.length).toBe(256 * KiB);
    expect(String(r.headers['cache-status'])).toMatch(/; hit/);
    expect(o.seen.length).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('a grace hit whose background fetch turns out uncacheable: that fetch is dropped at once (it has no reader)', async () => {
    const o = track(await startStallingOrigin());
    let nowMs = Date.now();
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000, now: () => nowMs }));
    const path = '/g?whole=1&cc=max-age%3D1%2C%20stale-while-revalidate%3D60&cc2=private';
    const get = async (): Promise<{ body: Buffer; status: string }> => {
      const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
      return { body: Buffer.from(await r.body.arrayBuffer()), status: String(r.headers['cache-status']) };
    };
    expect((await get()).body.length).toBe(256 * KiB);
    await until(() => inflight(px) === 0);
    nowMs += 5000;
    const stale = await get();
    expect(stale.body.length).toBe(256 * KiB);
    expect(px.proxy.stats.bgfetch).toBe(1);
    await until(() => o.seen.length === 2);
    expect(await settlesWithin(until(() => o.seen[1]?.closed === true), 5000)).toBe(true);
    await until(() => inflight(px) === 0);
    expect(px.proxy.stats.fetch_failed).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it('uncacheable, client present: the whole body is delivered (nothing is abandoned while a client reads)', async () => {
    const o = track(await startStallingOrigin());
    const px = track(await startProxy(o.url, { orphanFetchTimeoutMs: 60_000 }));
    const r = await request(`${px.url}/p?cc=private&whole=1&d=50`, { headers: { host: 't' } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(body.length).toBe(256 * KiB);
    expect(px.proxy.stats.fetch_failed).toBe(0);
    expect(uncaught).toEqual([]);
  });
});
