import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, rawGet, startProxy, useCleanup } from '../test-support/harness.js';

// A cold miss's body goes from the growing object straight to the client (deliver.ts sendFromObject, issue 16):
// whole, or one range of it, across many origin chunks arriving over time.
const track = useCleanup();
const SIZE = 300_000;
const BODY = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i++) BODY[i] = (i * 7 + (i >> 11)) & 0xff;
const PIECE = 40_000;

/** An origin sending BODY in PIECE-byte writes a few ms apart; with `dieAt`, it resets the connection there. */
async function piecewiseOrigin(dieAt?: number) {
  return track(
    await startScriptedOrigin(async (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(SIZE) });
      for (let off = 0; off < SIZE; off += PIECE) {
        if (dieAt !== undefined && off >= dieAt) {
          res.socket?.destroy();
          return;
        }
        res.write(BODY.subarray(off, Math.min(SIZE, off + PIECE)));
        await new Promise((r) => setTimeout(r, 3));
      }
      res.end();
    }),
  );
}

function rangeGet(port: number, path: string, range: string) {
  return rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: t\r\nRange: ${range}\r\nConnection: close\r\n\r\n`).then(parseRawResponse);
}

describe('a cold miss streamed from the growing object', () => {
  it('a range starting and ending inside origin chunks gets exactly those bytes, and the object is cached whole', async () => {
    const origin = await piecewiseOrigin();
    const px = track(await startProxy(origin.url));
    const r = await rangeGet(px.port, '/a', 'bytes=70001-190003');
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 70001-190003/${SIZE}`);
    expect(r.headers['content-length']).toBe(String(190003 - 70001 + 1));
    expect(r.body.equals(BODY.subarray(70001, 190004))).toBe(true);
    // The fetch went on to fill the cache: a hit gets the whole body, no second origin fetch.
    const whole = await request(`${px.url}/a`, { headers: { host: 't' } });
    expect(Buffer.from(await whole.body.arrayBuffer()).equals(BODY)).toBe(true);
    expect(origin.count).toBe(1);
  });

  it('a range ending at the last byte, and a range inside the first chunk, of objects still arriving', async () => {
    const origin = await piecewiseOrigin();
    const px = track(await startProxy(origin.url));
    const [tail, head] = await Promise.all([rangeGet(px.port, '/t', `bytes=${SIZE - 5000}-`), rangeGet(px.port, '/h', 'bytes=10-19')]);
    expect(tail.status).toBe(206);
    expect(tail.body.equals(BODY.subarray(SIZE - 5000))).toBe(true);
    expect(head.status).toBe(206);
    expect(head.body.equals(BODY.subarray(10, 20))).toBe(true);
  });

  it('the whole body, read by two clients at once, arrives intact for both', async () => {
    const origin = await piecewiseOrigin();
    const px = track(await startProxy(origin.url));
    const [a, b] = await Promise.all([rawGet(px.port, '/w'), rawGet(px.port, '/w')]);
    for (const r of [a, b]) {
      expect(r.status).toBe(200);
      expect(r.headers['content-length']).toBe(String(SIZE));
      expect(r.body.equals(BODY)).toBe(true);
    }
    expect(origin.count).toBe(1);
  });

  it('the origin dying inside a range: the 206 client is cut off short of its Content-Length, nothing is cached', async () => {
    const origin = await piecewiseOrigin(120_000);
    const px = track(await startProxy(origin.url));
    const r = await rangeGet(px.port, '/d', 'bytes=50000-250000');
    expect(r.status).toBe(206);
    expect(r.headers['content-length']).toBe('200001');
    expect(r.body.length).toBeLessThan(200001);
    expect(r.body.equals(BODY.subarray(50000, 50000 + r.body.length))).toBe(true);
    const again = await rawGet(px.port, '/d');
    expect(again.body.length).toBeLessThan(SIZE);
    expect(origin.count).toBe(2);
  });
});
