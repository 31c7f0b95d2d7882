import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';

/**
 * Issue 12, the Age field (RFC 9111 §5.1) over real sockets: a list-valued Age counts by its first member, an invalid
 * one is ignored. Before the fix any Age but a lone integer was read as 0, so `Age: 7200,0` on a max-age=3600 response
 * (two hours old, stale for an hour) was served from cache as fresh.
 */
const track = useCleanup();

async function twice(age: string | string[]): Promise<{ originCount: number; second: string }> {
  const origin = track(
    await startScriptedOrigin((_req, res, n) => {
      res.setHeader('cache-control', 'max-age=3600');
      res.setHeader('date', new Date().toUTCString());
      res.setHeader('age', age);
      res.end(`#${n}`);
    }),
  );
  const px = track(await startProxy(origin.url));
  const get = async () => (await request(`${px.url}/a`, { headers: { host: 'site.test' } })).body.text();
  await get();
  const second = await get();
  return { originCount: origin.count, second };
}

describe('issue 12: Age parsing (RFC 9111 §5.1)', () => {
  it.each([['7200,0'], ['7200, 0'], [['7200', '0']]])('Age %j on max-age=3600: stale on arrival, not reused', async (age) => {
    const r = await twice(age);
    expect(r.originCount).toBe(2);
    expect(r.second).toBe('#2');
  });

  it.each([['0,7200'], [['0', '7200']], ['abc'], ['-7200'], ['7200.0'], ['7200;foo=bar']])(
    'Age %j on max-age=3600: the first member is 0 or the field is invalid and ignored, so it is fresh and reused',
    async (age) => {
      const r = await twice(age);
      expect(r.originCount).toBe(1);
      expect(r.second).toBe('#1');
    },
  );
});
