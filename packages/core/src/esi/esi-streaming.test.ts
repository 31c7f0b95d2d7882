import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import type { ProxyHooks } from '../policy/hooks.js';
import { MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import { parseRawResponse, rawExchange, rawGet, settlesWithin, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/** ESI while bytes are still arriving: order, streaming, clients leaving, and the transaction log. */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const esiHooks: ProxyHooks = {
  upstreamResponseFilter(beresp) {
    if (beresp.headers['x-esi'] !== undefined) beresp.doEsi = true;
    return undefined;
  },
};

describe('ESI streaming', () => {
  it('sends the template bytes before an include before the include is fetched, and includes in order', async () => {
    const fragGate = deferred();
    const tailGate = deferred();
    const order: string[] = [];
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        order.push(req.url ?? '');
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1' });
          res.write('<html>before;<esi:include src="/slow"/>');
          await tailGate.promise;
          res.end('middle;<esi:include src="/fast"/>;after</html>');
          return;
        }
        if (req.url === '/slow') await fragGate.promise;
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end(req.url === '/slow' ? 'SLOW' : 'FAST');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks }));
    let sawBefore = false;
    const raw = rawExchange(px.port, 'GET /page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (all) => {
      const text = all.toString('latin1');
      if (!sawBefore && text.includes('before;')) {
        sawBefore = true;
        // The include is still unresolved (its origin waits on the gate) and the template's tail not sent yet.
        expect(text.includes('SLOW')).toBe(false);
        fragGate.resolve();
        tailGate.resolve();
      }
    });
    expect(await settlesWithin(raw, 10_000)).toBe(true);
    const res = parseRawResponse(await raw);
    expect(res.body.toString()).toBe('<html>before;SLOWmiddle;FAST;after</html>');
    expect(res.terminated).toBe(true);
    expect(order).toEqual(['/page', '/slow', '/fast']);
  });

  it('reads one include ahead: the next include is fetched while the current one is still arriving', async () => {
    const aGate = deferred();
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1' });
          res.end('<p><esi:include src="/a"/>|<esi:include src="/b"/>|<esi:include src="/c"/></p>');
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        // /a ends only once /b was asked for: without read-ahead this never happens.
        if (req.url === '/a') await aGate.promise;
        if (req.url === '/b') aGate.resolve();
        res.end(req.url?.slice(1));
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks }));
    const res = rawGet(px.port, '/page');
    expect(await settlesWithin(res, 10_000)).toBe(true);
    expect((await res).body.toString()).toBe('<p>a|b|c</p>');
    // /a and /b are asked for together (on two origin connections, in either order); /c once /a was delivered.
    expect(origin.requests.map((r) => r.url).slice(1, 3).sort()).toEqual(['/a', '/b']);
    expect(origin.requests.map((r) => r.url)[3]).toBe('/c');
  });

  it('two clients on one template still arriving share its fetch, its program and its includes', async () => {
    const tailGate = deferred();
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1' });
          res.write('<p>head;');
          await tailGate.promise;
          res.end('<esi:include src="/f"/>;tail</p>');
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('F');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks }));
    const seen = [false, false];
    const clients = [0, 1].map((k) =>
      rawExchange(px.port, 'GET /page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (all) => {
        if (all.includes('head;')) seen[k] = true;
        if (seen[0] && seen[1]) tailGate.resolve();
      }),
    );
    const bodies = (await Promise.all(clients)).map((raw) => parseRawResponse(raw).body.toString());
    expect(bodies).toEqual(['<p>head;F;tail</p>', '<p>head;F;tail</p>']);
    expect(origin.requests.map((r) => r.url)).toEqual(['/page', '/f']);
  });

  it('a client leaving mid-ESI: the page is abandoned, the fragment fetch still fills the cache, the proxy goes on', async () => {
    const fragGate = deferred();
    const origin = track(
      await startScriptedOrigin(async (req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1' });
          res.end('<p>start;<esi:include src="/frag"/>;end</p>');
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.write('frag-a;');
        await fragGate.promise;
        res.end('frag-b');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks }));
    await new Promise<void>((resolve) => {
      const sock = net.connect(px.port, '127.0.0.1');
      let seen = '';
      sock.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        if (seen.includes('frag-a;')) {
          sock.destroy();
          resolve();
        }
      });
      sock.on('error', () => undefined);
      sock.write('GET /page HTTP/1.1\r\nHost: test.local\r\n\r\n');
    });
    fragGate.resolve();
    await until(() => px.proxy.store.objectCount === 2 && origin.count === 2);
    const again = await rawGet(px.port, '/page');
    expect(again.body.toString()).toBe('<p>start;frag-a;frag-b;end</p>');
    expect(again.headers['cache-status']).toMatch(/; hit/);
    expect(origin.count).toBe(2);
    expect(uncaught).toEqual([]);
  });

  it('a template whose origin body breaks off mid-way: the client is cut off, never a clean end', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1', 'content-length': '1000' });
          res.write('<p>start;<esi:include src="/f"/>;');
          setImmediate(() => res.destroy());
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('F');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks }));
    const res = await rawGet(px.port, '/page');
    expect(res.status).toBe(200);
    expect(res.terminated).toBe(false);
    expect(px.proxy.store.objectCount).toBeLessThanOrEqual(1);
  });

  it('a pass template (uncacheable) streams through its transit buffer with includes', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'no-store', 'x-esi': '1' });
          res.end(`<p>${'a'.repeat(200_000)}<esi:include src="/f"/>${'b'.repeat(200_000)}</p>`);
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('F');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks, transitBytes: 16 * 1024 }));
    const res = await rawGet(px.port, '/page');
    expect(res.body.toString()).toBe(`<p>${'a'.repeat(200_000)}F${'b'.repeat(200_000)}</p>`);
  });
});

