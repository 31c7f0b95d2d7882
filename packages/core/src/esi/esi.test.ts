import type http from 'node:http';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import type { ProxyHooks } from '../policy/hooks.js';
import { rawGet, startProxy, useCleanup, type ProxyHarness } from '../test-support/harness.js';
import type { ProxyOptions } from '../proxy/proxy.js';

/**
 * ESI end to end: a real origin serving templates and fragments, a real proxy, raw sockets. Templates are marked as
 * Varnish sites do: the origin sends `Surrogate-Control: content="ESI/1.0"` and the policy sets doEsi.
 */
const track = useCleanup();

/** The classic vcl_backend_response ESI idiom. */
const esiHooks: ProxyHooks = {
  upstreamResponseFilter(beresp) {
    if (/ESI\/1\.0/.test(String(beresp.headers['surrogate-control'] ?? ''))) {
      delete beresp.headers['surrogate-control'];
      beresp.doEsi = true;
    }
    return undefined;
  },
};

interface Page {
  status?: number;
  body: string;
  esi?: boolean;
  headers?: Record<string, string>;
}

/** An origin serving `pages` by path (404 otherwise); `hits(path)` counts its requests for a path. */
async function siteOrigin(pages: Record<string, Page | ((req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>)>): Promise<ScriptedOrigin & { hits(path: string): number }> {
  const origin = track(
    await startScriptedOrigin(async (req, res) => {
      const page = pages[req.url ?? ''];
      if (typeof page === 'function') return page(req, res);
      if (page === undefined) {
        res.writeHead(404, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
        res.end(`no ${req.url}`);
        return;
      }
      res.writeHead(page.status ?? 200, {
        'cache-control': 'max-age=60',
        'content-type': 'text/html',
        ...(page.esi === true ? { 'surrogate-control': 'content="ESI/1.0"' } : {}),
        ...page.headers,
      });
      res.end(page.body);
    }),
  );
  return Object.assign(origin, { hits: (path: string) => origin.requests.filter((r) => r.url === path).length });
}

async function proxyFor(origin: ScriptedOrigin, opts: Omit<ProxyOptions<Record<string, unknown>>, 'upstream'> = {}): Promise<ProxyHarness> {
  return track(await startProxy(origin.url, { hooks: esiHooks, ...opts }));
}

describe('ESI includes', () => {
  it('assembles a template from its fragments, each fetched once and then a hit of its own', async () => {
    const origin = await siteOrigin({
      '/page': { esi: true, body: '<html><esi:include src="/header"/><main>body</main><esi:include src="/footer"/></html>', headers: { etag: '"v1"' } },
      '/header': { body: '<h1>head</h1>' },
      '/footer': { body: '<footer>foot</footer>' },
    });
    const px = await proxyFor(origin);
    const first = await rawGet(px.port, '/page');
    expect(first.status).toBe(200);
    expect(first.body.toString()).toBe('<html><h1>head</h1><main>body</main><footer>foot</footer></html>');
    // No Content-Length for the assembled page, chunked and properly ended; the strong ETag weakened.
    expect(first.headers['content-length']).toBeUndefined();
    expect(first.chunked).toBe(true);
    expect(first.terminated).toBe(true);
    expect(first.headers['etag']).toBe('W/"v1"');
    expect(first.headers['surrogate-control']).toBeUndefined();
    const s = px.proxy.stats;
    expect({ client_req: s.client_req, esi_req: s.esi_req, cache_miss: s.cache_miss, cache_hit: s.cache_hit }).toEqual({ client_req: 1, esi_req: 2, cache_miss: 3, cache_hit: 0 });

    const second = await rawGet(px.port, '/page');
    expect(second.body.toString()).toBe(first.body.toString());
    expect(second.headers['cache-status']).toMatch(/^sluice; hit/);
    expect({ client_req: s.client_req, esi_req: s.esi_req, cache_miss: s.cache_miss, cache_hit: s.cache_hit }).toEqual({ client_req: 2, esi_req: 4, cache_miss: 3, cache_hit: 3 });
    expect([origin.hits('/page'), origin.hits('/header'), origin.hits('/footer')]).toEqual([1, 1, 1]);
  });

  it('an include is a request of its own: uncacheable fragments are fetched every time, the template stays cached', async () => {
    let n = 0;
    const origin = await siteOrigin({
      '/page': { esi: true, body: '<p>[<esi:include src="/user"/>]</p>' },
      '/user': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'private' });
        res.end(`user-${++n}`);
      },
    });
    const px = await proxyFor(origin);
    expect((await rawGet(px.port, '/page')).body.toString()).toBe('<p>[user-1]</p>');
    expect((await rawGet(px.port, '/page')).body.toString()).toBe('<p>[user-2]</p>');
    expect([origin.hits('/page'), origin.hits('/user')]).toEqual([1, 2]);
  });

  it('sends the include the parent request headers without conditionals, Range or Accept-Encoding, and with esiLevel set', async () => {
    const levels: Array<number | undefined> = [];
    const origin = await siteOrigin({
      '/page': { esi: true, body: '<p><esi:include src="/frag"/></p>' },
      '/frag': { body: 'frag' },
    });
    const px = await proxyFor(origin, {
      hooks: {
        ...esiHooks,
        requestFilter(req) {
          levels.push(req.esiLevel);
          return undefined;
        },
      },
    });
    const res = await rawGet(px.port, '/page', { 'x-user': 'ann', range: 'bytes=0-2', 'if-none-match': '"zz"', 'accept-encoding': 'gzip' });
    // Range and conditionals on an ESI page are ignored: the whole page.
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('<p>frag</p>');
    const frag = origin.requests.find((r) => r.url === '/frag');
    expect(frag?.headers['x-user']).toBe('ann');
    expect(frag?.headers['host']).toBe('test.local');
    expect(frag?.headers['range']).toBeUndefined();
    expect(frag?.headers['if-none-match']).toBeUndefined();
    expect(frag?.headers['accept-encoding']).toBeUndefined();
    expect(levels).toEqual([undefined, 1]);
  });

  it('nests templates, resolving relative src against the including URL, and an http:// src sets the Host', async () => {
    const hosts: Array<string | undefined> = [];
    const origin = await siteOrigin({
      '/a/page': { esi: true, body: '<a>[<esi:include src="inner"/>]</a>' },
      '/a/inner': { esi: true, body: '<b>(<esi:include src="../leaf?x=1&amp;y=2"/>)(<esi:include src="http://other.example/c"/>)</b>' },
      '/a/../leaf?x=1&y=2': { body: 'leaf' },
      '/c': (req, res) => {
        hosts.push(req.headers.host);
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('c');
      },
    });
    const px = await proxyFor(origin);
    const res = await rawGet(px.port, '/a/page');
    expect(res.body.toString()).toBe('<a>[<b>(leaf)(c)</b>]</a>');
    expect(hosts).toEqual(['other.example']);
    expect(px.proxy.stats.esi_req).toBe(3);
  });

  it('caps nesting at maxDepth: a template including itself stops after 5 levels (Varnish max_esi_depth)', async () => {
    const origin = await siteOrigin({ '/self': { esi: true, body: '<x><esi:include src="/self"/></x>' } });
    const px = await proxyFor(origin);
    const res = await rawGet(px.port, '/self');
    expect(res.status).toBe(200);
    expect(res.terminated).toBe(true);
    expect(res.body.toString()).toBe(`${'<x>'.repeat(6)}${'</x>'.repeat(6)}`);
    expect(px.proxy.stats.esi_req).toBe(5);
    expect(origin.hits('/self')).toBe(1);

    const px2 = await proxyFor(origin, { esi: { maxDepth: 1 } });
    expect((await rawGet(px2.port, '/self')).body.toString()).toBe('<x><x></x></x>');
  });

  it('a template without ESI markup, once cached, is delivered as a plain object (Content-Length), as Varnish does', async () => {
    const origin = await siteOrigin({ '/plain': { esi: true, body: '<p>nothing to include</p>' } });
    const px = await proxyFor(origin);
    await rawGet(px.port, '/plain');
    const hit = await rawGet(px.port, '/plain');
    expect(hit.headers['content-length']).toBe('25');
    expect(hit.body.toString()).toBe('<p>nothing to include</p>');
  });

  it('HEAD on a template: the head without a body or Content-Length', async () => {
    const origin = await siteOrigin({ '/page': { esi: true, body: '<p><esi:include src="/f"/></p>' }, '/f': { body: 'f' } });
    const px = await proxyFor(origin);
    await rawGet(px.port, '/page');
    const head = await rawGet(px.port, '/page', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBeUndefined();
    expect(head.body.length).toBe(0);
  });

  it('a gzipped template is stored and parsed decompressed; a gzipped include goes in decompressed; other codings are not processed', async () => {
    const gz = (text: string): http.RequestListener => (_req, res) => {
      const body = gzipSync(Buffer.from(text));
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-encoding': 'gzip', 'content-length': String(body.length), 'surrogate-control': 'content="ESI/1.0"' });
      res.end(body);
    };
    const origin = await siteOrigin({
      '/gz': gz(`<p>${'x'.repeat(5000)}<esi:include src="/gzfrag"/>|<esi:include src="/f"/></p>`),
      '/gzfrag': (_req, res) => {
        const body = gzipSync(Buffer.from('zipped-fragment'));
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-encoding': 'gzip' });
        res.end(body);
      },
      '/f': { body: 'plain' },
      '/br': { esi: true, body: '<p><esi:include src="/f"/></p>', headers: { 'content-encoding': 'br' } },
    });
    const px = await proxyFor(origin);
    for (let i = 0; i < 2; i++) {
      const res = await rawGet(px.port, '/gz', { 'accept-encoding': 'gzip' });
      expect(res.terminated).toBe(true);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.toString()).toBe(`<p>${'x'.repeat(5000)}zipped-fragment|plain</p>`);
    }
    expect(origin.hits('/gz')).toBe(1);
    const br = await rawGet(px.port, '/br');
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.body.toString()).toBe('<p><esi:include src="/f"/></p>');
    expect(px.proxy.stats.esi_req).toBe(4);
  });

  it('a corrupt gzipped template cuts the client off and is not kept', async () => {
    const origin = await siteOrigin({
      '/bad': (_req, res) => {
        const body = gzipSync(Buffer.from('<p>hello, <esi:include src="/f"/> world</p>'));
        // Break the CRC-32 in the gzip trailer: the data inflates, the check at the end fails.
        body.writeUInt8(body.readUInt8(body.length - 6) ^ 0xff, body.length - 6);
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-encoding': 'gzip', 'surrogate-control': 'content="ESI/1.0"' });
        res.end(body);
      },
      '/f': { body: 'F' },
    });
    const px = await proxyFor(origin);
    for (let i = 1; i <= 2; i++) {
      const res = await rawGet(px.port, '/bad');
      expect(res.terminated).toBe(false);
      expect(origin.hits('/bad')).toBe(i);
    }
  });
});

