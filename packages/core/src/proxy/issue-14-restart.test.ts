import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { formatVarnishlog, MemorySink, TxLog, type Transaction } from '../txlog/txlog.js';
import type { ProxyHooks } from '../policy/hooks.js';

/**
 * Issue 14: restarts as Varnish does them. A hook returns 'restart' (requestFilter, or responseFilter on a delivery
 * or a synth); the request walks the whole machine again with req.restarts one higher, is counted (s_restart), logged
 * as VSL_ChgId logs it (Link req N restart / Begin req <old> restart) and capped by maxRestarts (503 past it).
 */
const track = useCleanup();

const tags = (t: Transaction): string[] => t.records.map((r) => r.tag);
const value = (t: Transaction, tag: string): string | undefined => t.records.find((r) => r.tag === tag)?.value;

async function get(url: string, path: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(`${url}${path}`, { headers: { host: 't' } });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

describe('restart (issue 14)', () => {
  it('a 404 under /restart/ restarts once as /fallback: the client gets the fallback, both reach the origin', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        if (req.url === '/fallback') {
          res.writeHead(200, { 'cache-control': 'max-age=60' });
          res.end('fallback body');
          return;
        }
        res.writeHead(404, { 'cache-control': 'max-age=60' });
        res.end('not here');
      }),
    );
    const seenRestarts: number[] = [];
    const hooks: ProxyHooks = {
      requestFilter(req) {
        seenRestarts.push(req.restarts);
        return undefined;
      },
      responseFilter(resp, req) {
        if (resp.status === 404 && req.url.startsWith('/restart/') && req.restarts === 0) {
          req.url = '/fallback';
          return 'restart';
        }
        resp.headers['x-restarts'] = String(req.restarts);
        return undefined;
      },
    };
    const sink = new MemorySink();
    const px = track(await startProxy(origin.url, { hooks, txlog: new TxLog([sink]) }));
    const r = await get(px.url, '/restart/a');
    expect(r.status).toBe(200);
    expect(r.body).toBe('fallback body');
    expect(r.headers['x-restarts']).toBe('1');
    expect(seenRestarts).toEqual([0, 1]);
    expect(origin.requests.map((q) => q.url)).toEqual(['/restart/a', '/fallback']);
    expect(px.proxy.stats.s_restart).toBe(1);

    await until(() => sink.groups.length === 1);
    const first = sink.groups[0] as Transaction;
    // The first request: its fetch, then the restart link, then End; no ReqAcct (as Varnish).
    expect(first.records.slice(-2).map((x) => x.tag)).toEqual(['Link', 'End']);
    const link = first.records.at(-2)?.value ?? '';
    expect(link).toMatch(/^req \d+ restart$/);
    expect(tags(first)).toContain('Timestamp');
    expect(first.records.some((x) => x.tag === 'Timestamp' && x.value.startsWith('Restart:'))).toBe(true);
    expect(tags(first)).not.toContain('ReqAcct');
    expect(first.records.filter((x) => x.tag === 'VCL_return').map((x) => x.value)).toContain('restart');
    const second = first.children.find((c) => c.type === 'Request') as Transaction;
    expect(link).toBe(`req ${second.vxid} restart`);
    expect(value(second, 'Begin')).toBe(`req ${first.vxid} restart`);
    expect(value(second, 'ReqURL')).toBe('/fallback');
    expect(second.records.find((x) => x.tag === 'RespStatus')?.value).toBe('200');
    expect(tags(second)).toContain('ReqAcct');
    // varnishlog prints the restarted request at level 1, after the first one's fetch (breadth-first).
    const text = formatVarnishlog(first);
    const headers = text.split('\n').filter((l) => l.includes('<<'));
    expect(headers.map((l) => l.slice(0, 3).trim())).toEqual(['*', '**', '*', '**']);
    expect(headers[2]).toContain(`${second.vxid}`);
  });

  it('restarts are capped by maxRestarts: the one past it gets a 503 and a VCL_Error, the origin sees max + 1', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(503, { 'cache-control': 'no-store' });
        res.end('down');
      }),
    );
    const sink = new MemorySink();
    const hooks: ProxyHooks = { responseFilter: (resp) => (resp.status === 503 && !resp.synthetic ? 'restart' : undefined) };
    const px = track(await startProxy(origin.url, { hooks, maxRestarts: 2, txlog: new TxLog([sink]) }));
    const r = await get(px.url, '/loop');
    expect(r.status).toBe(503);
    expect(origin.count).toBe(3);
    expect(px.proxy.stats.s_restart).toBe(2);
    await until(() => sink.groups.length === 1);
    let last = sink.groups[0] as Transaction;
    let chain = 1;
    for (let next = last.children.find((c) => c.type === 'Request'); next !== undefined; next = next.children.find((c) => c.type === 'Request')) {
      last = next;
      chain++;
    }
    expect(chain).toBe(3);
    expect(value(last, 'VCL_Error')).toBe('Too many restarts');
    expect(last.records.filter((x) => x.tag === 'RespStatus').map((x) => x.value)).toEqual(['503']);
  });

  it('a synth response may restart too (restart on 503 from a failed fetch), and a restart from requestFilter works', async () => {
    const good = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end(`good ${req.url}`);
      }),
    );
    const hooks: ProxyHooks = {
      requestFilter(req) {
        if (req.url === '/old' && req.restarts === 0) {
          req.url = '/new';
          return 'restart';
        }
        return undefined;
      },
    };
    const px = track(await startProxy(good.url, { hooks }));
    const r = await get(px.url, '/old');
    expect(r.body).toBe('good /new');
    expect(px.proxy.stats.s_restart).toBe(1);
    expect(good.requests.map((q) => q.url)).toEqual(['/new']);
  });

  it('the deliver hook may answer with a synth instead (no object body sent), and may be async', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'x-secret': '1' });
        res.end('secret body');
      }),
    );
    const hooks: ProxyHooks = {
      async responseFilter(resp) {
        await new Promise((r) => setImmediate(r));
        if (resp.headers['x-secret'] !== undefined && !resp.synthetic) return { synth: { status: 403, body: 'nope\n' } };
        resp.headers['x-async'] = 'yes';
        return undefined;
      },
    };
    const px = track(await startProxy(origin.url, { hooks }));
    for (let i = 0; i < 2; i++) {
      const r = await get(px.url, '/s');
      expect(r.status).toBe(403);
      expect(r.body).toBe('nope\n');
      expect(r.headers['x-async']).toBe('yes');
    }
    expect(origin.count).toBe(1);
  });

  it('a request whose body was already sent on cannot restart: 503, as Varnish without a cached body', async () => {
    const origin = track(
      await startScriptedOrigin((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(500, { 'cache-control': 'no-store' });
          res.end('failed');
        });
      }),
    );
    const hooks: ProxyHooks = { responseFilter: (resp, req) => (resp.status === 500 && req.restarts === 0 ? 'restart' : undefined) };
    const px = track(await startProxy(origin.url, { hooks }));
    const r = await request(`${px.url}/form`, { method: 'POST', body: 'a=1', headers: { host: 't' } });
    expect([r.statusCode, await r.body.text()]).toEqual([503, '503 Service Unavailable\n']);
    expect(origin.count).toBe(1);
    expect(px.proxy.stats.s_restart).toBe(0);
  });
});
