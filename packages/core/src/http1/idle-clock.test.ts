import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server } from './server.js';

/**
 * The server's idle clock (one timer for all connections, Connection.idleCheck) in place of a socket timer per
 * connection: what the socket timeout did must still hold, on raw sockets. Idle keep-alive connections and stalled
 * heads are closed; a client that keeps reading or sending, a queued write that moves, a response in progress and a
 * tunnel are not.
 */

let server: Http1Server | undefined;
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

/** Whether `p` settles within `ms` (so a missing event fails an assertion, not the test timeout). */
const settlesWithin = (p: Promise<unknown>, ms: number): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Waits (bounded) until `cond` holds; the assertion after it says what was expected. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await sleep(10);
}

function connect(port: number): { sock: net.Socket; closed: Promise<void>; got: () => string } {
  const sock = net.connect(port, '127.0.0.1');
  sockets.push(sock);
  let out = '';
  sock.on('data', (d: Buffer) => (out += d.toString('latin1')));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return { sock, closed, got: () => out };
}

/** The close reasons of the server's connections, as they close. */
function reasons(s: Http1Server): string[] {
  const out: string[] = [];
  for (const c of s.connections) c.context.onClose.add(() => out.push(c.context.closeReason ?? '?'));
  return out;
}

async function start(opts: ConstructorParameters<typeof Http1Server>[1], body = 'ok'): Promise<number> {
  server = new Http1Server((_req, res) => {
    res.writeHead(200, { 'content-length': String(body.length) });
    res.end(Buffer.from(body));
  }, opts);
  return (await server.listen(0, '127.0.0.1')).port;
}

describe('idle clock', () => {
  it('closes a kept-alive connection idle after its response (RX_CLOSE_IDLE), then stops ticking', async () => {
    const port = await start({ keepAliveTimeoutMs: 150 });
    const c = connect(port);
    c.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => c.sock.once('data', r));
    const why = reasons(server as Http1Server);
    expect(await settlesWithin(c.closed, 5000)).toBe(true);
    expect(c.got()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/);
    await until(() => why.length > 0);
    expect(why).toEqual(['RX_CLOSE_IDLE']);
    // No connection left: no timer left either.
    await sleep(50);
    expect((server as unknown as { idleTimer: unknown }).idleTimer).toBeUndefined();
  });

  it('closes a connection whose request head stopped half-way (RX_TIMEOUT), with no answer', async () => {
    const port = await start({ keepAliveTimeoutMs: 150 });
    const c = connect(port);
    c.sock.write('GET / HTTP/1.1\r\nHo');
    await sleep(20);
    const why = reasons(server as Http1Server);
    expect(await settlesWithin(c.closed, 5000)).toBe(true);
    expect(c.got()).toBe('');
    await until(() => why.length > 0);
    expect(why).toEqual(['RX_TIMEOUT']);
  });

  it('does not close a client that keeps sending a request body in pieces apart by less than the timeout, for many timeouts', async () => {
    let received = 0;
    server = new Http1Server(async (req, res) => {
      for await (const c of req.body ?? []) received += (c as Buffer).length;
      res.writeHead(200, { 'content-length': String(String(received).length) });
      res.end(Buffer.from(String(received)));
    }, { keepAliveTimeoutMs: 200 });
    const port = (await server.listen(0, '127.0.0.1')).port;
    const c = connect(port);
    c.sock.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n');
    // 12 bytes, one every 80 ms: ~1 s in all, five times the idle timeout.
    for (let i = 0; i < 12; i++) {
      await sleep(80);
      if (c.sock.destroyed) break;
      c.sock.write('x');
    }
    expect(await settlesWithin(c.closed, 5000)).toBe(true);
    expect(received).toBe(12);
    expect(c.got()).toMatch(/\r\n\r\n12$/);
  });

  it('does not close while a response is in progress, however long the handler takes between writes', async () => {
    server = new Http1Server((_req, res) => {
      res.writeHead(200, {});
      void (async () => {
        for (let i = 0; i < 3; i++) {
          await sleep(250);
          res.write(Buffer.from(`p${i};`));
        }
        await sleep(250);
        res.end();
      })();
    }, { keepAliveTimeoutMs: 100 });
    const port = (await server.listen(0, '127.0.0.1')).port;
    const c = connect(port);
    c.sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(await settlesWithin(c.closed, 5000)).toBe(true);
    expect(c.got()).toMatch(/\r\n\r\n3\r\np0;\r\n3\r\np1;\r\n3\r\np2;\r\n0\r\n\r\n$/);
  });

  it('holds off the close while a large response left queued moves to a slow reader, and closes a reader that stops', async () => {
    const BIG = 16 * 1024 * 1024;
    const port = await start({ keepAliveTimeoutMs: 200 }, 'y'.repeat(BIG));
    // Slow but steady: pauses of 100 ms every 2 MiB; the whole response arrives.
    const slow = connect(port);
    slow.sock.pause();
    slow.sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await sleep(100);
    let bytes = 0;
    let since = 0;
    slow.sock.removeAllListeners('data');
    slow.sock.on('data', (d: Buffer) => {
      bytes += d.length;
      since += d.length;
      if (since > 2 * 1024 * 1024) {
        since = 0;
        slow.sock.pause();
        setTimeout(() => slow.sock.resume(), 100);
      }
    });
    slow.sock.resume();
    expect(await settlesWithin(slow.closed, 20000)).toBe(true);
    expect(bytes).toBeGreaterThan(BIG);
    // One that never reads is closed by the idle timeout once its queue stops moving.
    const stuck = connect(port);
    stuck.sock.pause();
    stuck.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // (A paused client reads no end of stream: the server's side tells.)
    await until(() => (server as Http1Server).connections.size === 1);
    await until(() => (server as Http1Server).connections.size === 0);
    expect((server as Http1Server).connections.size).toBe(0);
  }, 40000);

  it('leaves a CONNECT tunnel to its own handler', async () => {
    let tunnel: net.Socket | undefined;
    server = new Http1Server(() => undefined, {
      keepAliveTimeoutMs: 100,
      onConnect: (_req, socket) => {
        tunnel = socket;
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        socket.on('data', (d: Buffer) => socket.write(d));
      },
    });
    const port = (await server.listen(0, '127.0.0.1')).port;
    const c = connect(port);
    c.sock.write('CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n');
    await new Promise((r) => c.sock.once('data', r));
    await sleep(600);
    expect(tunnel?.destroyed).toBe(false);
    c.sock.write('still-here');
    await sleep(100);
    expect(c.got()).toMatch(/still-here$/);
  });

  it('uses a keep-alive timeout changed on the running server from its next tick', async () => {
    const port = await start({ keepAliveTimeoutMs: 60_000 });
    (server as unknown as { keepAliveTimeoutMs: number }).keepAliveTimeoutMs = 150;
    const c = connect(port);
    c.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // The first tick comes at most 1 s after the connection (the 60 s timeout's tick), then every 18 ms.
    expect(await settlesWithin(c.closed, 6000)).toBe(true);
  });
});
