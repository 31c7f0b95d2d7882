import { describe, expect, it } from 'vitest';
import { startFixtureOrigin } from '@sluice/fixtures';
import { directWriteAvailable, directWriteCounts } from '../http1/direct-write.js';
import { KeepAliveClient, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';
import { lateReader, splitResponses } from '../test-support/raw-responses.js';
import { MemorySink, TxLog } from '../txlog/txlog.js';

/**
 * Session 8 attack on direct hit writes (http1/direct-write.ts): the Writable does not count a direct write left
 * queued in libuv, so whatever decides by writableLength / writableFinished / 'drain' / the idle timer is tried here
 * with a hit queued to a client that does not read: Connection: close, graceful shutdown, the idle timeout, a miss
 * pipelined after it, and the bytes the log accounts. Every test runs with direct writes on and off.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const pattern = (n: number): string => 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(n / 26)).slice(0, n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const modes = [
  ['direct writes', true],
  ['Writable writes', false],
] as const;
/** Larger than loopback's socket buffers take at once, so a direct write of it is left queued. */
const BIG = 16 * 1024 * 1024;

async function warmProxy(opts: { directWrites: boolean; txlog?: TxLog }, sizes: number[]) {
  const origin = track(await startFixtureOrigin());
  const px = track(await startProxy(origin.url, opts));
  for (const s of sizes) {
    const c = new KeepAliveClient(px.port);
    await c.send('GET', `/static/${s}`);
    await c.close();
  }
  return px;
}

/** Waits until the proxy answered at least `n` requests in all and then nothing more for a while. */
async function settled(px: { proxy: { stats: { client_req: number } } }, n: number): Promise<number> {
  await until(() => px.proxy.stats.client_req >= n);
  let served = -1;
  while (served !== px.proxy.stats.client_req) {
    served = px.proxy.stats.client_req;
    await sleep(150);
  }
  return served;
}

describe('s8 attack: a direct hit left queued in libuv', () => {
  it('direct writes are available here', () => {
    expect(directWriteAvailable).toBe(true);
  });

  it.each(modes)('%s: a Connection: close hit read late arrives whole, then EOF; bytes sent by the client meanwhile do not cut it', async (_n, directWrites) => {
    const px = await warmProxy({ directWrites }, [BIG]);
    const before = { ...directWriteCounts };
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`, track);
    await settled(px, 2);
    if (directWrites) expect(directWriteCounts.queued).toBe(before.queued + 1);
    // The client keeps sending (less than a head's worth) while it does not read.
    client.sock.write('x'.repeat(1000));
    await sleep(100);
    const all = await client.read();
    const got = splitResponses(all, ['GET']);
    expect(got.length).toBe(1);
    expect(got[0]?.head).toMatch(/\r\nconnection: close/i);
    expect(got[0]?.body.toString('latin1')).toBe(pattern(BIG));
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: graceful shutdown while a hit is queued to a late reader: the client gets it all, nothing cut', async (_n, directWrites) => {
    const px = await warmProxy({ directWrites }, [BIG]);
    const before = { ...directWriteCounts };
    // Keep-alive (no Connection: close): the connection is idle for the server once the hit was handed over.
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\nGET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`, track);
    await settled(px, 2);
    if (directWrites) expect(directWriteCounts.queued).toBe(before.queued + 1);
    const shut = px.proxy.shutdown(30_000);
    await sleep(200);
    const all = await client.read();
    const r = await shut;
    expect(r.cut).toBe(0);
    // The first response whole; the second request (pipelined, not answered yet) is dropped by the shutdown or answered whole.
    expect(all.length).toBeGreaterThan(BIG);
    const first = splitResponses(all.subarray(0, all.indexOf('\r\n\r\n') + 4 + BIG), ['GET']);
    expect(first[0]?.body.toString('latin1')).toBe(pattern(BIG));
    const rest = all.subarray(all.indexOf('\r\n\r\n') + 4 + BIG);
    if (rest.length > 0) expect(splitResponses(rest, ['GET'])[0]?.body.length).toBe(BIG);
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: a slow but steady reader of a queued hit is not cut by a short idle timeout', async (_n, directWrites) => {
    const px = await warmProxy({ directWrites }, [BIG]);
    (px.proxy.server as unknown as { keepAliveTimeoutMs: number }).keepAliveTimeoutMs = 400;
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`, track);
    await settled(px, 2);
    const chunks: Buffer[] = [];
    let since = 0;
    client.sock.on('data', (d: Buffer) => {
      chunks.push(d);
      since += d.length;
      if (since > 2 * 1024 * 1024) {
        since = 0;
        client.sock.pause();
        setTimeout(() => client.sock.resume(), 100);
      }
    });
    const closed = new Promise<void>((r) => client.sock.once('close', () => r()));
    client.sock.resume();
    await closed;
    const got = splitResponses(Buffer.concat(chunks), ['GET']);
    expect(got[0]?.body.toString('latin1')).toBe(pattern(BIG));
    expect(uncaught).toEqual([]);
  });

  // (Session 10: by the send timeout, not the keep-alive timeout: a queued response's bytes are the send timeout's.)
  it.each(modes)('%s: a client that never reads a queued hit is closed by the send timeout (not held forever)', async (_n, directWrites) => {
    const px = await warmProxy({ directWrites }, [BIG]);
    (px.proxy.server as unknown as { keepAliveTimeoutMs: number }).keepAliveTimeoutMs = 300;
    px.proxy.server.sendTimeoutMs = 300;
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`, track);
    await settled(px, 2);
    await until(() => px.proxy.server.connections.size === 0);
    client.sock.destroy();
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: misses, a 304 and HEADs pipelined after queued hits keep order; ReqAcct counts the bytes on the wire', async (_n, directWrites) => {
    const sink = new MemorySink();
    const px = await warmProxy({ directWrites, txlog: new TxLog([sink]) }, [BIG, 10]);
    await until(() => sink.sessions.length === 2);
    const ec = new KeepAliveClient(px.port);
    const etag = /\r\netag: ([^\r]*)/i.exec((await ec.send('GET', '/static/10')).raw.toString('latin1'))?.[1];
    await ec.close();
    expect(etag).toBe('"s10"');
    await until(() => sink.sessions.length === 3);
    const reqs = [
      `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`,
      `GET /static/777 HTTP/1.1\r\nHost: t\r\n\r\n`,
      `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`,
      `HEAD /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`,
      `GET /static/10 HTTP/1.1\r\nHost: t\r\n${etag !== undefined ? `If-None-Match: ${etag}\r\n` : ''}\r\n`,
      `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`,
      `GET /static/778 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`,
    ];
    const methods = ['GET', 'GET', 'GET', 'HEAD', 'GET', 'GET', 'GET'];
    const groupsBefore = sink.groups.length;
    const client = await lateReader(px.port, reqs.join(''), track);
    await sleep(300);
    const all = await client.read();
    const got = splitResponses(all, methods);
    expect(got.length).toBe(reqs.length);
    const sizes = [BIG, 777, BIG, BIG, 10, BIG, 778];
    got.forEach((g, i) => {
      if (i === 4 && etag !== undefined) {
        expect(g.head).toMatch(/^HTTP\/1\.1 304 /);
        return;
      }
      expect(g.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(g.body.toString('latin1')).toBe(methods[i] === 'HEAD' ? '' : pattern(sizes[i] as number));
    });
    await until(() => sink.groups.length === groupsBefore + reqs.length);
    const accts = sink.groups.slice(groupsBefore).map((t) => Number((t.records.find((r) => r.tag === 'ReqAcct')?.value ?? '').split(' ')[5]));
    expect(accts.length).toBe(reqs.length);
    expect(accts.reduce((a, b) => a + b, 0)).toBe(all.length);
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: requests sent one by one after a hit is queued (client never reads) wait: bounded, then all in order', async (_n, directWrites) => {
    const px = await warmProxy({ directWrites }, [BIG, 10]);
    const before = px.proxy.stats.client_req;
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`, track);
    await settled(px, before + 1);
    // Each later request arrives in its own read, after the proxy stopped: a hit, a miss (Writable path), a HEAD, ...
    const later = [`GET /static/${BIG}`, 'GET /static/781', 'GET /static/10', `HEAD /static/${BIG}`, 'GET /static/782', `GET /static/${BIG}`];
    for (let i = 0; i < later.length; i++) {
      client.sock.write(`${later[i]} HTTP/1.1\r\nHost: t\r\n${i === later.length - 1 ? 'Connection: close\r\n' : ''}\r\n`);
      await sleep(150);
    }
    const served = await settled(px, before + 1);
    // The first hit is still being taken: at most one more was answered (the kernel may have taken the first whole).
    expect(served - before).toBeLessThanOrEqual(2);
    const all = await client.read();
    const methods = ['GET', ...later.map((l) => l.split(' ')[0] as string)];
    const sizes = [BIG, ...later.map((l) => Number(l.split('/')[2]))];
    const got = splitResponses(all, methods);
    expect(got.length).toBe(methods.length);
    got.forEach((g, i) => {
      expect(g.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(g.head).toContain(`\r\ncontent-length: ${sizes[i]}`);
      expect(g.body.toString('latin1')).toBe(methods[i] === 'HEAD' ? '' : pattern(sizes[i] as number));
    });
    expect(uncaught).toEqual([]);
  });

  it.each(modes)('%s: a forced close while a hit is queued: no crash, every connection gone, the session logged once', async (_n, directWrites) => {
    const sink = new MemorySink();
    const px = await warmProxy({ directWrites, txlog: new TxLog([sink]) }, [BIG]);
    await until(() => sink.sessions.length === 1);
    const client = await lateReader(px.port, `GET /static/${BIG} HTTP/1.1\r\nHost: t\r\n\r\n`.repeat(3), track);
    await settled(px, 2);
    const closed = new Promise<void>((r) => client.sock.once('close', () => r()));
    client.sock.resume();
    await px.proxy.close();
    await closed;
    await until(() => sink.sessions.length === 2);
    expect(px.proxy.server.connections.size).toBe(0);
    await sleep(100);
    expect(sink.sessions.length).toBe(2);
    expect(uncaught).toEqual([]);
  });
});
