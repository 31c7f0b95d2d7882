import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startProxy, startRawOrigin, settlesWithin, until, useCleanup, useUncaughtRecorder, type ProxyHarness } from '../test-support/harness.js';
import { bodyMismatch, bodyOf, sha } from '../test-support/bodies.js';

/**
 * Session 11 review, from outside, of the origin read path (origin-client/src/socket-reads.ts: plain http: origin
 * sockets read through `onread` in reads of up to 256 KiB) where the flow matters: origins that lie about lengths,
 * die, stall or never end, with the client there or gone; a paused client on a pass (the origin read must stop, the
 * proxy holds a bounded amount, and the body resumes intact); clients that leave mid-body (the origin connection is
 * dropped for a pass, kept for a cacheable miss); 50 clients at once. Raw origin sockets, so framing is as written.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const track = useCleanup();
const uncaught = useUncaughtRecorder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes `data` with the socket's backpressure, in `piece`-byte writes; resolves with the bytes the socket took. */
async function pour(s: net.Socket, data: Buffer, piece = 1 * MiB): Promise<number> {
  let at = 0;
  while (at < data.length && !s.destroyed) {
    const n = Math.min(piece, data.length - at);
    const more = s.write(data.subarray(at, at + n));
    at += n;
    if (!more) await new Promise((r) => (s.once('drain', r), s.once('close', r)));
  }
  return at;
}

/** A raw client: sends `req`, keeps every byte, can pause after the first; `done` at close. */
function rawClient(port: number, req: string, pauseAfterFirst = false): { first: Promise<void>; sock: net.Socket; got: () => number; done: Promise<Buffer> } {
  const sock = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  let n = 0;
  sock.on('error', () => undefined);
  const first = new Promise<void>((r) =>
    sock.once('data', () => {
      if (pauseAfterFirst) sock.pause();
      r();
    }),
  );
  sock.on('data', (d: Buffer) => (parts.push(d), (n += d.length)));
  const done = new Promise<Buffer>((r) => sock.on('close', () => r(Buffer.concat(parts))));
  sock.write(req);
  return { first, sock, got: () => n, done };
}

/** The body of a Content-Length response in `raw`, and whether all of it arrived. */
function bodyIn(raw: Buffer): { body: Buffer; complete: boolean } {
  const sep = raw.indexOf('\r\n\r\n');
  const cl = Number(/\r\ncontent-length: (\d+)/i.exec(raw.subarray(0, sep).toString('latin1'))?.[1]);
  const body = raw.subarray(sep + 4);
  return { body, complete: body.length === cl };
}

