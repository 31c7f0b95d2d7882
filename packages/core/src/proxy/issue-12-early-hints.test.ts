import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { rawExchange, startProxy, useCleanup } from '../test-support/harness.js';

/**
 * Issue 12, interim responses (RFC 9110 §15.2): a 103 Early Hints from the origin reaches the client that caused the
 * fetch, before the final response, over real sockets; it is never stored, so a hit carries none; HTTP/1.0 clients
 * get none (they cannot parse 1xx). Before the fix the origin's 103 was dropped by the proxy.
 */
const track = useCleanup();

async function setup() {
  const origin = track(
    await startScriptedOrigin((req, res, n) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => {
        res.writeHead(200, { 'cache-control': req.url === '/pass' ? 'no-store' : 'max-age=60', 'content-type': 'text/plain' });
        res.end(`#${n}`);
      });
    }),
  );
  const px = track(await startProxy(origin.url));
  const send = async (path: string, version = '1.1', method = 'GET'): Promise<string> =>
    (await rawExchange(px.port, `${method} ${path} HTTP/${version}\r\nHost: test.local\r\nConnection: close\r\n\r\n`)).toString('latin1');
  return { origin, send };
}

describe('issue 12: 103 Early Hints', () => {
  it('a miss forwards the 103 before the final response; the hit that follows has none', async () => {
    const { origin, send } = await setup();
    const miss = await send('/a');
    expect(miss).toMatch(/^HTTP\/1\.1 103 Early Hints\r\nlink: <\/style\.css>; rel=preload; as=style\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    expect(miss).toContain('#1');
    const hit = await send('/a');
    expect(hit).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(hit).not.toMatch(/103|link:/);
    expect(hit).toContain('#1');
    expect(origin.count).toBe(1);
  });

  it('a pass forwards it too; an HTTP/1.0 client gets only the final response', async () => {
    const { send } = await setup();
    expect(await send('/pass', '1.1', 'POST')).toMatch(/^HTTP\/1\.1 103 Early Hints\r\n[^]*\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    const old = await send('/b', '1.0');
    expect(old).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(old).not.toMatch(/103/);
  });
});
