import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startProxy, startRawOrigin, useCleanup, useUncaughtRecorder, type ProxyHarness } from '../test-support/harness.js';
import { bodyMismatch, bodyOf, sha } from '../test-support/bodies.js';

/**
 * Session 11 review, from outside, of the origin read path (origin-client/src/socket-reads.ts): plain http: origin
 * sockets read through Node's `onread` into buffers growing 64 -> 256 KiB; a read filling >= 7/8 of its buffer hands
 * the buffer over, a smaller read is copied out and the buffer reused. Bodies of every size class around 64/128/256
 * KiB and 7/8 of them, sent at once, trickled in odd pieces, or a burst then a trickle, with Content-Length or chunked
 * (chunk boundaries across reads), through one origin connection (maxConnections 1: every miss reuses the connection
 * and its buffer) and served again as hits between later misses: a reused buffer must never alter a stored object.
 * Per-object pseudo-random bodies checked by sha256 (bodyMismatch names whose bytes are where, if any differ).
 */
const KiB = 1024;
const track = useCleanup();
const uncaught = useUncaughtRecorder();
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A proxy in front of `url` through the real origin client, with at most `maxConnections` origin connections. */
function proxyOf(url: string, maxConnections: number, storageBytes = 256 * 1024 * KiB): Promise<ProxyHarness> {
  return startProxy(url, { storageBytes }, { maxConnections });
}

/** Odd piece sizes for trickles and chunk framing: boundaries land anywhere in a read. */
const ODD = [1, 7, 4093, 999, 65_537, 13, 12_289, 31, 100_003, 2, 57_343, 511];

/** `body` as HTTP/1.1 chunks of the ODD sizes in turn (starting at `from`), then the last chunk. */
function chunked(body: Buffer, from = 0): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0, i = from; at < body.length; i++) {
    const n = Math.min(ODD[i % ODD.length] as number, body.length - at);
    parts.push(Buffer.from(`${n.toString(16)}\r\n`, 'latin1'), body.subarray(at, at + n), Buffer.from('\r\n', 'latin1'));
    at += n;
  }
  parts.push(Buffer.from('0\r\n\r\n', 'latin1'));
  return Buffer.concat(parts);
}

/** Writes `wire` as the mode says: all at once, in ODD pieces a turn apart, or its first half at once then pieces. */
async function send(s: net.Socket, wire: Buffer, mode: string): Promise<void> {
  let at = 0;
  if (mode === 'burst') at = wire.length;
  if (mode === 'mixed') at = wire.length >>> 1;
  s.write(wire.subarray(0, at));
  for (let i = 0; at < wire.length && !s.destroyed; i++) {
    const n = Math.min(ODD[i % ODD.length] as number, wire.length - at);
    s.write(wire.subarray(at, at + n));
    at += n;
    // A turn apart (a read each, or several together), sometimes a few ms (the proxy's read is certainly apart).
    if (i % 5 === 4) await new Promise((r) => setTimeout(r, 1));
    else await tick();
  }
}

/**
 * The origin: GET /o/NAME?n=N&m=MODE&te=cl|chunked: bodyOf(NAME, N), cacheable (max-age=600), framed and sent as
 * asked. The head goes in the same write as the first bytes of the body.
 */