describe('ESI and the transit buffer', () => {
  // Regression: an unstored template's fetch waits for its reader (the page delivery) to take what it holds, and that
  // reader only took bytes op by op; a skipped stretch longer than the transit buffer (esi:remove content, a long
  // comment element) left it waiting for an op the parser could only make after the fetch went on: a hang.
  it('a pass template whose skipped stretch is longer than the transit buffer still completes', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/page') {
          res.writeHead(200, { 'cache-control': 'no-store', 'x-esi': '1' });
          res.end(`<p>a<esi:remove>${'r'.repeat(300_000)}</esi:remove>b<esi:include src="/f"/>c<esi:comment text="${'c'.repeat(12_000)}"/>d</p>`);
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('F');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks, transitBytes: 4096 }));
    const res = rawGet(px.port, '/page');
    expect(await settlesWithin(res, 10_000)).toBe(true);
    expect((await res).body.toString()).toBe('<p>abFcd</p>');
  });
});

describe('ESI in the transaction log', () => {
  const value = (t: Transaction, tag: string): string | undefined => t.records.find((r) => r.tag === tag)?.value;
  const values = (t: Transaction, tag: string): string[] => t.records.filter((r) => r.tag === tag).map((r) => r.value);

  it('each include is its own transaction, Begin req <parent> esi, linked from its parent, with its own fetch', async () => {
    const sink = new MemorySink();
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', ...(req.url === '/page' ? { 'x-esi': '1' } : {}) });
        res.end(req.url === '/page' ? '<p><esi:include src="/frag"/><esi:bogus/></p>' : 'frag!');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks, txlog: new TxLog([sink]) }));
    await rawGet(px.port, '/page');
    await until(() => sink.groups.length === 1);
    const root = sink.groups[0] as Transaction;
    const [bereq, esi] = root.children as [Transaction, Transaction];
    expect(value(root, 'Begin')).toMatch(/^req \d+ rxreq$/);
    expect(values(root, 'Link')).toEqual([`bereq ${bereq.vxid} fetch`, `req ${esi.vxid} esi`]);
    expect(value(bereq, 'ESI_xmlerror')).toBe('ERR: after 29 ESI 1.0 <esi:bogus> element');
    expect(value(esi, 'Begin')).toBe(`req ${root.vxid} esi`);
    expect(value(esi, 'ReqURL')).toBe('/frag');
    expect(values(esi, 'VCL_call')).toContain('MISS');
    expect(value(esi, 'RespStatus')).toBe('200');
    expect(value(esi, 'ReqAcct')).toBe('0 0 0 0 5 5');
    expect(value(esi.children[0] as Transaction, 'Begin')).toBe(`bereq ${esi.vxid} fetch`);

    // A hit on the page: the include is a hit of its own, no fetch.
    await rawGet(px.port, '/page');
    await until(() => sink.groups.length === 2);
    const hit = sink.groups[1] as Transaction;
    expect(hit.children.map((c) => c.type)).toEqual(['Request']);
    expect(value(hit.children[0] as Transaction, 'Hit')).toBeDefined();
  });

  it('the depth cap is logged as Varnish logs it (VCL_Error)', async () => {
    const sink = new MemorySink();
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'x-esi': '1' });
        res.end('<x><esi:include src="/self"/></x>');
      }),
    );
    const px = track(await startProxy(origin.url, { hooks: esiHooks, txlog: new TxLog([sink]), esi: { maxDepth: 2 } }));
    await rawGet(px.port, '/self');
    await until(() => sink.groups.length === 1);
    let t = sink.groups[0] as Transaction;
    const levels: string[] = [];
    for (;;) {
      const child = t.children.find((c) => c.type === 'Request');
      if (child === undefined) break;
      levels.push(value(child, 'Begin') as string);
      t = child;
    }
    expect(levels).toHaveLength(2);
    expect(value(t, 'VCL_Error')).toBe('ESI depth limit reached (param max_esi_depth = 2)');
  });
});
