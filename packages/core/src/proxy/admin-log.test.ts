import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { LiveSink } from '../txlog/live.js';
import { TxLog } from '../txlog/txlog.js';
import { createAdminServer } from './admin.js';

const track = useCleanup();
const TOKEN = 'test-admin-token';

describe('admin /log', () => {
  it('a reader that does not keep up loses groups and is told how many, instead of the proxy buffering them all', async () => {
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('x')));
    const px = track(await startProxy(origin.url));
    const live = new LiveSink();
    const admin = track(createAdminServer(px.proxy, { token: TOKEN, live }));
    const { port } = await admin.listen(0);
    // A client that asks for the log and then stops reading.
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /log HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    sock.pause();
    await until(() => live.active);
    const log = new TxLog([live]);
    const value = 'v'.repeat(1000);
    const N = 40_000; // about 45 MB of NDJSON: far beyond the socket buffers and the 1 MiB allowance
    for (let i = 0; i < N; i++) {
      const t = log.beginRequest(0);
      t.add('ReqURL', `/n/${i}`);
      t.add('Debug', value);
      t.end();
      if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
    }
    // Now read everything that was queued, plus one more group that goes out after the drops.
    sock.resume();
    let text = '';
    sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
    await new Promise((r) => setTimeout(r, 300));
    const last = log.beginRequest(0);
    last.add('ReqURL', '/last');
    last.end();
    await until(() => text.includes('/last'));
    sock.destroy();
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    // Chunked framing aside, count the groups and the overflow notices.
    const groups = (body.match(/"ReqURL","\/n\/\d+"/g) ?? []).length;
    const dropped = [...body.matchAll(/\{"overflow":(\d+)\}/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(dropped).toBeGreaterThan(0);
    expect(groups + dropped).toBe(N);
    // What was kept is what fits the socket buffers plus the 1 MiB allowance, far from the ~45 MB produced.
    expect(groups).toBeLessThan(N / 2);
    await until(() => !live.active);
  });

  // `sluice log --url '(a+)+$'` stalled every request for 6.8 s: the user's regex ran on the request path, and it
  // backtracks exponentially on a URL of a's ending in another letter. 28 a's take seconds per request on one thread
  // (40 would take hours); run on the request path, the batch below would block the proxy (and this test) for a minute.
  it('a catastrophic --url regex never stalls requests: the filter runs off the request path, with a time budget', async () => {
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('x')));
    const live = new LiveSink();
    const px = track(await startProxy(origin.url, { txlog: new TxLog([live]) }));
    const admin = track(createAdminServer(px.proxy, { token: TOKEN, live }));
    const { port } = await admin.listen(0);
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
    sock.write(`GET /log?url=${encodeURIComponent('(a+)+$')} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    await until(() => live.active);
    const evil = `/${'a'.repeat(28)}b`;
    const startedMs = Date.now();
    const statuses = await Promise.all(
      [evil, '/ok', evil, '/ok', evil, '/ok', evil].map(async (p) => (await request(`${px.url}${p}`, { headers: { host: 't' } }).then(async (r) => {
        await r.body.text();
        return r.statusCode;
      }))),
    );
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200]);
    // Seconds of margin either way: on the request path this takes four times the regex's seconds.
    expect(Date.now() - startedMs).toBeLessThan(3000);
    // The filter still works: a matching URL reaches the reader, after the verdicts before it.
    await request(`${px.url}/aaa`, { headers: { host: 't' } }).then((r) => r.body.text());
    await until(() => text.includes('"/aaa"'));
    expect(text).not.toContain('"/ok"');
    expect(text).not.toContain(evil);
    sock.destroy();
    await until(() => !live.active);
  });
});
