import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin } from '@sluice/fixtures';
import { parseRawResponse, rawExchange, startProxy, useCleanup } from '../test-support/harness.js';

/**
 * Found by the edge attack (issue 10): the complete length an origin announces in a segment's Content-Range sized
 * the slicer's work. A 100 MB object in 1 KiB segments held the event loop ~35 s (a quadratic walk over every
 * segment index); a total of 10^12 never came back. A relapse shows as these tests timing out.
 */
const track = useCleanup();

/** An origin answering every request with segment 0 of an object of `total` bytes. */
async function segmentOrigin(total: number): Promise<string> {
  const srv = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', () => {
      s.write(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1023/${total}\r\nCache-Control: max-age=60\r\nETag: "e"\r\nContent-Length: 1024\r\n\r\n`);
      s.write(Buffer.alloc(1024, 'a'));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  track({ close: () => new Promise<void>((r) => srv.close(() => r())) });
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

describe('slicer: the complete length an origin announces', () => {
  it('an object of 97,657 segments gets its head at once, and another client is served meanwhile', async () => {
    const sliced = track(await startProxy(await segmentOrigin(100_000_000), { slice: { sizeBytes: 1024 } }));
    const plain = track(await startFixtureOrigin());
    const other = track(await startProxy(plain.url));
    const sock = net.connect(sliced.port, '127.0.0.1');
    sock.on('error', () => undefined);
    track({ close: async () => void sock.destroy() });
    const head = await new Promise<string>((resolve) => {
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\naaaa')) resolve(got);
      });
      sock.write('GET /huge HTTP/1.1\r\nHost: t\r\n\r\n');
    });
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head).toMatch(/\r\ncontent-length: 100000000\r\n/);
    const ok = await request(`${other.url}/static/10`);
    expect(await ok.body.text()).toBe('abcdefghij');
  });

  it('more segments than the slicer takes (10^12 bytes in 1 KiB): 502, logged, and the process goes on', async () => {
    const lines: string[] = [];
    const sliced = track(await startProxy(await segmentOrigin(1_000_000_000_000), { slice: { sizeBytes: 1024 }, onLog: (l) => lines.push(l.event) }));
    const r = parseRawResponse(await rawExchange(sliced.port, 'GET /huge HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(502);
    expect(lines).toContain('slice-refused');
  });

  it('a Content-Range total over 15 digits is not sliceable: segment 0 is not served as the whole object', async () => {
    const sliced = track(await startProxy(await segmentOrigin(Number('1'.repeat(16))), { slice: { sizeBytes: 1024 } }));
    const r = parseRawResponse(await rawExchange(sliced.port, 'GET /huge HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    // Segment 0's own answer, as for an origin that ignores Range: never a 200 claiming 10^16 bytes.
    expect(r.status).toBe(206);
    expect(r.headers['content-length']).toBe('1024');
  });
});
