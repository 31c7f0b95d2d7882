import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { compose, restartOnly } from './compose.js';
import { toConfig } from './config.js';

const base = { backend: ['http://127.0.0.1:9'] };

/** Writes `bytes` on one raw connection and resolves everything read until the proxy closes it. */
function exchange(port: number, bytes: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(got)));
  });
}

describe('--[no-]direct-writes (directWrites in a config file)', () => {
  it('is on by default; the flag, then the file, turn it off; a non-boolean in the file is refused with one line; a reload cannot change it', () => {
    expect(toConfig(base).directWrites).toBe(true);
    expect(toConfig({ ...base, 'direct-writes': false }).directWrites).toBe(false);
    expect(toConfig(base, { directWrites: false }).directWrites).toBe(false);
    expect(toConfig({ ...base, 'direct-writes': true }, { directWrites: false }).directWrites).toBe(true);
    expect(() => toConfig(base, { directWrites: 'no' as unknown as boolean })).toThrow(/^config: directWrites must be true or false, not "no"$/);
    expect(restartOnly(toConfig(base), toConfig({ ...base, 'direct-writes': false }))).toEqual(['direct-writes']);
  });

  for (const direct of [true, false]) {
    it(`reaches the proxy's server (${direct ? 'on' : 'off'}): pipelined hits of 1 KiB and 200 KiB arrive whole and in order`, async ({ onTestFinished }) => {
      const small = Buffer.alloc(1024, 0x61);
      const big = Buffer.from(Array.from({ length: 200 * 1024 }, (_, i) => (i * 31) & 0xff));
      const origin = await startScriptedOrigin((req, res) => {
        const body = req.url === '/big' ? big : small;
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.length) });
        res.end(body);
      });
      onTestFinished(() => origin.close());
      const px = compose(toConfig({ backend: [origin.url], quiet: true, 'direct-writes': direct }));
      onTestFinished(() => px.close());
      expect(px.proxy.server.directWrites).toBe(direct);
      const { port } = await px.proxy.listen(0, '127.0.0.1');
      const get = (p: string, last = false): string => `GET ${p} HTTP/1.1\r\nHost: x\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
      // Misses first (stored), then hits pipelined on one connection.
      await exchange(port, get('/small') + get('/big', true));
      const out = await exchange(port, get('/small') + get('/big') + get('/small') + get('/big', true));
      const bodies: Buffer[] = [];
      let at = 0;
      while (at < out.length) {
        const headEnd = out.indexOf('\r\n\r\n', at);
        const head = out.subarray(at, headEnd).toString('latin1');
        expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
        expect(head).toMatch(/\r\ncache-status: [^\r]*hit/i);
        const len = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1]);
        bodies.push(out.subarray(headEnd + 4, headEnd + 4 + len));
        at = headEnd + 4 + len;
      }
      expect(bodies.map((b) => b.length)).toEqual([1024, big.length, 1024, big.length]);
      expect(bodies[1]?.equals(big) && bodies[3]?.equals(big) && bodies[0]?.equals(small)).toBe(true);
    });
  }
});
