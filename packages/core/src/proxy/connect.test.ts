import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createOriginClient } from '@sluice/origin-client';
import { createProxy } from './proxy.js';
import { until, useCleanup } from '../test-support/harness.js';

const track = useCleanup();

/** A TCP echo server standing in for a CONNECT destination. */
async function echoServer(): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => sockets.size,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

async function proxyWith(connectAllow: string[], tunnelIdleTimeoutMs?: number) {
  const origin = createOriginClient({ backends: [{ url: 'http://127.0.0.1:9' }], connectAllow });
  const proxy = createProxy({ upstream: origin, tunnelIdleTimeoutMs });
  const { port } = await proxy.listen(0);
  track({ close: async () => { await proxy.close(); await origin.destroy(); } });
  return { proxy, origin, port };
}

/** A TCP server that sends one byte every `everyMs` to each connection and never reads. */
async function tickerServer(everyMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    const t = setInterval(() => s.write('.'), everyMs);
    timers.add(t);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(t);
      sockets.delete(s);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** Opens a tunnel; resolves once the 200 arrived, with the socket and a promise of its close (ms after the 200). */
async function openTunnel(port: number, target: string): Promise<{ sock: net.Socket; received: () => string; closed: Promise<number> }> {
  const sock = net.connect(port, '127.0.0.1');
  let got = '';
  let openedMs = 0;
  const closed = new Promise<number>((r) => sock.on('close', () => r(Date.now() - openedMs)));
  sock.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    sock.on('data', (d) => {
      got += String(d);
      if (openedMs === 0 && got.includes('\r\n\r\n')) {
        openedMs = Date.now();
        resolve();
      }
    });
    sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
  return { sock, received: () => got, closed };
}

/** Sends CONNECT, then (after the 200) a payload; resolves with everything received until `until` matches. */
function connectThrough(port: number, target: string, payload: string, until: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    s.on('data', (d) => {
      got += String(d);
      if (!sent && got.startsWith('HTTP/1.1 200 ')) {
        sent = true;
        s.write(payload);
      }
      if (until.test(got)) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('close', () => resolve(got));
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}

describe('CONNECT tunnels', () => {
  it('tunnels to an allowed destination and counts the bytes', async () => {
    const echo = track(await echoServer());
    const { proxy, origin, port } = await proxyWith([`127.0.0.1:${echo.port}`]);
    const got = await connectThrough(port, `127.0.0.1:${echo.port}`, 'hello', /echo:hello/);
    expect(got).toBe('HTTP/1.1 200 Connection Established\r\n\r\necho:hello');
    expect(proxy.stats.tunnel_opened).toBe(1);
    expect(proxy.stats.tunnel_bytes_up).toBe(5);
    expect(proxy.stats.tunnel_bytes_down).toBe(10);
    expect(origin.tunnelCounters.opened).toBe(1);
  });

  it('refuses a destination that is not allowed with 403, and keeps serving', async () => {
    const echo = track(await echoServer());
    const { proxy, port } = await proxyWith(['example.test:443']);
    const got = await connectThrough(port, `127.0.0.1:${echo.port}`, 'x', /\r\n\r\n/);
    expect(got).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(proxy.stats.tunnel_denied).toBe(1);
    expect(proxy.stats.tunnel_opened).toBe(0);
  });

  it('answers 502 when an allowed destination cannot be reached', async () => {
    const { port } = await proxyWith(['127.0.0.1:*']);
    const dead = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const got = await connectThrough(port, `127.0.0.1:${dead}`, 'x', /\r\n\r\n/);
    expect(got).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/);
  });

  it('closes both sides of a tunnel where neither sent a byte for tunnelIdleTimeoutMs', async () => {
    const echo = track(await echoServer());
    const { proxy, port } = await proxyWith([`127.0.0.1:${echo.port}`], 300);
    const t = await openTunnel(port, `127.0.0.1:${echo.port}`);
    expect(t.received()).toBe('HTTP/1.1 200 Connection Established\r\n\r\n');
    // Traffic keeps it open past the timeout...
    for (let i = 0; i < 6; i++) {
      t.sock.write('x');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(t.sock.destroyed).toBe(false);
    // ...silence closes it. Without an idle timeout it would stay open for good (the 3 s race is lost).
    const after = await Promise.race([t.closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    expect(after).toBeGreaterThan(0);
    expect(proxy.stats.tunnel_idle_closed).toBe(1);
    await until(() => echo.connections() === 0); // the origin side is closed too
    expect(t.received()).toBe(`HTTP/1.1 200 Connection Established\r\n\r\n${'echo:x'.repeat(6)}`);
  });

  it('a tunnel where only the origin talks is not idle', async () => {
    const ticker = track(await tickerServer(50));
    const { proxy, port } = await proxyWith([`127.0.0.1:${ticker.port}`], 300);
    const t = await openTunnel(port, `127.0.0.1:${ticker.port}`);
    await new Promise((r) => setTimeout(r, 900));
    expect(t.sock.destroyed).toBe(false);
    expect(proxy.stats.tunnel_idle_closed).toBe(0);
    t.sock.destroy();
  });
});