describe('ESI include errors', () => {
  const pages = {
    '/page': { esi: true, body: '<p>a<esi:include src="/missing"/>b<esi:include src="/broken" onerror="continue"/>c</p>' },
    '/broken': (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.destroy();
    },
  };

  it('by default an include is delivered whatever its status: a 404 body, a failed fetch its synth (Varnish)', async () => {
    const origin = await siteOrigin(pages);
    const px = await proxyFor(origin);
    const res = await rawGet(px.port, '/page');
    expect(res.status).toBe(200);
    expect(res.terminated).toBe(true);
    expect(res.body.toString()).toBe('<p>ano /missingbBackend fetch failed\nc</p>');
  });

  it('with includeOnError, failed includes are left out when onerror="continue", and cut the page otherwise', async () => {
    const origin = await siteOrigin({
      ...pages,
      '/page2': { esi: true, body: '<p>a<esi:include src="/broken" onerror="continue"/>b</p>' },
    });
    const px = await proxyFor(origin, { esi: { includeOnError: true } });
    expect((await rawGet(px.port, '/page2')).body.toString()).toBe('<p>ab</p>');
    const cut = await rawGet(px.port, '/page');
    expect(cut.status).toBe(200);
    expect(cut.body.toString()).toBe('<p>a');
    expect(cut.terminated).toBe(false);
    // The proxy goes on serving.
    expect((await rawGet(px.port, '/page2')).body.toString()).toBe('<p>ab</p>');
  });

  it('an include whose body breaks off mid-way ends there and the page goes on; the broken include is not kept', async () => {
    const origin = await siteOrigin({
      '/page': { esi: true, body: '<p>a<esi:include src="/cut"/>b</p>' },
      '/cut': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '100' });
        // Fewer bytes than announced, then a clean FIN: the body is short.
        res.write('partial', () => res.socket?.end());
      },
    });
    const px = await proxyFor(origin);
    for (let i = 1; i <= 2; i++) {
      const res = await rawGet(px.port, '/page');
      expect(res.terminated).toBe(true);
      expect(res.body.toString()).toBe('<p>apartialb</p>');
      expect(origin.hits('/cut')).toBe(i);
    }
  });

  it('malformed markup never crashes: errors are counted once, at fetch, not per hit, and the page still comes', async () => {
    const origin = await siteOrigin({
      '/bad': { esi: true, body: `<p>1<esi:bogus/>2<esi:include src="/f" src="/g"/>3<esi:include src="/${'h'.repeat(40_000)}"/>4<esi:remove>x</p><esi:include src="/f"` },
      '/f': { body: 'F' },
    });
    const px = await proxyFor(origin);
    for (let i = 0; i < 3; i++) {
      const res = await rawGet(px.port, '/bad');
      expect(res.status).toBe(200);
      expect(res.terminated).toBe(true);
      expect(res.body.toString()).toBe('<p>1234');
    }
    // bogus, two src, too long, ended inside a tag: 4 errors, parsed once.
    expect(px.proxy.stats.esi_errors).toBe(4);
    expect(origin.hits('/bad')).toBe(1);
  });
});
