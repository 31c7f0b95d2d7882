import { afterEach, beforeEach } from 'vitest';
import net from 'node:net';
import { request } from 'undici';
import { createOriginClient, type OriginClient } from '@sluice/origin-client';
import { createProxy, type Proxy, type ProxyOptions } from '../proxy/proxy.js';

/** A real proxy on 127.0.0.1:0 in front of `backendUrl`, through the real origin client. */
export interface ProxyHarness {
  proxy: Proxy;
  url: string;
  port: number;
  origin: OriginClient;
  close(): Promise<void>;
}

export async function startProxy(
  backendUrl: string,
  opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {},
  backend: { firstByteTimeoutMs?: number; betweenBytesTimeoutMs?: number; maxConnections?: number } = {},
): Promise<ProxyHarness> {
  const origin = createOriginClient({ backends: [{ url: backendUrl, ...backend }] });
  const proxy = createProxy({ ...opts, upstream: origin });
  const addr = await proxy.listen(0);
  return {
    proxy,
    origin,
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    close: async () => {
      await proxy.close();
      await origin.destroy();
    },
  };
}

/** A response read off a raw socket, framing kept as sent. */
export interface RawResponse {
  status: number;
  head: string;
  headers: Record<string, string>;
  /** Body bytes after de-chunking (or as sent when not chunked). */
  body: Buffer;
  chunked: boolean;
  /** Chunked: whether the terminating zero-size chunk arrived. */
  terminated: boolean;
  /** All bytes received. */
  raw: Buffer;
}

/** Parses one HTTP/1.1 response from raw bytes. */
export function parseRawResponse(raw: Buffer): RawResponse {
  const sep = raw.indexOf('\r\n\r\n');
  if (sep < 0) throw new Error(`no header end in ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const head = raw.subarray(0, sep).toString('latin1');
  const lines = head.split('\r\n');
  const status = Number((lines[0] ?? '').split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  let rest = raw.subarray(sep + 4);
  const chunked = /chunked/i.test(headers['transfer-encoding'] ?? '');
  if (!chunked) return { status, head, headers, body: rest, chunked, terminated: false, raw };
  const parts: Buffer[] = [];
  let terminated = false;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    if (eol < 0) break;
    const size = parseInt(rest.subarray(0, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) break;
    if (size === 0) {
      // "0\r\n" then (no trailers) the final "\r\n".
      terminated = rest.subarray(eol + 2, eol + 4).toString('latin1') === '\r\n';
      break;
    }
    if (rest.length < eol + 2 + size + 2) {
      parts.push(rest.subarray(eol + 2, Math.min(rest.length, eol + 2 + size)));
      break;
    }
    parts.push(rest.subarray(eol + 2, eol + 2 + size));
    rest = rest.subarray(eol + 2 + size + 2);
  }
  return { status, head, headers, body: Buffer.concat(parts), chunked, terminated, raw };
}

/**
 * Sends raw bytes and collects everything until the server closes the connection. Use `Connection: close` in the
 * request, or a case where the server cuts the connection. `onData` sees bytes as they arrive.
 */
export function rawExchange(port: number, request: string | Buffer, onData?: (all: Buffer) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      onData?.(Buffer.concat(chunks));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') resolve(Buffer.concat(chunks));
      else reject(e);
    });
    sock.on('close', () => resolve(Buffer.concat(chunks)));
    sock.write(request);
  });
}

/** Simple GET over a raw socket with Connection: close; parsed. */
export async function rawGet(port: number, path: string, extra: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
  let req = `${method} ${path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(extra)) req += `${k}: ${v}\r\n`;
  return parseRawResponse(await rawExchange(port, `${req}\r\n`));
}

/**
 * Registers an afterEach that closes everything a test started, last started first (proxy before its origin).
 * Usage: `const track = useCleanup(); const origin = track(await startScriptedOrigin(...));`
 */
export function useCleanup(): <T extends { close(): Promise<void> }>(x: T) => T {
  const open: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()?.close();
  });
  return (x) => {
    open.push(x);
    return x;
  };
}

/**
 * Whether `p` settles within `ms`: for a test to fail on an assertion naming what did not happen, instead of on the
 * test timeout. The bound is generous; it is never what the test measures.
 */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `cond` holds, checking after each turn of the event loop (a barrier without timers). */
export async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/**
 * One kept-alive client connection sending requests one after another (raw, so framing and connection reuse are
 * exactly what the test says). Responses must carry Content-Length.
 */
export class KeepAliveClient {
  private readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;

  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.sock.on('error', () => undefined);
  }

  async send(method: string, path: string, headers: Record<string, string> = {}): Promise<RawResponse> {
    let req = `${method} ${path} HTTP/1.1\r\nHost: t\r\n`;
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
    this.sock.write(`${req}\r\n`);
    for (;;) {
      const sep = this.buf.indexOf('\r\n\r\n');
      if (sep >= 0) {
        const head = this.buf.subarray(0, sep).toString('latin1');
        const m = /\r\ncontent-length: (\d+)/i.exec(head);
        const len = m === null ? 0 : Number(m[1]);
        if (this.buf.length >= sep + 4 + len) {
          const raw = this.buf.subarray(0, sep + 4 + len);
          this.buf = this.buf.subarray(sep + 4 + len);
          return parseRawResponse(raw);
        }
      }
      if (this.closed) throw new Error(`connection closed; got ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = undefined;
    }
  }

  async close(): Promise<void> {
    this.sock.destroy();
  }
}

/**
 * Records every uncaught exception and unhandled rejection while each test of the file runs (registered per test);
 * a test asserts the returned list is empty: nothing escaped past its connection.
 */
export function useUncaughtRecorder(): unknown[] {
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => {
    uncaught.push(e);
  };
  beforeEach(() => {
    uncaught.length = 0;
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });
  afterEach(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });
  return uncaught;
}

/**
 * An origin on a raw socket that answers every request head with `reply` (it may lie about framing, never end, ...).
 * `count` is the number of request heads seen.
 */
export async function startRawOrigin(reply: (sock: net.Socket, head: string) => void): Promise<{ url: string; readonly count: number; close(): Promise<void> }> {
  let count = 0;
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        count++;
        reply(s, head);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    get count() {
      return count;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

/**
 * An origin on a raw socket serving `body` (max-age=60, ETag "e"): whole as a 200, or the one `bytes=a-b` range a
 * request asks for as a 206; `onRange` hears the bytes of each range sent.
 */
export function startRangeOrigin(body: Buffer, onRange: (bytes: number) => void = () => undefined): ReturnType<typeof startRawOrigin> {
  return startRawOrigin((s, head) => {
    const m = /\r\nrange: bytes=(\d+)-(\d+)/i.exec(head);
    if (m === null) return void s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
    const a = Number(m[1]);
    const b = Math.min(body.length - 1, Number(m[2]));
    onRange(b - a + 1);
    s.write(Buffer.concat([Buffer.from(`HTTP/1.1 206 Partial Content\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-range: bytes ${a}-${b}/${body.length}\r\ncontent-length: ${b - a + 1}\r\n\r\n`), body.subarray(a, b + 1)]));
  });
}

/** A GET whose body may be cut off: the bytes that arrived and whether it ended cleanly. */
export async function getMaybeCut(url: string): Promise<{ body: Buffer; complete: boolean }> {
  const r = await request(url);
  const parts: Buffer[] = [];
  try {
    for await (const c of r.body) parts.push(c as Buffer);
    return { body: Buffer.concat(parts), complete: true };
  } catch {
    return { body: Buffer.concat(parts), complete: false };
  }
}
