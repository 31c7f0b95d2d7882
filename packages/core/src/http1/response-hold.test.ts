import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server } from './server.js';
import { responseHead, type Held } from './response.js';

/**
 * What a response holds (a cache object whose slabs it writes: http1/response.ts holdObject) is released once the
 * bytes written for it have left the socket (Connection.releaseWhenWritten): at once when the kernel took the whole
 * response in the write itself, at the completion of a direct write left queued in libuv, after the Writable's queue
 * drains, or when the socket is destroyed; exactly once. A slab released early could be refilled under bytes libuv or
 * the Writable still sends (slab-reuse.test.ts and slab-attack.test.ts check that end to end).
 */

const BIG = 16 * 1024 * 1024;
let server: Http1Server | undefined;
const open: net.Socket[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

/** A Held that counts its holds and releases; `needsHold` as given. */
function counted(needsHold: boolean): Held & { holds: number; releases: number } {
  return {
    holds: 0,
    releases: 0,
    needsHold,
    hold() {
      this.holds++;
    },
    release() {
      this.releases++;
    },
  };
}

interface Served {
  held: ReturnType<typeof counted>;
  /** Releases seen right after the response's end returned (synchronously). */
  releasesAtEnd: number;
}

/**
 * A server whose every response holds a fresh counted object and ends with `size` body bytes, through endPrepared
 * (`prepared`: a direct write when directWrites) or end (the Writable). Resolves each response's record as it ends.
 */
async function serve(opts: { size: number; prepared: boolean; directWrites: boolean; needsHold?: boolean }): Promise<{ port: number; served: Served[] }> {
  const served: Served[] = [];
  const body = Buffer.alloc(opts.size, 97);
  server = new Http1Server(
    (_req, res) => {
      const held = counted(opts.needsHold ?? true);
      res.holdObject(held);
      if (opts.prepared) {
        const head = Buffer.from(responseHead(200, `content-length: ${opts.size}\r\n`, res.persistenceLines(false)), 'latin1');
        res.endPrepared(200, opts.size, head, head.length, [body]);
      } else {
        res.writeHead(200, { 'content-length': String(opts.size) });
        res.end(body);
      }
      served.push({ held, releasesAtEnd: held.releases });
    },
    { directWrites: opts.directWrites },
  );
  const port = (await server.listen(0, '127.0.0.1')).port;
  return { port, served };
}

/** A client that sends one request, takes the first bytes, then stops reading until `resume`. */
function pausedClient(port: number): { firstBytes: Promise<void>; resume(): void; bytes(): number; all: Promise<number>; socket: net.Socket } {
  const s = net.connect(port, '127.0.0.1');
  open.push(s);
  let got = 0;
  let firstResolve!: () => void;
  const firstBytes = new Promise<void>((r) => (firstResolve = r));
  let allResolve!: (n: number) => void;
  const all = new Promise<number>((r) => (allResolve = r));
  s.on('data', (d: Buffer) => {
    if (got === 0) {
      s.pause();
      firstResolve();
    }
    got += d.length;
    // Head (under 200 bytes) plus BIG: the whole response arrived.
    if (got >= BIG) allResolve(got);
  });
  s.on('error', () => undefined);
  s.on('close', () => allResolve(got));
  s.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
  return { firstBytes, resume: () => s.resume(), bytes: () => got, all, socket: s };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

async function oneSmall(port: number): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  open.push(s);
  await new Promise<void>((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n') && text.length >= text.indexOf('\r\n\r\n') + 4 + 1024) resolve();
    });
    s.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
  });
}

describe('a response releases what it holds once its bytes have left the socket', () => {
  it.each([
    ['a prepared response, direct writes', true, true],
    ['a prepared response, Writable writes', true, false],
    ['a plain end', false, true],
  ])('%s the kernel takes whole: released at once, exactly once', async (_name, prepared, directWrites) => {
    const { port, served } = await serve({ size: 1024, prepared, directWrites });
    await oneSmall(port);
    await oneSmall(port);
    expect(served).toHaveLength(2);
    for (const r of served) {
      expect(r.held.holds).toBe(1);
      expect(r.releasesAtEnd).toBe(1);
      expect(r.held.releases).toBe(1);
    }
  });

  it.each([
    ['a prepared response, direct writes (queued in libuv)', true, true],
    ['a prepared response, Writable writes', true, false],
    ['a plain end (Writable)', false, true],
  ])('%s to a client that stops reading: held until every byte left, then released once', async (_name, prepared, directWrites) => {
    const { port, served } = await serve({ size: BIG, prepared, directWrites });
    const c = pausedClient(port);
    await c.firstBytes;
    await until(() => served.length === 1);
    const r = served[0] as Served;
    expect(r.releasesAtEnd).toBe(0);
    // The client read only its first bytes: most of the 16 MiB is still in libuv or the Writable.
    expect(c.bytes()).toBeLessThan(BIG);
    expect(r.held.releases).toBe(0);
    c.resume();
    expect(await c.all).toBeGreaterThanOrEqual(BIG);
    await until(() => r.held.releases > 0);
    expect(r.held.releases).toBe(1);
    expect(r.held.holds).toBe(1);
  });

  it('an object that needs no hold (no slabs) is released at once even while its bytes are queued', async () => {
    const { port, served } = await serve({ size: BIG, prepared: true, directWrites: true, needsHold: false });
    const c = pausedClient(port);
    await c.firstBytes;
    await until(() => served.length === 1);
    expect((served[0] as Served).releasesAtEnd).toBe(1);
    c.resume();
    await c.all;
    expect((served[0] as Served).held.releases).toBe(1);
  });

  it.each([true, false])('a client that resets mid-response (direct writes %s): released once, after the socket is gone', async (directWrites) => {
    const { port, served } = await serve({ size: BIG, prepared: true, directWrites });
    const c = pausedClient(port);
    await c.firstBytes;
    await until(() => served.length === 1);
    const r = served[0] as Served;
    expect(r.held.releases).toBe(0);
    c.socket.resetAndDestroy();
    await until(() => r.held.releases > 0);
    // Nothing more comes after the first release (a double release would free slabs another response holds).
    await new Promise((res) => setTimeout(res, 50));
    expect(r.held.releases).toBe(1);
  });
});
