import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { deferred, type OriginHandler } from '@sluice/fixtures';
import { snippetText, startIdiom, type Idiom } from './test-support/vcl-idiom.js';

/** docs/vcl.md idioms 11-20, each docs/vcl/ file run against real origins (1-10: vcl-doc.test.ts). */
let running: Idiom | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});
const start = async (file: string, handlers: Record<string, OriginHandler>): Promise<Idiom> => (running = await startIdiom(file, handlers));

const answer =
  (body: string, status = 200, headers: Record<string, string> = { 'cache-control': 'max-age=60' }): OriginHandler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

describe('docs/vcl.md idioms 11-20', () => {
  it('11 hide backend headers: Server and X-Powered-By never reach the client, other headers do', async () => {
    const x = await start('11-hide-backend-headers.ts', { default: answer('x', 200, { 'cache-control': 'max-age=60', server: 'Apache/2.4', 'x-powered-by': 'PHP/8', 'x-kept': '1' }) });
    for (let i = 0; i < 2; i++) {
      const r = await x.get('/');
      expect([r.headers['server'], r.headers['x-powered-by'], r.headers['x-kept']]).toEqual([undefined, undefined, '1']);
    }
  });

  it('12 restart on 404: a missing image is answered with the placeholder, itself cached', async () => {
    const x = await start('12-restart-404-fallback.ts', {
      default: (req, res) => {
        const found = req.url === '/images/placeholder.png';
        res.writeHead(found ? 200 : 404, { 'cache-control': 'max-age=60' });
        res.end(found ? 'PLACEHOLDER' : 'not found');
      },
    });
    const a = await x.get('/images/missing.png');
    const b = await x.get('/images/other.png');
    expect([a.status, a.body, b.status, b.body]).toEqual([200, 'PLACEHOLDER', 200, 'PLACEHOLDER']);
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(x.origins['default']?.requests.map((r) => r.url)).toEqual(['/images/missing.png', '/images/placeholder.png', '/images/other.png']);
    expect(x.proxy.stats.s_restart).toBe(2);
    // A 404 elsewhere is delivered as it is.
    expect((await x.get('/nothing')).status).toBe(404);
  });

  it('13 restart on 503 to the fallback backend, for an error answer and for a failed fetch', async () => {
    const x = await start('13-restart-503-fallback-backend.ts', {
      primary: (req, res) => {
        if (req.url === '/gone') {
          req.socket.destroy();
          return;
        }
        res.writeHead(503, { 'cache-control': 'no-store' });
        res.end('primary down');
      },
      fallback: answer('from fallback'),
    });
    expect(await x.get('/page')).toMatchObject({ status: 200, body: 'from fallback' });
    expect(await x.get('/gone')).toMatchObject({ status: 200, body: 'from fallback' });
    expect(x.origins['fallback']?.requests.map((r) => r.url)).toEqual(['/page', '/gone']);
    expect(x.origins['primary']?.requests.filter((r) => r.url === '/page')).toHaveLength(1);
  });

  it('14 backend by Host: api.* goes to the api backend, the rest to www', async () => {
    const x = await start('14-backend-by-host.ts', { www: answer('www'), api: answer('api') });
    const bodies = [];
    for (const host of ['www.example', 'api.example', 'shop.example', 'api.example']) bodies.push((await x.get(`/${host}`, { host })).body);
    expect(bodies).toEqual(['www', 'api', 'www', 'api']);
  });

  it('15 PURGE from the ACL removes the object; the next request fetches it again', async () => {
    const x = await start('15-purge-acl.ts', { default: answer('v') });
    await x.get('/x');
    await x.get('/x');
    const purge = await request(`${x.url}/x`, { method: 'PURGE', headers: { host: 'www.example' } });
    expect([purge.statusCode, await purge.body.text()]).toEqual([200, 'Purged 1\n']);
    await x.get('/x');
    expect(x.origins['default']?.count).toBe(2);
  });

  it('16 a ban on URL and Host: only the matching objects are fetched again', async () => {
    const expr = /^sluice ban '([^']+)'$/m.exec(snippetText('16-ban-lurker.sh'))?.[1];
    expect(expr).toBe('req.url ~ ^/products/ && req.http.host == shop.example');
    const x = await start('15-purge-acl.ts', { default: answer('v') });
    const all = [['/products/1', 'shop.example'], ['/products/2', 'shop.example'], ['/about', 'shop.example'], ['/products/1', 'other.example']] as const;
    for (const [p, host] of all) await x.get(p, { host });
    x.proxy.ban(expr as string);
    for (const [p, host] of all) await x.get(p, { host });
    expect(x.origins['default']?.requests.map((r) => `${String(r.headers.host)}${r.url}`).slice(4)).toEqual(['shop.example/products/1', 'shop.example/products/2']);
  });

  it('17 hit-for-pass: a personalised answer makes the URL pass, no waiting and no stored copy', async () => {
    const x = await start('17-hit-for-pass.ts', { default: answer('me', 200, { 'cache-control': 'max-age=60', 'set-cookie': 'sid=1' }) });
    await x.get('/me');
    const second = await x.get('/me');
    expect(second.headers['cache-status']).toMatch(/detail=hit-for-pass/);
    expect(x.proxy.stats.cache_hitpass).toBe(1);
    expect(x.origins['default']?.count).toBe(2);
  });

  it('18 do_stream off for /reports/: fetched whole (Content-Length), while other paths stream (chunked)', async () => {
    const release = deferred();
    const x = await start('18-do-stream-off.ts', {
      default: async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.write('part one;');
        await release.promise;
        res.end('part two');
      },
    });
    // Streaming: the head arrives while the origin still holds the rest of the body.
    const other = await request(`${x.url}/other`, { headers: { host: 'www.example' } });
    expect(other.headers['transfer-encoding']).toBe('chunked');
    release.resolve();
    expect(await other.body.text()).toBe('part one;part two');
    const report = await x.get('/reports/q3');
    expect(report.body).toBe('part one;part two');
    expect([report.headers['content-length'], report.headers['transfer-encoding']]).toEqual(['17', undefined]);
  });

  it('19 retry on 5xx, then a maintenance page when the origin cannot be reached', async () => {
    let flaky = 0;
    const x = await start('19-retry-and-maintenance-page.ts', {
      default: (req, res) => {
        if (req.url === '/down') {
          req.socket.destroy();
          return;
        }
        const ok = req.url === '/flaky' && ++flaky === 2;
        res.writeHead(ok ? 200 : 503, { 'cache-control': ok ? 'max-age=60' : 'no-store' });
        res.end(ok ? 'ok' : 'busy');
      },
    });
    expect(await x.get('/flaky')).toMatchObject({ status: 200, body: 'ok' });
    const always = await x.get('/always');
    expect(always.status).toBe(503);
    expect(x.origins['default']?.requests.filter((r) => r.url === '/always')).toHaveLength(3);
    const down = await x.get('/down');
    expect([down.status, down.body, down.headers['retry-after'], down.headers['content-type']]).toEqual([503, '<h1>Back soon</h1>\n', '60', 'text/html; charset=utf-8']);
    expect(x.proxy.stats.s_retry).toBe(1 + 2 + 1);
  });

  it('20 ESI: an HTML page has its include fetched through the policy and cached on its own; other types are left as they are', async () => {
    const x = await start('20-esi.ts', {
      default: (req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/html; charset=utf-8' });
          res.end('<p>head</p><esi:include src="/fragment"/><p>foot</p>');
        } else if (req.url === '/fragment') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/html' });
          res.end('<b>frag</b>');
        } else {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
          res.end('<esi:include src="/fragment"/>');
        }
      },
    });
    const a = await x.get('/page');
    const b = await x.get('/page');
    expect([a.body, b.body]).toEqual(['<p>head</p><b>frag</b><p>foot</p>', '<p>head</p><b>frag</b><p>foot</p>']);
    expect(b.headers['transfer-encoding']).toBe('chunked');
    expect((await x.get('/plain.txt')).body).toBe('<esi:include src="/fragment"/>');
    // One origin fetch each for the page and its fragment: the second page view is a hit, and so is its include.
    expect(x.origins['default']?.requests.map((r) => r.url)).toEqual(['/page', '/fragment', '/plain.txt']);
    expect(x.proxy.stats.esi_req).toBe(2);
  });
});
