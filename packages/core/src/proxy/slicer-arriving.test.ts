import type http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';

/**
 * A segment still arriving is sent in batches of the chunks already there (slicer/stitch.ts `arriving`). The batch
 * is written, the writer may wait for the client to drain, and meanwhile the rest of the segment arrives and the
 * segment finishes: what arrived during that wait is still sent. A client that stops reading for a while makes those
 * waits happen; no read-ahead makes every segment one still arriving when its turn comes.
 */
const track = useCleanup();
const MiB = 1024 * 1024;
const SEG = MiB;
const SIZE = 24 * MiB;
const BODY = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i += 4) BODY.writeUInt32LE(i, i);
const PIECE = 64 * 1024;

async function slowOrigin() {
  const o = track(
    await startScriptedOrigin(async (req: http.IncomingMessage, res: http.ServerResponse) => {
      const base = { 'cache-control': 'max-age=60', etag: '"v1"' };
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const start = m === null ? 0 : Number(m[1]);
      const end = m === null ? SIZE - 1 : Math.min(SIZE - 1, Number(m[2]));
      if (m === null) res.writeHead(200, { ...base, 'content-length': SIZE });
      else res.writeHead(206, { ...base, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${SIZE}` });
      if (m === null) return void res.end(BODY);
      // The segment in pieces, a few ms apart: it is still arriving when its turn comes.
      for (let at = start; at <= end; at += PIECE) {
        res.write(BODY.subarray(at, Math.min(end + 1, at + PIECE)));
        await new Promise((r) => setTimeout(r, 2));
      }
      res.end();
    }),
  );
  return o.url;
}

/**
 * GET over a raw socket that reads nothing for `firstMs` (long enough for the socket buffers to fill and the proxy to
 * wait for drain), then reads and stalls by turns (`stallMs` each) until the end: the bytes after the head.
 */
function stalledGet(port: number, path: string, firstMs: number, stallMs: number): Promise<{ head: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`));
    const parts: Buffer[] = [];
    s.pause();
    let toggle: NodeJS.Timeout | undefined;
    const first = setTimeout(() => {
      s.resume();
      toggle = setInterval(() => (s.isPaused() ? s.resume() : s.pause()), stallMs);
    }, firstMs);
    s.on('close', () => {
      clearTimeout(first);
      clearInterval(toggle);
    });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', reject);
    s.on('close', () => {
      const all = Buffer.concat(parts);
      const at = all.indexOf('\r\n\r\n');
      resolve({ head: all.subarray(0, at).toString('latin1'), body: all.subarray(at + 4) });
    });
  });
}

describe('sliced delivery of segments still arriving', () => {
  it('a client that stalls by turns: every byte of every segment arrives, in order (none lost to a segment finishing during a wait)', async () => {
    const originUrl = await slowOrigin();
    const px = track(await startProxy(originUrl, { slice: { sizeBytes: SEG, minBytes: 0, readAhead: 0 } }));
    const r = await stalledGet(px.port, '/obj', 1500, 150);
    expect(r.head).toMatch(/^HTTP\/1\.1 200/);
    expect(r.head).toMatch(/content-length: 25165824/i);
    expect(r.body.length).toBe(SIZE);
    expect(r.body.equals(BODY)).toBe(true);
  });
});
