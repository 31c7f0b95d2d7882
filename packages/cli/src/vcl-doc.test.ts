import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { OriginHandler } from '@sluice/fixtures';
import { REPO } from './test-support/run-cli.js';
import { snippetText, startIdiom, VCL_DIR, VCL_PAGE, type Idiom } from './test-support/vcl-idiom.js';

/**
 * docs/vcl.md (issue 14): every Sluice snippet on the page is a file under docs/vcl/, shown there verbatim, and run
 * here against a real origin (idioms 1-10; vcl-idioms.test.ts runs 11-20).
 */
let running: Idiom | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});
const start = async (file: string, handlers: Record<string, OriginHandler>): Promise<Idiom> => (running = await startIdiom(file, handlers));

/** An origin answering what it received: URL, Cookie, Accept-Encoding and X-Device, cacheable for 60 s. */
const echo: OriginHandler = (req, res) => {
  res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
  res.end(`${req.url} cookie=${req.headers.cookie ?? ''} ae=${req.headers['accept-encoding'] ?? ''} device=${String(req.headers['x-device'] ?? '')}`);
};

describe('docs/vcl.md', () => {
  it('shows every file of docs/vcl/ verbatim, once, under a snippet marker; twenty idioms, ESI last', () => {
    const page = readFileSync(VCL_PAGE, 'utf8');
    const files = readdirSync(VCL_DIR).filter((f) => /\.(ts|sh)$/.test(f)).sort();
    expect(files).toHaveLength(20);
    const shown = [...page.matchAll(/<!-- snippet: docs\/vcl\/([^ ]+) -->\n```(ts|sh)\n([\s\S]*?)```\n/g)];
    expect(shown.map((m) => m[1])).toEqual(files);
    for (const m of shown) expect(m[3], String(m[1])).toBe(snippetText(m[1] as string));
    // No Sluice code block on the page outside the checked ones.
    const blocks = [...page.matchAll(/```(ts|sh|js)\n/g)].length;
    expect(blocks).toBe(shown.length);
    const headings = [...page.matchAll(/^## (\d+)\. (.+)$/gm)];
    expect(headings.map((h) => Number(h[1]))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(headings.at(-1)?.[2]).toBe('ESI');
  });

  it('1 pass by URL: /admin and /account reach the origin every time, the rest is cached', async () => {
    const x = await start('01-pass-by-url.ts', { default: echo });
    for (const p of ['/admin/users', '/admin/users', '/account', '/page', '/page', '/administrator', '/administrator']) await x.get(p);
    const urls = x.origins['default']?.requests.map((r) => r.url);
    expect(urls).toEqual(['/admin/users', '/admin/users', '/account', '/page', '/administrator']);
  });

  it('2 pass on a session cookie: logged-in requests pass with their cookie, others are cached without it', async () => {
    const x = await start('02-pass-on-session-cookie.ts', { default: echo });
    await x.get('/p', { cookie: 'session=abc' });
    await x.get('/p', { cookie: 'theme=dark; session=abc' });
    const anon = [await x.get('/q', { cookie: 'theme=dark' }), await x.get('/q', { cookie: 'theme=light' })];
    const seen = x.origins['default']?.requests.map((r) => `${r.url} ${r.headers.cookie ?? '-'}`);
    expect(seen).toEqual(['/p session=abc', '/p theme=dark; session=abc', '/q -']);
    expect(anon[1]?.headers['cache-status']).toMatch(/^sluice; hit/);
  });

  it('3 strip cookies on static files: cached despite Cookie and Set-Cookie, no cookie forwarded or stored', async () => {
    const x = await start('03-strip-cookies-static.ts', {
      default: (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'set-cookie': 'tracking=1', 'content-type': 'text/css' });
        res.end(`css for ${String(req.headers.cookie)}`);
      },
    });
    const a = await x.get('/app.css?v=3', { cookie: 'sid=1' });
    const b = await x.get('/app.css?v=3', { cookie: 'sid=2' });
    expect([a.body, b.body]).toEqual(['css for undefined', 'css for undefined']);
    expect(b.headers['set-cookie']).toBeUndefined();
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(x.origins['default']?.count).toBe(1);
    // Not a static file: the builtin rules pass a request with a Cookie.
    await x.get('/page', { cookie: 'sid=1' });
    expect(x.origins['default']?.requests.at(-1)?.headers.cookie).toBe('sid=1');
  });

  it('4 strip analytics cookies: none left means cached; other cookies are kept (and pass)', async () => {
    const x = await start('04-strip-tracking-cookies.ts', { default: echo });
    await x.get('/t', { cookie: '_ga=GA1.2.3; _gid=GA1.4' });
    const second = await x.get('/t', { cookie: '__utma=1; _ga_ABC=2' });
    expect(second.headers['cache-status']).toMatch(/^sluice; hit/);
    await x.get('/u', { cookie: '_ga=1; sid=9; _fbp=fb.1' });
    expect(x.origins['default']?.requests.map((r) => `${r.url} ${r.headers.cookie ?? '-'}`)).toEqual(['/t -', '/u sid=9']);
  });

  it('5 normalise Accept-Encoding: one variant per encoding the origin varies on', async () => {
    const x = await start('05-normalise-accept-encoding.ts', {
      default: (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Encoding' });
        res.end(`ae=${req.headers['accept-encoding'] ?? '-'}`);
      },
    });
    const bodies = [];
    for (const ae of ['gzip, deflate', 'deflate, gzip, sdch', 'br, gzip', 'gzip;q=1.0, br', 'identity']) bodies.push((await x.get('/v', { 'accept-encoding': ae })).body);
    expect(bodies).toEqual(['ae=gzip', 'ae=gzip', 'ae=br', 'ae=br', 'ae=-']);
    expect(x.origins['default']?.count).toBe(3);
  });

  it('6 strip tracking parameters: one cached copy, the origin sees the clean URL', async () => {
    const x = await start('06-strip-tracking-params.ts', { default: echo });
    await x.get('/p?utm_source=news&id=1&utm_medium=mail');
    const b = await x.get('/p?id=1&gclid=7');
    await x.get('/p?fbclid=1');
    expect(b.headers['cache-status']).toMatch(/^sluice; hit/);
    expect(x.origins['default']?.requests.map((r) => r.url)).toEqual(['/p?id=1', '/p']);
  });

  it('7 a device class in the cache key: mobile and desktop are cached apart, and the origin is told', async () => {
    const x = await start('07-device-in-cache-key.ts', { default: echo });
    const iphone = { 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile' };
    const desk = { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)' };
    const r = [await x.get('/', iphone), await x.get('/', desk), await x.get('/', iphone), await x.get('/', desk)];
    expect(r.map((y) => y.body.split(' ').at(-1))).toEqual(['device=mobile', 'device=desktop', 'device=mobile', 'device=desktop']);
    expect(x.origins['default']?.count).toBe(2);
  });

  it('8 TTL and grace by URL, from beresp.bereq.url', async () => {
    const x = await start('08-per-url-ttl-grace.ts', { default: echo });
    const cs = async (p: string): Promise<string> => String((await x.get(p)).headers['cache-status']);
    expect(await cs('/static/app.js')).toMatch(/; ttl=86400$/);
    expect(await cs('/news/today')).toMatch(/; ttl=30$/);
    expect(await cs('/other')).toMatch(/; ttl=60$/);
    const graceOf = (p: string): number | undefined => {
      const r = x.proxy.store.lookup(`www.example${p}`, {}, Date.now());
      return r.kind === 'hit' ? r.obj.graceSec : undefined;
    };
    expect([graceOf('/static/app.js'), graceOf('/news/today')]).toEqual([3600, 600]);
  });

  it('9 cache long, browsers briefly: stored an hour, delivered with max-age=60', async () => {
    const x = await start('09-client-ttl-override.ts', {
      default: (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=5', 'content-type': 'text/html; charset=utf-8' });
        res.end('<p>hi</p>');
      },
    });
    const r = await x.get('/page');
    expect(r.headers['cache-control']).toBe('public, max-age=60');
    expect(r.headers['cache-status']).toMatch(/; ttl=3600$/);
  });

  it('10 X-Cache from obj.hits: MISS 0, HIT 1, HIT 2; UNCACHEABLE for what is not stored', async () => {
    const x = await start('10-x-cache.ts', {
      default: (req, res) => {
        res.writeHead(200, { 'cache-control': req.url === '/private' ? 'private' : 'max-age=60' });
        res.end('x');
      },
    });
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const r = await x.get('/a');
      seen.push(`${String(r.headers['x-cache'])} ${String(r.headers['x-cache-hits'])}`);
    }
    expect(seen).toEqual(['MISS 0', 'HIT 1', 'HIT 2']);
    expect((await x.get('/private')).headers['x-cache']).toBe('UNCACHEABLE');
  });

  it("the README's policy example loads and runs: backend by Host, restart to the placeholder, X-Cache, retry", async () => {
    const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
    const example = /```ts\n(\/\/ sluice\.config\.ts\n[\s\S]*?)```\n/.exec(readme)?.[1];
    expect(example).toContain("import { defineConfig, hdr } from '@sluice/cli';");
    // Beside the repository's node_modules, so that '@sluice/cli' resolves as it does for a user's config.
    const dir = mkdtempSync(path.join(REPO, 'node_modules', '.sluice-readme-'));
    try {
      const file = path.join(dir, 'sluice.config.ts');
      writeFileSync(file, example as string);
      const x = await start(file, {
        www: (req, res) => {
          const found = !req.url?.startsWith('/images/') || req.url === '/images/placeholder.png';
          res.writeHead(found ? 200 : 404, { 'cache-control': 'max-age=60' });
          res.end(`www ${req.url} ${String(req.headers['x-from-sluice'])}`);
        },
        api: echo,
      });
      const img = await x.get('/images/nope.png');
      expect([img.status, img.body, img.headers['x-cache']]).toEqual([200, 'www /images/placeholder.png 1', 'MISS']);
      expect((await x.get('/images/placeholder.png')).headers['x-cache']).toBe('HIT');
      expect((await x.get('/v1/items', { host: 'api.example' })).body).toMatch(/^\/v1\/items /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