const GET = (path: string, close = true): string => `GET ${path} HTTP/1.1\r\nHost: t\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
const held = (px: ProxyHarness): number => px.proxy.stats.s_beresp_bodybytes - px.proxy.stats.s_resp_bodybytes;

describe('origin reads: origins that lie, die, stall or never end', () => {
  it('more than Content-Length in one burst: exactly the announced bytes, stored, and the next miss is exact', async () => {
    const big = bodyOf('over', 300 * KiB);
    const o = track(
      await startRawOrigin((s, head) => {
        if (head.includes('/over')) return void s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${big.length}\r\n\r\n`), bodyOf('over', 700 * KiB)]));
        const b = bodyOf('next', 500 * KiB);
        s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${b.length}\r\n\r\n`), b]));
      }),
    );
    const px = track(await startProxy(o.url));
    for (let i = 0; i < 3; i++) expect(bodyMismatch(bodyIn(await rawClient(px.port, GET('/over')).done).body, big)).toBe('');
    expect(sha(bodyIn(await rawClient(px.port, GET('/next')).done).body)).toBe(sha(bodyOf('next', 500 * KiB)));
    expect(o.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it.each(['close', 'reset'])('fewer bytes than Content-Length then %s: the client is cut, nothing truncated is stored', async (how) => {
    const full = bodyOf('short', 4 * MiB);
    let n = 0;
    const o = track(
      await startRawOrigin(async (s) => {
        s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${full.length}\r\n\r\n`);
        if (++n > 1) return void s.write(full);
        await pour(s, full.subarray(0, MiB + 5));
        await sleep(30);
        if (how === 'close') s.end();
        else s.resetAndDestroy();
      }),
    );
    const px = track(await startProxy(o.url));
    const cut = bodyIn(await rawClient(px.port, GET('/s')).done);
    expect(cut.complete).toBe(false);
    expect(bodyMismatch(cut.body, full.subarray(0, cut.body.length))).toBe('');
    const again = bodyIn(await rawClient(px.port, GET('/s')).done);
    expect(bodyMismatch(again.body, full)).toBe('');
    expect(o.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it.each(['burst', 'trickle'])('a close-delimited body (no length, %s, then FIN): every byte, then a clean end', async (mode) => {
    const body = bodyOf(`eof-${mode}`, MiB + 3);
    const o = track(
      await startRawOrigin(async (s) => {
        s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\n');
        if (mode === 'burst') await pour(s, body);
        else for (let at = 0; at < body.length; at += 7_777) (s.write(body.subarray(at, at + 7_777)), await new Promise((r) => setImmediate(r)));
        s.end();
      }),
    );
    const px = track(await startProxy(o.url));
    for (let i = 0; i < 2; i++) {
      const r = await request(`${px.url}/eof`, { headers: { host: 't' } });
      expect(bodyMismatch(Buffer.from(await r.body.arrayBuffer()), body)).toBe('');
    }
    expect(o.count).toBe(1);
  });

  it('bytes an origin sends on an idle kept-alive connection never answer the next request', async () => {
    let n = 0;
    const o = track(
      await startRawOrigin((s) => {
        const b = bodyOf(`idle${++n}`, 300 * KiB);
        s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${b.length}\r\n\r\n`), b]));
        if (n === 1) setTimeout(() => s.write(`HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nEVIL`), 30);
      }),
    );
    const px = track(await startProxy(o.url));
    const get = async (): Promise<Buffer> => Buffer.from(await (await request(`${px.url}/x`, { headers: { host: 't' } })).body.arrayBuffer());
    expect(bodyMismatch(await get(), bodyOf('idle1', 300 * KiB))).toBe('');
    await sleep(100);
    expect(bodyMismatch(await get(), bodyOf('idle2', 300 * KiB))).toBe('');
    expect(uncaught).toEqual([]);
  });

  it('a 101 Switching Protocols to a plain GET (the proxy never asks to upgrade), bytes after it: never relayed, the GET retried', async () => {
    let n = 0;
    const o = track(
      await startRawOrigin((s) => {
        if (++n === 1) return void s.write(Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'), bodyOf('ws', 300 * KiB)]));
        s.write('HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: 4\r\n\r\ngood');
      }),
    );
    const px = track(await startProxy(o.url));
    const first = await request(`${px.url}/u`, { headers: { host: 't' } });
    const firstBody = await first.body.text();
    // The 101 breaks the exchange before any response (undici refuses it): retried once on a fresh connection.
    expect(first.statusCode).toBe(200);
    expect(firstBody).toBe('good');
    expect(o.count).toBe(2);
    const next = await request(`${px.url}/u2`, { headers: { host: 't' } });
    expect(await next.body.text()).toBe('good');
    expect(uncaught).toEqual([]);
  });

  it('the head, then nothing: the client gets the head and is cut after betweenBytesTimeoutMs; nothing stored', async () => {
    const o = track(await startRawOrigin((s) => void s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 1000000\r\n\r\n')));
    const px = track(await startProxy(o.url, {}, { betweenBytesTimeoutMs: 300 }));
    const r = bodyIn(await rawClient(px.port, GET('/h')).done);
    expect(r.complete).toBe(false);
    expect(r.body.length).toBe(0);
    await rawClient(px.port, GET('/h')).done;
    expect(o.count).toBe(2);
  });

  it.each(['private', 'max-age=60'])('a never-ending chunked body (%s), the client gone after 2 MiB: the origin connection is closed', async (cc) => {
    let closed = 0;
    let sent = 0;
    const o = track(
      await startRawOrigin(async (s) => {
        s.on('close', () => closed++);
        s.write(`HTTP/1.1 200 OK\r\ncache-control: ${cc}\r\ntransfer-encoding: chunked\r\n\r\n`);
        const piece = Buffer.concat([Buffer.from(`${(300 * KiB).toString(16)}\r\n`), bodyOf('endless', 300 * KiB), Buffer.from('\r\n')]);
        while (!s.destroyed) sent += await pour(s, piece);
      }),
    );
    // A cacheable object this large would not fit: the store refuses it and the fetch ends with its last reader.
    const px = track(await startProxy(o.url, { storageBytes: 8 * MiB }));
    const c = rawClient(px.port, GET('/endless'));
    await until(() => c.got() > 2 * MiB);
    c.sock.destroy();
    expect(await settlesWithin(until(() => closed === 1), 10_000), `origin still open after ${sent} bytes`).toBe(true);
    expect(uncaught).toEqual([]);
  });
});

/**
 * A pass to a client that stops reading: the proxy's fetch waits for the transit buffer, undici's parser pauses, the
 * origin socket's Readable fills and its reading stops (onread's callback returns false). Measured as bytes the proxy
 * fetched but did not deliver (the transit tests' measure) and bytes the origin got into its socket: both stop growing.
 */
describe('origin reads: a paused client on a pass', () => {
  it('the origin read stops while the client pauses, the proxy holds a bounded amount, and the body resumes intact', async () => {
    const body = bodyOf('slow', 48 * MiB);
    let written = 0;
    const o = track(
      await startRawOrigin(async (s) => {
        s.write(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${body.length}\r\n\r\n`);
        // In 1 MiB writes as fast as the socket takes them: most reads fill the proxy's 256 KiB buffer.
        for (let at = 0; at < body.length && !s.destroyed; at += MiB) {
          const more = s.write(body.subarray(at, at + MiB));
          written = at + MiB;
          if (!more) await new Promise((r) => (s.once('drain', r), s.once('close', r)));
        }
      }),
    );
    const transitBytes = 1 * MiB;
    const px = track(await startProxy(o.url, { transitBytes }));
    const c = rawClient(px.port, GET('/slow'), true);
    await c.first;
    let maxHeld = 0;
    for (let i = 0; i < 3000; i++) {
      await new Promise((r) => setImmediate(r));
      maxHeld = Math.max(maxHeld, held(px));
    }
    const w0 = written;
    await sleep(300);
    // Stopped: the origin wrote nothing more in 300 ms, far from the end of the body.
    expect(written).toBe(w0);
    expect(written).toBeLessThan(body.length / 2);
    // The transit buffer plus one origin read (256 KiB) at most.
    if (process.env.S11_FIGURES !== undefined) console.log(`S11 pass-pause: maxHeld ${maxHeld} written ${written}`);
    expect(maxHeld).toBeLessThanOrEqual(transitBytes + 256 * KiB);
    c.sock.resume();
    const got = bodyIn(await c.done);
    expect(bodyMismatch(got.body, body)).toBe('');
    expect(uncaught).toEqual([]);
  }, 60_000);
});

