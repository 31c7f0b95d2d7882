import net from 'node:net';
import https from 'node:https';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createOriginClient, type OriginClient } from './origin-client.js';
import { MAX_READ_BYTES } from './socket-reads.js';

/**
 * Session 11 review of socket-reads.ts from outside: what the onread buffers cost in memory. An open connection
 * holds its read buffer (64 to 256 KiB) while idle; nothing may outlive the connection (a leak); https: backends
 * read through TLS as before (undici's connector, untouched). Memory is V8's `arrayBuffers` (Buffers live there)
 * after full collections.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const open: Array<() => Promise<void>> = [];
const clients: OriginClient[] = [];
afterEach(async () => {
  while (clients.length > 0) await clients.pop()?.destroy();
  while (open.length > 0) await open.pop()?.();
});

/** V8's gc, from a context made while --expose-gc is set (as cli/runtime-memory.ts does). */
const gc = ((): (() => void) => {
  v8.setFlagsFromString('--expose-gc');
  try {
    return vm.runInNewContext('gc') as () => void;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
})();

async function arrayBuffersAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().arrayBuffers;
}

/** An origin answering every request with `size` bytes at once, once `hold` requests are waiting (0: at once). */
async function origin(size: number, hold = 0): Promise<string> {
  const body = Buffer.alloc(size, 'b');
  const sockets = new Set<net.Socket>();
  const waiting: net.Socket[] = [];
  const answer = (s: net.Socket): void => void s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`), body]));
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      for (let i = head.indexOf('\r\n\r\n'); i >= 0; i = head.indexOf('\r\n\r\n')) {
        head = head.slice(i + 4);
        waiting.push(s);
        if (waiting.length >= hold) for (const w of waiting.splice(0)) answer(w);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  open.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => srv.close(r));
  });
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

/** A GET whose body is read to the end and dropped; its length. */
async function fetchLength(c: OriginClient, p = '/'): Promise<number> {
  const r = await c.request({ method: 'GET', path: p, headers: {}, body: null }, { signal: new AbortController().signal });
  let n = 0;
  for await (const chunk of r.body) n += (chunk as Buffer).length;
  return n;
}

describe('socket-reads memory (issue 16 onread buffers)', () => {
  it('50 idle connections hold one read buffer each (at most 256 KiB), and all of it goes with the connections', async () => {
    const url = await origin(2 * MiB, 50);
    const before = await arrayBuffersAfterGc();
    const c = createOriginClient({ backends: [{ url, maxConnections: 50 }] });
    clients.push(c);
    const lengths = await Promise.all(Array.from({ length: 50 }, () => fetchLength(c)));
    expect(lengths).toEqual(Array.from({ length: 50 }, () => 2 * MiB));
    expect(c.counters()[0]?.connects).toBe(50);
    const idle = await arrayBuffersAfterGc();
    await c.destroy();
    clients.pop();
    const after = await arrayBuffersAfterGc();
    const perConnection = (idle - after) / 50;
    if (process.env.S11_FIGURES !== undefined) console.log(`S11 idle: ${perConnection} bytes per connection; before ${before} idle ${idle} after ${after}`);
    // At most one buffer each (grown to 256 KiB by the bursts): more would be a held chunk or a second buffer.
    expect(perConnection).toBeLessThanOrEqual(MAX_READ_BYTES + 16 * KiB);
    expect(after - before).toBeLessThan(2 * MiB);
  }, 60_000);

  it('300 connections one after another (keep-alive off), 512 KiB each: nothing outlives them', async () => {
    const url = await origin(512 * KiB);
    const c = createOriginClient({ backends: [{ url, keepAlive: false }] });
    clients.push(c);
    // Warm up (undici's wasm parser, pools) before the baseline.
    for (let i = 0; i < 10; i++) await fetchLength(c);
    const before = await arrayBuffersAfterGc();
    for (let i = 0; i < 300; i++) expect(await fetchLength(c)).toBe(512 * KiB);
    await new Promise((r) => setTimeout(r, 50));
    const after = await arrayBuffersAfterGc();
    if (process.env.S11_FIGURES !== undefined) console.log(`S11 churn: before ${before} after ${after} connects ${c.counters()[0]?.connects}`);
    expect(c.counters()[0]?.connects).toBe(310);
    // 300 connections of up to 256 KiB buffers each would be 75 MiB: allow the last one or two.
    expect(after - before).toBeLessThan(MiB);
  }, 60_000);
});

describe('socket-reads: https backends keep undici connector', () => {
  it('a 4 MiB body over TLS arrives exact, in chunks of at most 64 KiB', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=origin.test', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
    const body = Buffer.alloc(4 * MiB);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >>> 12)) & 0xff;
    const server = https.createServer({ cert, key: readFileSync(path.join(dir, 'key.pem'), 'utf8') }, (_req, res) => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    open.push(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
    const c = createOriginClient({ backends: [{ url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, tls: { ca: cert } }] });
    clients.push(c);
    const r = await c.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal });
    const chunks: Buffer[] = [];
    for await (const chunk of r.body) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    expect(Math.max(...chunks.map((x) => x.length))).toBeLessThanOrEqual(64 * KiB);
  }, 30_000);
});
