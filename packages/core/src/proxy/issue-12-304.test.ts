import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';
import { testClock } from '../test-support/clock.js';

/**
 * Issue 12, a 304 updates the stored headers (RFC 9111 §4.3.4, §3.2). Before the fix, with the defaults, the expired
 * object was served in grace with its old headers and the 304's never reached the client (the suite's
 * 304-etag-update-response-*); Content-MD5 on the 304 was copied over the stored body's.
 */
const track = useCleanup();

describe('issue 12: a 304 updates the stored headers', () => {
  it('every header of the 304 replaces the stored one, except framing and content metadata; the update is stored', async () => {
    const c = testClock();
    const origin = track(
      await startScriptedOrigin((req, res, n) => {
        const date = new Date(c.now()).toUTCString();
        if (n === 1) {
          res.writeHead(200, { 'cache-control': 'max-age=1', etag: '"v1"', date, 'content-type': 'text/plain', 'x-a': 'one', 'content-md5': 'old-md5', expires: 'Fri, 01 Jan 2038 01:01:01 GMT' });
          res.end('stored body');
          return;
        }
        expect(req.headers['if-none-match']).toBe('"v1"');
        res.writeHead(304, { 'cache-control': 'max-age=3600', etag: '"v1"', date, 'content-type': 'text/plain;charset=utf-8', 'x-a': 'two', 'content-md5': 'new-md5', expires: 'Mon, 11 Jan 2038 11:11:11 GMT' });
        res.end();
      }),
    );
    const px = track(await startProxy(origin.url, { now: c.now }));
    const get = async () => {
      const r = await request(`${px.url}/u`, { headers: { host: 'site.test' } });
      return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
    };
    await get();
    c.advance(5);
    for (const n of [2, 3]) {
      const r = await get();
      expect(r.status).toBe(200);
      expect(r.body).toBe('stored body');
      expect(r.headers).toMatchObject({
        'cache-control': 'max-age=3600',
        'content-type': 'text/plain;charset=utf-8',
        'x-a': 'two',
        expires: 'Mon, 11 Jan 2038 11:11:11 GMT',
        'content-md5': 'old-md5',
        etag: '"v1"',
      });
      if (n === 3) expect(String(r.headers['cache-status'])).toMatch(/^sluice; hit/);
    }
    expect(origin.count).toBe(2);
  });
});
