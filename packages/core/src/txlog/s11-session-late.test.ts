import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { settlesWithin, startProxy, until, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';
import type { TxView } from './format.js';
import { SessionGroups, StreamSink, TxLog } from './txlog.js';

/**
 * Session 11, defect 3: with `-g session`, a request group that ended after its connection's Session was handed out
 * (a grace hit's background fetch outliving the connection) was held by SessionGroups for good: never written, and
 * kept in memory. Now it goes out on its own at once, as varnishlog prints late transactions. A relapse shows as the
 * group missing from the output.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

describe('-g session: a request group that ends after its Session (defect 3)', () => {
  it('SessionGroups hands it out on its own at once, and holds nothing after', () => {
    const out: TxView[] = [];
    const groups = new SessionGroups((v) => out.push(v));
    const log = new TxLog([{ write: (root) => groups.request(root), session: (t) => groups.session(t) }]);
    const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, openedMs: 0 });
    const early = log.beginRequest(sess);
    early.end();
    const late = log.beginRequest(sess);
    const fetch = log.beginBereq(late, 'bgfetch');
    late.end();
    sess.end();
    // The Session went out with the request that had ended; the other waits for its fetch.
    expect(out.map((v) => [v.type, v.children.map((c) => c.vxid)])).toEqual([['Session', [early.vxid]]]);
    fetch.end();
    expect(out.length).toBe(2);
    expect(out[1]?.vxid).toBe(late.vxid);
    expect(out[1]?.children.map((c) => c.vxid)).toEqual([fetch.vxid]);
    expect((groups as unknown as { held: Map<number, unknown> }).held.size).toBe(0);
  });

  it('through the proxy: a grace hit whose background fetch ends after the connection closed is written (text, -g session)', async () => {
    let gate: (() => void) | undefined;
    let n = 0;
    const origin = http.createServer((_req, res) => {
      const answer = (): void => {
        res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', 'content-length': '2' });
        res.end('ok');
      };
      // The second request (the background fetch) waits until the test lets it go.
      if (++n === 2) gate = answer;
      else answer();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => origin.close(() => r())) });
    let text = '';
    const sink = new StreamSink({ write: (b: string | Uint8Array) => void (text += Buffer.from(b).toString('latin1')) }, 'text', 'session');
    let nowMs = Date.now();
    const px = track(await startProxy(`http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`, { txlog: new TxLog([sink]), now: () => nowMs }));
    const get = (): Promise<string> =>
      new Promise((resolve) => {
        const s = net.connect(px.port, '127.0.0.1');
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString('latin1')));
        s.on('close', () => resolve(got));
        s.write('GET /g HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
      });
    expect(await get()).toMatch(/^HTTP\/1\.1 200 /);
    nowMs += 5000;
    // A grace hit: answered from the stale object at once; its background fetch waits at the origin.
    expect(await get()).toMatch(/^HTTP\/1\.1 200 /);
    await until(() => gate !== undefined);
    sink.flush();
    await until(() => (sink.flush(), text.split('<< Session  >>').length - 1 === 2));
    expect(text.split('bgfetch').length - 1).toBe(0);
    gate?.();
    expect(await settlesWithin(until(() => (sink.flush(), text.includes('bgfetch'))), 5000)).toBe(true);
    // The late group: the request and its background fetch, on their own, whole.
    const late = text.slice(text.lastIndexOf('<< Request  >>'));
    expect(late).toMatch(/Link\s+bereq \d+ bgfetch/);
    expect(late).toMatch(/<< BeReq    >>/);
    expect(uncaught).toEqual([]);
  });
});