describe('origin reads: a paused client longer than betweenBytesTimeoutMs', () => {
  it('a pass paused 1.2 s with betweenBytesTimeoutMs 300: the outcome is the same as with Node reads (recorded)', async () => {
    const body = bodyOf('longpause', 16 * MiB);
    const o = track(
      await startRawOrigin(async (s) => {
        s.write(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${body.length}\r\n\r\n`);
        await pour(s, body);
      }),
    );
    const px = track(await startProxy(o.url, {}, { betweenBytesTimeoutMs: 300 }));
    const c = rawClient(px.port, GET('/lp'), true);
    await c.first;
    await sleep(1200);
    c.sock.resume();
    const got = bodyIn(await c.done);
    if (process.env.S11_FIGURES !== undefined) console.log(`S11 long pause: complete ${got.complete} ${got.body.length}`);
    expect(bodyMismatch(got.body, body.subarray(0, got.body.length))).toBe('');
    expect(got.complete).toBe(true);
  }, 30_000);
});

describe('origin reads: a client leaving mid-body', () => {
  it.each([
    ['a pass: the origin connection is dropped', 'private', true],
    ['a cacheable miss: the fetch goes on, stores the object whole, and the connection is kept', 'max-age=60', false],
  ])('%s', async (_name, cc, dropped) => {
    const body = bodyOf(`leave-${cc}`, 16 * MiB);
    let closed = 0;
    const o = track(
      await startRawOrigin(async (s) => {
        s.once('close', () => closed++);
        s.write(`HTTP/1.1 200 OK\r\ncache-control: ${cc}\r\ncontent-length: ${body.length}\r\n\r\n`);
        await pour(s, body);
      }),
    );
    const px = track(await startProxy(o.url));
    const c = rawClient(px.port, GET('/leave', false), true);
    await c.first;
    await sleep(20);
    c.sock.destroy();
    if (dropped) {
      expect(await settlesWithin(until(() => closed === 1), 10_000)).toBe(true);
    } else {
      // The fetch goes on without its client to the end of the body; then the object is a hit, exact.
      const counters = (): { active: number; bytes: number } => px.origin.counters()[0] as { active: number; bytes: number };
      expect(await settlesWithin(until(() => counters().active === 0), 20_000)).toBe(true);
      expect(counters().bytes).toBe(body.length);
      const r = await request(`${px.url}/leave`, { headers: { host: 't' } });
      expect(String(r.headers['cache-status'])).toMatch(/hit/);
      expect(bodyMismatch(Buffer.from(await r.body.arrayBuffer()), body)).toBe('');
      expect(closed).toBe(0);
      expect(px.origin.counters()[0]?.disconnects).toBe(0);
    }
    expect(o.count).toBe(1);
    expect(uncaught).toEqual([]);
  }, 60_000);
});

describe('origin reads: 50 clients at once', () => {
  it('50 concurrent misses of 50 objects (bursts and 1 KiB trickles, 1 KiB to 2 MiB) on up to 50 connections, each exact, then as hits', async () => {
    const sizeOf = (i: number): number => [KiB, 56 * KiB, 64 * KiB + 1, 224 * KiB, 256 * KiB, 2 * MiB][i % 6] as number;
    let arrived = 0;
    const o = track(
      await startRawOrigin(async (s, head) => {
        const i = Number(/\/m(\d+)/.exec(head)?.[1]);
        const b = bodyOf(`m${i}`, sizeOf(i));
        arrived++;
        // Every request waits until all 50 arrived: 50 origin connections open at once.
        await until(() => arrived >= 50 || s.destroyed);
        s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${b.length}\r\n\r\n`);
        if (i % 2 === 0) return void (await pour(s, b));
        for (let at = 0; at < b.length && !s.destroyed; at += 64 * KiB) {
          s.write(b.subarray(at, at + 1 * KiB));
          await new Promise((r) => setImmediate(r));
          s.write(b.subarray(at + 1 * KiB, at + 64 * KiB));
        }
      }),
    );
    const px = track(await startProxy(o.url));
    const ids = Array.from({ length: 50 }, (_, i) => i);
    const got = await Promise.all(ids.map(async (i) => (await request(`${px.url}/m${i}`)).body.arrayBuffer()));
    let bytes = 0;
    for (const i of ids) {
      expect(bodyMismatch(Buffer.from(got[i] as ArrayBuffer), bodyOf(`m${i}`, sizeOf(i))), `/m${i}`).toBe('');
      bytes += sizeOf(i);
    }
    expect(px.origin.counters()[0]?.connects).toBe(50);
    const hits = await Promise.all(ids.map(async (i) => (await request(`${px.url}/m${i}`)).body.arrayBuffer()));
    for (const i of ids) expect(sha(Buffer.from(hits[i] as ArrayBuffer)), `/m${i}`).toBe(sha(bodyOf(`m${i}`, sizeOf(i))));
    expect(o.count).toBe(50);
    expect(bytes).toBeGreaterThan(16 * MiB);
    expect(uncaught).toEqual([]);
  }, 60_000);
});