function origin(): ReturnType<typeof startRawOrigin> {
  return startRawOrigin((s, head) => {
    const m = /^GET \/o\/([a-z0-9-]+)\?n=(\d+)&m=([a-z]+)&te=([a-z]+)/.exec(head);
    if (m === null) return void s.end('HTTP/1.1 400 Bad\r\ncontent-length: 0\r\n\r\n');
    const [, name, n, mode, te] = m as unknown as [string, string, string, string, string];
    const body = bodyOf(name, Number(n));
    const framing = te === 'cl' ? `content-length: ${body.length}` : 'transfer-encoding: chunked';
    const wire = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\n${framing}\r\n\r\n`, 'latin1'), te === 'cl' ? body : chunked(body, body.length)]);
    void send(s, wire, mode);
  });
}

async function get(px: ProxyHarness, path: string): Promise<{ body: Buffer; cache: string }> {
  const r = await request(`${px.url}${path}`, { headers: { host: 't' } });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { body, cache: String(r.headers['cache-status'] ?? '') };
}

/** Sizes around 64, 128, 256 KiB and 7/8 of them (the hand-over threshold of each buffer size), and some others. */
const SIZES = [0, 3, 4095, 40 * KiB, 1024 * KiB + 3];
for (const b of [64 * KiB, 128 * KiB, 256 * KiB]) SIZES.push(b - 1, b, b + 1, b - b / 8 - 1, b - b / 8, b - b / 8 + 1);

/** Back-to-back responses to `methods` (Content-Length or chunked; HEAD, 204, 304 bodyless); nothing left over. */
function responses(all: Buffer, methods: readonly string[]): Array<{ head: string; body: Buffer }> {
  const out: Array<{ head: string; body: Buffer }> = [];
  let at = 0;
  for (const m of methods) {
    const sep = all.indexOf('\r\n\r\n', at);
    const head = all.subarray(at, sep).toString('latin1');
    let p = sep + 4;
    const cl = /\r\ncontent-length: (\d+)/i.exec(head);
    if (m === 'HEAD' || / (204|304) /.test(head.slice(8, 13))) out.push({ head, body: Buffer.alloc(0) });
    else if (cl !== null) {
      out.push({ head, body: all.subarray(p, p + Number(cl[1])) });
      p += Number(cl[1]);
    } else {
      const parts: Buffer[] = [];
      for (let n = -1; n !== 0; ) {
        const e = all.indexOf('\r\n', p);
        n = parseInt(all.subarray(p, e).toString('latin1'), 16);
        parts.push(all.subarray(e + 2, e + 2 + n));
        p = e + 2 + n + 2;
      }
      out.push({ head, body: Buffer.concat(parts) });
    }
    at = p;
  }
  expect(at).toBe(all.length);
  return out;
}

interface Case {
  path: string;
  want: Buffer;
}

describe('origin reads (socket-reads.ts): byte-exact bodies through one reused origin connection', () => {
  it.each(['cl', 'chunked'])('%s: every size class, burst/trickle/mixed, as a miss then as hits between later misses', async (te) => {
    const o = track(await origin());
    const px = track(await proxyOf(o.url, 1));
    const done: Case[] = [];
    let bytes = 0;
    let hits = 0;
    for (const size of SIZES) {
      for (const mode of ['burst', 'trickle', 'mixed']) {
        const name = `${te}-${mode}-${size}`;
        const c = { path: `/o/${name}?n=${size}&m=${mode}&te=${te}`, want: bodyOf(name, size) };
        const miss = await get(px, c.path);
        expect(bodyMismatch(miss.body, c.want), c.path).toBe('');
        done.push(c);
        bytes += size;
        // Three earlier objects as hits, while the connection's buffer is reused by the misses in between.
        for (let k = 1; k <= 3 && k <= done.length; k++) {
          const h = done[(done.length * 7 + k * 13) % done.length] as Case;
          const hit = await get(px, h.path);
          expect(hit.cache, h.path).toMatch(/hit/);
          expect(bodyMismatch(hit.body, h.want), h.path).toBe('');
          bytes += h.want.length;
          hits++;
        }
      }
    }
    // At the end every stored object, once more.
    for (const c of done) {
      const hit = await get(px, c.path);
      expect(hit.cache, c.path).toMatch(/hit/);
      expect(sha(hit.body), c.path).toBe(sha(c.want));
      bytes += c.want.length;
      hits++;
    }
    if (process.env.S11_FIGURES !== undefined) console.log(`S11 ${te}: ${done.length} misses, ${hits} hits, ${bytes} bytes verified`);
    expect(o.count).toBe(SIZES.length * 3);
    expect(px.origin.counters()[0]?.connects).toBe(1);
    expect(hits).toBe(SIZES.length * 3 * 4 - 3);
    expect(bytes).toBeGreaterThan(30 * 1024 * KiB);
    expect(uncaught).toEqual([]);
  }, 120_000);

  it('concurrent misses on 4 connections, each streamed while others are served as hits: every body exact', async () => {
    const o = track(await origin());
    const px = track(await proxyOf(o.url, 4));
    const cases: Case[] = [];
    for (let i = 0; i < 48; i++) {
      const size = SIZES[i % SIZES.length] as number;
      const mode = ['burst', 'trickle', 'mixed'][i % 3] as string;
      const te = i % 2 === 0 ? 'cl' : 'chunked';
      const name = `c${i}`;
      cases.push({ path: `/o/${name}?n=${size}&m=${mode}&te=${te}`, want: bodyOf(name, size) });
    }
    // Three waves: each wave's misses run 12 at a time against 4 connections, with the earlier waves' objects as hits.
    for (let w = 0; w < 4; w++) {
      const wave = cases.slice(w * 12, w * 12 + 12);
      const earlier = cases.slice(0, w * 12);
      const got = await Promise.all([...wave, ...earlier].map(async (c) => ({ c, r: await get(px, c.path) })));
      for (const { c, r } of got) expect(bodyMismatch(r.body, c.want), c.path).toBe('');
    }
    expect(o.count).toBe(48);
    expect(uncaught).toEqual([]);
  }, 120_000);

  it.each([200 * KiB, 1024 * KiB + 3])('10 clients coalesced on one trickled miss of %i bytes (kept as origin chunks or slabs): all exact', async (size) => {
    const o = track(await origin());
    const px = track(await proxyOf(o.url, 2));
    const path = `/o/co${size}?n=${size}&m=mixed&te=chunked`;
    const got = await Promise.all(Array.from({ length: 10 }, () => get(px, path)));
    for (const r of got) expect(bodyMismatch(r.body, bodyOf(`co${size}`, size))).toBe('');
    expect(o.count).toBe(1);
  });
});

/**
 * Several responses' bytes in one origin read: an interim 103 (and a 100) before the final response, a 304 then the
 * next request's 200 on the kept-alive connection, a HEAD answer, a 204; and bytes a lying origin sends past a
 * response (after a 204, past Content-Length): they must never become the next request's response.
 */
describe('origin reads: several responses in one read, and bytes past a response', () => {
  it('two 103s and the final 200 in one write: the body is exact and the interim heads are not in it', async () => {
    const body = bodyOf('interim', 200 * KiB);
    const o = track(
      await startRawOrigin((s) => {
        const interim = 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n'.repeat(2);
        s.write(Buffer.concat([Buffer.from(`${interim}HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
      }),
    );
    const px = track(await proxyOf(o.url, 1));
    for (let i = 0; i < 3; i++) expect(bodyMismatch((await get(px, '/i')).body, body)).toBe('');
    expect(o.count).toBe(1);
  });

  it('pipelined client: HEAD, a 304, a 204, a 200 and a chunked 200 over one origin connection, each exact', async () => {
    const big = bodyOf('big', 300 * KiB);
    const small = bodyOf('small', 60 * KiB);
    const o = track(
      await startRawOrigin((s, head) => {
        const p = /^[A-Z]+ (\S+)/.exec(head)?.[1];
        if (head.startsWith('HEAD')) return void s.write(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${big.length}\r\n\r\n`);
        if (p === '/nm') return void s.write('HTTP/1.1 304 Not Modified\r\netag: "x"\r\ncache-control: private\r\n\r\n');
        if (p === '/nc') return void s.write('HTTP/1.1 204 No Content\r\ncache-control: private\r\n\r\n');
        if (p === '/ch') return void s.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ncache-control: private\r\ntransfer-encoding: chunked\r\n\r\n'), chunked(small)]));
        s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${big.length}\r\n\r\n`), big]));
      }),
    );
    const px = track(await proxyOf(o.url, 1));
    const methods = ['HEAD', 'GET', 'GET', 'GET', 'GET', 'HEAD', 'GET'];
    const paths = ['/h', '/nm', '/nc', '/big', '/ch', '/h', '/big'];
    const sock = net.connect(px.port, '127.0.0.1');
    const parts: Buffer[] = [];
    sock.on('data', (d: Buffer) => parts.push(d));
    const closed = new Promise((r) => sock.on('close', r));
    const reqs = paths.map((p, i) => `${methods[i]} ${p} HTTP/1.1\r\nHost: t\r\n${p === '/nm' ? 'if-none-match: "x"\r\n' : ''}${i === paths.length - 1 ? 'connection: close\r\n' : ''}\r\n`);
    sock.write(reqs.join(''));
    await closed;
    const rs = responses(Buffer.concat(parts), methods);
    expect(rs.map((r) => Number(r.head.slice(9, 12)))).toEqual([200, 304, 204, 200, 200, 200, 200]);
    expect(bodyMismatch(rs[3]?.body as Buffer, big)).toBe('');
    expect(bodyMismatch(rs[4]?.body as Buffer, small)).toBe('');
    expect(bodyMismatch(rs[6]?.body as Buffer, big)).toBe('');
    expect(o.count).toBe(7);
  });

  it.each([
    ['after a 204', (evil: string) => `HTTP/1.1 204 No Content\r\ncache-control: private\r\n\r\n${evil}`],
    ['past Content-Length', (evil: string) => `HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: 5\r\n\r\nfirst${evil}`],
  ])('bytes %s (a whole forged response) never answer the next request', async (_name, first) => {
    const evil = 'HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 4\r\n\r\nEVIL';
    let n = 0;
    const o = track(
      await startRawOrigin((s) => {
        n++;
        if (n === 1) return void s.write(first(evil));
        s.write(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: 4\r\n\r\ngood`);
      }),
    );
    const px = track(await proxyOf(o.url, 1));
    await get(px, '/first');
    for (let i = 0; i < 3; i++) expect((await get(px, `/next${i}`)).body.toString()).toBe('good');
    expect(uncaught).toEqual([]);
  });
});
