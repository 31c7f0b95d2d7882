import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { compose } from './compose.js';
import { toConfig } from './config.js';

const base = { backend: ['http://127.0.0.1:9'] };

/** Writes `bytes` on one raw connection and resolves everything read until the proxy closes it. */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

describe('--[no-]shared-read-buffer (sharedReadBuffer in a config file)', () => {
  it('is on by default; the flag, then the file, turn it off; a non-boolean in the file is refused with one line', () => {
    expect(toConfig(base).sharedReadBuffer).toBe(true);
    expect(toConfig({ ...base, 'shared-read-buffer': false }).sharedReadBuffer).toBe(false);
    expect(toConfig(base, { sharedReadBuffer: false }).sharedReadBuffer).toBe(false);
    expect(toConfig({ ...base, 'shared-read-buffer': true }, { sharedReadBuffer: false }).sharedReadBuffer).toBe(true);
    expect(() => toConfig(base, { sharedReadBuffer: 'false' as unknown as boolean })).toThrow(/^config: sharedReadBuffer must be true or false, not "false"$/);
  });

  for (const shared of [true, false]) {
    it(`reaches the proxy's server (${shared ? 'on' : 'off'}): pipelined GETs and a POST body passed byte-exact`, async ({ onTestFinished }) => {
      const origin = await startScriptedOrigin((req, res) => {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => {
          const body = Buffer.concat(parts).toString('latin1');
          const text = `${req.method} ${req.url} ${body.length} ${body.slice(0, 16)}`;
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(text.length) });
          res.end(text);
        });
      });
      onTestFinished(() => origin.close());
      const px = compose(toConfig({ backend: [origin.url], quiet: true, 'shared-read-buffer': shared }));
      onTestFinished(() => px.close());
      expect(px.proxy.server.sharedReadBuffer).toBe(shared);
      const { port } = await px.proxy.listen(0, '127.0.0.1');
      const post = 'abcdefghijklmnopqrstuvwxyz'.repeat(4000);
      const out = await exchange(
        port,
        'GET /a HTTP/1.1\r\nHost: x\r\n\r\n' +
          `POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: ${post.length}\r\n\r\n${post}` +
          'GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      const bodies = out.split(/HTTP\/1\.1 200 OK\r\n/).slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
      expect(bodies).toEqual(['GET /a 0 ', `POST /p ${post.length} abcdefghijklmnop`, 'GET /b 0 ']);
    });
  }
});
