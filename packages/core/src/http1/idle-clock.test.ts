import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server } from './server.js';
import { responseHead } from './response.js';
import { bodyMismatch, bodyOf } from '../test-support/bodies.js';

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
    const port = await start({ keepAliveTimeoutMs: 200, sendTimeoutMs: 1000 }, 'y'.repeat(BIG));
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
    // One that never reads is closed by the send timeout once its queue stops moving.
    const stuck = connect(port);
    stuck.sock.pause();
    stuck.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // (A paused client reads no end of stream: the server's side tells.)
    await until(() => (server as Http1Server).connections.size === 1);
    await until(() => (server as Http1Server).connections.size === 0);
    expect((server as Http1Server).connections.size).toBe(0);
  }, 40000);

  /**
   * Session 10 (slabflake): a response handed whole to the socket (its state no longer 'active') whose tail a paused
   * client had not taken was closed by the keep-alive timeout: a Content-Length body cut short with a clean FIN (the
   * slab tests' rare sha mismatches under load: 4,157,790 of 25,165,824 bytes, every one right). Queued response bytes
   * are the send timeout's, as Varnish's idle_send_timeout and nginx's send_timeout; a relapse shows as a short body.
   */
  describe('a finished response still queued is held to the send timeout, not the keep-alive timeout', () => {
    const BIG = 16 * 1024 * 1024;
    const body = bodyOf('idle-queued', BIG);

    /** A server answering `body` whole: through the Writable (res.end), or prepared (endPrepared: a direct write). */
    async function startBig(opts: ConstructorParameters<typeof Http1Server>[1], prepared: boolean): Promise<number> {
      server = new Http1Server((_req, res) => {
        if (!prepared) {
          res.writeHead(200, { 'content-length': String(BIG) });
          res.end(body);
          return;
        }
        const head = Buffer.from(responseHead(200, `content-length: ${BIG}\r\n`, res.persistenceLines(false)), 'latin1');
        res.endPrepared(200, BIG, head, head.length, [body]);
      }, opts);
      return (await server.listen(0, '127.0.0.1')).port;
    }

    /** A raw client that sends `req`, takes the first bytes, then stops reading; its body once it has it all. */
    function pausedClient(port: number, req: string): { paused: Promise<void>; sock: net.Socket; body: () => Buffer } {
      const c = connect(port);
      c.sock.removeAllListeners('data');
      const parts: Buffer[] = [];
      const paused = new Promise<void>((r) => c.sock.once('data', () => (c.sock.pause(), r())));
      c.sock.on('data', (d: Buffer) => parts.push(d));
      c.sock.write(req);
      return {
        paused,
        sock: c.sock,
        body: () => {
          const all = Buffer.concat(parts);
          return all.subarray(all.indexOf('\r\n\r\n') + 4);
        },
      };
    }

    it.each([
      ['kept alive, written through the Writable', false, false],
      ['kept alive, a direct write', false, true],
      ['Connection: close, written through the Writable', true, false],
      ['Connection: close, a direct write', true, true],
    ])('a client paused for many keep-alive timeouts after the whole response was queued gets every byte (%s)', async (_name, close, prepared) => {
      const port = await startBig({ keepAliveTimeoutMs: 100, sendTimeoutMs: 60_000 }, prepared);
      const c = pausedClient(port, `GET / HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
      await c.paused;
      await until(() => (server as Http1Server).connections.size === 1);
      const why = reasons(server as Http1Server);
      // The response is finished (not 'active'), most of it still queued in the server.
      const conn = [...(server as Http1Server).connections][0] as unknown as { state: string; socket: net.Socket; directPending: number };
      expect(conn.state).not.toBe('active');
      const queued = conn.socket.writableLength + ((conn.socket as unknown as { _handle: { writeQueueSize: number } })._handle.writeQueueSize ?? 0);
      expect(queued).toBeGreaterThan(BIG / 4);
      expect(prepared ? conn.directPending : conn.socket.writableLength).toBeGreaterThan(0);
      // Ten keep-alive timeouts without reading: still open.
      await sleep(1000);
      expect((server as Http1Server).connections.size).toBe(1);
      expect(why).toEqual([]);
      c.sock.resume();
      await until(() => c.body().length >= BIG);
      expect(bodyMismatch(c.body(), body)).toBe('');
      // Everything sent, nothing queued: the keep-alive timeout closes a kept-alive connection; a closing one ends.
      await until(() => why.length > 0);
      expect(why).toEqual([close ? 'REQ_CLOSE' : 'RX_CLOSE_IDLE']);
    }, 30_000);

    it.each([false, true])('a client that never reads is closed by the send timeout (TX_ERROR), long after the keep-alive timeout (direct write %s)', async (prepared) => {
      const port = await startBig({ keepAliveTimeoutMs: 100, sendTimeoutMs: 1500 }, prepared);
      const c = pausedClient(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await c.paused;
      await until(() => (server as Http1Server).connections.size === 1);
      const why = reasons(server as Http1Server);
      await sleep(600);
      // Six keep-alive timeouts: still open (the send timeout is not reached).
      expect((server as Http1Server).connections.size).toBe(1);
      await until(() => why.length > 0);
      expect(why).toEqual(['TX_ERROR']);
      expect((server as Http1Server).connections.size).toBe(0);
      // The client got a cut body: the server's close comes without the rest.
      c.sock.resume();
      const closed = new Promise<void>((r) => (c.sock.destroyed ? r() : c.sock.once('close', () => r())));
      expect(await settlesWithin(closed, 5000)).toBe(true);
      expect(c.body().length).toBeLessThan(BIG);
      expect(bodyMismatch(c.body(), body.subarray(0, c.body().length))).toBe('');
    }, 30_000);

    it('a connection with nothing left to send still closes after the keep-alive timeout (RX_CLOSE_IDLE), whatever the send timeout', async () => {
      const port = await startBig({ keepAliveTimeoutMs: 150, sendTimeoutMs: 60_000 }, false);
      const c = connect(port);
      c.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => (server as Http1Server).connections.size === 1);
      const why = reasons(server as Http1Server);
      // Read as it comes: the whole body, then nothing queued.
      expect(await settlesWithin(c.closed, 10_000)).toBe(true);
      expect(Buffer.byteLength(c.got(), 'latin1')).toBeGreaterThan(BIG);
      expect(bodyMismatch(Buffer.from(c.got().slice(c.got().indexOf('\r\n\r\n') + 4), 'latin1'), body)).toBe('');
      await until(() => why.length > 0);
      expect(why).toEqual(['RX_CLOSE_IDLE']);
    }, 30_000);

    it('the headers timeout still cuts a slowloris (408) that keeps the keep-alive clock moving, whatever the send timeout', async () => {
      server = new Http1Server(() => undefined, { keepAliveTimeoutMs: 200, headersTimeoutMs: 400, sendTimeoutMs: 60_000 });
      const port = (await server.listen(0, '127.0.0.1')).port;
      const c = connect(port);
      c.sock.write('GET / HTTP/1.1\r\nHost: x\r\n');
      await until(() => (server as Http1Server).connections.size === 1);
      const why = reasons(server as Http1Server);
      // A header line every 50 ms, never the end of the head: activity well within the keep-alive timeout.
      for (let i = 0; i < 40 && !c.sock.destroyed && why.length === 0; i++) {
        await sleep(50);
        c.sock.write(`x-${i}: y\r\n`);
      }
      expect(await settlesWithin(c.closed, 5000)).toBe(true);
      expect(c.got()).toMatch(/^HTTP\/1\.1 408 /);
      await until(() => why.length > 0);
      expect(why).toEqual(['RX_TIMEOUT']);
    }, 30_000);
  });

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
