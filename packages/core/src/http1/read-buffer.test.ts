import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server, type BadRequestInfo, type Http1Request } from './server.js';
import type { Http1Response } from './response.js';

/**
 * Client sockets read into one buffer shared by every connection (read-buffer.ts): whatever a connection keeps past a
 * read (a request body, a head still arriving, pipelined requests, a refused request's first bytes) must be its own
 * copy, not a view that the next read of any connection overwrites. Each test runs with the shared buffer (the
 * default) and with reads through 'data', and makes other connections read a lot between the kept bytes' arrival and
 * their use.
 */

let server: Http1Server | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

/** A raw client: what it sent is written as given; `text()` is everything received so far. */
function client(port: number): Promise<{ s: net.Socket; text: () => string; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => undefined);
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.on('connect', () => resolve({ s, text: () => out, closed }));
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await tick();
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

/** Another connection that sends `n` requests carrying `size`-byte bodies of `fill` (so the shared buffer is rewritten). */
async function churn(port: number, n: number, size: number, fill: string): Promise<void> {
  const c = await client(port);
  const body = fill.repeat(size);
  let all = '';
  for (let i = 0; i < n; i++) all += `POST /churn HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n${body}`;
  c.s.write(all);
  await until(() => (c.text().match(/HTTP\/1\.1 200/g) ?? []).length === n, `${n} churn answers`);
  c.s.destroy();
}

describe.each([
  { shared: true, name: 'reads into the shared buffer' },
  { shared: false, name: "reads through 'data'" },
])('client connection bytes kept past a read ($name)', ({ shared }) => {
  /** A server whose /hold requests wait for `release()` before reading their body; others echo their body length. */
  async function start(onBad?: (info: BadRequestInfo) => void): Promise<{ port: number; release: () => void }> {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    server = new Http1Server(
      (req: Http1Request, res: Http1Response) => {
        void (async () => {
          if (req.url === '/hold') await held;
          const parts: Buffer[] = [];
          if (req.body !== null) for await (const c of req.body) parts.push(c as Buffer);
          const text = `${req.url} ${Buffer.concat(parts).toString('latin1')}`;
          const out = req.url === '/churn' ? `${req.url} ${Buffer.concat(parts).length}` : text;
          res.writeHead(200, { 'content-length': String(out.length) });
          res.end(Buffer.from(out, 'latin1'));
        })();
      },
      { sharedReadBuffer: shared, ...(onBad === undefined ? {} : { onBadRequest: (_s: number, _r: string, info: BadRequestInfo) => onBad(info) }) },
    );
    return { port: (await server.listen(0, '127.0.0.1')).port, release };
  }

  it('uses the read mode it was given', async () => {
    const { port } = await start();
    const c = await client(port);
    await until(() => server?.connections.size === 1, 'the connection');
    const conn = [...(server as Http1Server).connections][0];
    expect(conn?.readsShared).toBe(shared);
    c.s.destroy();
  });

  it('a body that came with its head, and the pipelined request after it, are intact when read after other reads', async () => {
    const { port, release } = await start();
    const c = await client(port);
    const body = 'abcdefghijklmnopqrstuvwxyz0123456789';
    c.s.write(`POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    await tick();
    // Other connections read (into the shared buffer, when shared) while /hold has not read its body yet.
    await churn(port, 20, 3000, 'Z');
    release();
    await c.closed;
    expect(c.text()).toContain(`/hold ${body}`);
    expect(c.text()).toContain('/after ');
    expect(c.text().match(/HTTP\/1\.1 200/g)).toHaveLength(2);
  });

  it('a body larger than one read, read slowly while other connections read, arrives byte for byte', async () => {
    const { port, release } = await start();
    const c = await client(port);
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 9)) & 0xff;
    c.s.write(`POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    c.s.write(body);
    await tick();
    await churn(port, 10, 60_000, 'Y');
    release();
    await c.closed;
    const text = c.text();
    const at = text.indexOf('/hold ') + '/hold '.length;
    expect(Buffer.from(text.slice(at), 'latin1').equals(body)).toBe(true);
  });

  it('a head arriving in pieces between other connections reads is parsed as sent', async () => {
    const { port } = await start();
    const c = await client(port);
    const pieces = ['GET /pie', 'ces?q=1 HTTP/1.1\r\nHo', 'st: x\r\nX-Long: ', 'v'.repeat(500), '\r\nConnection: close\r\n', '\r\n'];
    for (const p of pieces) {
      c.s.write(p);
      await tick();
      await churn(port, 2, 2000, 'W');
    }
    await c.closed;
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\/pieces\?q=1 $/);
  });

  it("a refused request's first bytes, told to onBadRequest, stay as received", async () => {
    const infos: Array<{ info: BadRequestInfo; copy: string }> = [];
    const { port } = await start((info) => infos.push({ info, copy: info.received.toString('latin1') }));
    const c = await client(port);
    c.s.write('GET /x HTTP/1.1\r\nBad Header\r\n\r\n');
    await c.closed;
    await churn(port, 5, 5000, 'V');
    expect(infos).toHaveLength(1);
    expect(infos[0]?.copy.startsWith('GET /x HTTP/1.1\r\nBad Header')).toBe(true);
    expect(infos[0]?.info.received.toString('latin1')).toBe(infos[0]?.copy);
  });
});
