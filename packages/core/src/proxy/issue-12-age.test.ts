import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, useCleanup } from '../test-support/harness.js';
import type { CacheProfile } from '../http/targeted.js';

/**
 * Issue 12, the Age field (RFC 9111 §5.1) over real sockets: a list-valued Age counts by its first member. Before the
 * fix any Age but a lone integer was read as 0, so `Age: 7200,0` on a max-age=3600 response (two hours old, stale for
 * an hour) was served from cache as fresh. An invalid Age (negative, fractional, non-numeric, with parameters): the
 * rfc profile stores the response stale on arrival (its age cannot be known; every use revalidates, as the public
 * suite's age-parse-* expect), the varnish profile ignores the field as RFC 9111 §5.1's age calculation does.
 */
const track = useCleanup();

async function twice(age: string | string[], profile: CacheProfile = 'rfc'): Promise<{ originCount: number; second: string }> {
  const origin = track(
    await startScriptedOrigin((_req, res, n) => {
      res.setHeader('cache-control', 'max-age=3600');
      res.setHeader('date', new Date().toUTCString());
      res.setHeader('age', age);
      res.end(`#${n}`);
    }),
  );
  const px = track(await startProxy(origin.url, { profile }));
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

  it.each([['0,7200'], [['0', '7200']]])('Age %j on max-age=3600: the first member is 0, so it is fresh and reused', async (age) => {
    const r = await twice(age);
    expect(r.originCount).toBe(1);
    expect(r.second).toBe('#1');
  });

  it.each([['abc'], ['-7200'], ['7200.0'], ['7200;foo=bar'], ['7200;foo=111']])(
    'Age %j (invalid) on max-age=3600: stale on arrival with the rfc profile, not reused',
    async (age) => {
      const r = await twice(age);
      expect(r.originCount).toBe(2);
      expect(r.second).toBe('#2');
    },
  );

  it.each([['abc'], ['-7200'], ['7200.0'], ['7200;foo=bar']])(
    'Age %j (invalid) on max-age=3600: ignored with the varnish profile, so it is fresh and reused',
    async (age) => {
      const r = await twice(age, 'varnish');
      expect(r.originCount).toBe(1);
      expect(r.second).toBe('#1');
    },
  );
});
