import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { deferred, startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { formatNdjson, formatVarnishlog, MemorySink, parseNdjsonGroup, seconds6, SessionGroups, TxLog, type Transaction, type TxSink, type TxView } from './txlog.js';
import { rawExchange } from '../test-support/harness.js';

const track = useCleanup();
// Two request.log blocks of the real Varnish 7.1 sample (shared/varnishlog), committed so the test runs without
// ../shared (fixtures/scripts/trace-excerpt.mjs cuts them).
const SAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../fixtures/traces/request-seq1-2.log');

const tags = (t: Transaction): string[] => t.records.map((r) => r.tag);
const value = (t: Transaction, tag: string): string | undefined => t.records.find((r) => r.tag === tag)?.value;

async function setup(handler: Parameters<typeof startScriptedOrigin>[0]) {
  const sink = new MemorySink();
  const origin = track(await startScriptedOrigin(handler));
  const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
  const get = async (p: string, headers: Record<string, string> = {}) => {
    const r = await request(`${px.url}${p}`, { headers: { host: 't', ...headers } });
    await r.body.text().catch(() => undefined);
    return r.statusCode;
  };
  return { sink, px, origin, get };
}

describe('transaction log records', () => {
  it('a miss: the request links to its backend fetch, which logs request, response and length', async () => {
    const { sink, get } = await setup((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('hello');
    });
    await get('/m');
    await until(() => sink.groups.length === 1);
    const req = sink.groups[0] as Transaction;
    expect(req.type).toBe('Request');
    expect(value(req, 'ReqURL')).toBe('/m');
    expect(tags(req)).toEqual(expect.arrayContaining(['Begin', 'ReqMethod', 'ReqURL', 'ReqProtocol', 'ReqHeader', 'VCL_call', 'Link', 'RespStatus', 'End']));
    const be = req.children[0] as Transaction;
    expect(value(req, 'Link')).toBe(`bereq ${be.vxid} fetch`);
    expect(value(be, 'Begin')).toBe(`bereq ${req.vxid} fetch`);
    expect(value(be, 'BereqURL')).toBe('/m');
    expect(value(be, 'BerespStatus')).toBe('200');
    expect(value(be, 'Length')).toBe('5');
    expect(value(be, 'Storage')).toBe('malloc s0');
    // The labels and order of the sample's miss (seq 22): Start Req Fetch Process Resp; backend side without Connected.
    expect(req.records.filter((r) => r.tag === 'Timestamp').map((r) => r.value.split(':')[0])).toEqual(['Start', 'Req', 'Fetch', 'Process', 'Resp']);
    expect(be.records.filter((r) => r.tag === 'Timestamp').map((r) => r.value.split(':')[0])).toEqual(['Start', 'Fetch', 'Bereq', 'Beresp', 'Process', 'BerespBody']);
  });

  it('a hit names the fetch that made the object; a pass says PASS', async () => {
    const { sink, get } = await setup((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    await get('/h');
    await get('/h');
    await get('/h', { cookie: 'a=1' });
    await until(() => sink.groups.length === 3);
    const [miss, hit, pass] = sink.groups as [Transaction, Transaction, Transaction];
    expect(value(hit, 'Hit')?.split(' ')[0]).toBe(String(miss.children[0]?.vxid));
    expect(hit.children).toHaveLength(0);
    expect(pass.records.find((r) => r.tag === 'VCL_return')?.value).toBe('pass');
    expect(value(pass, 'Link')).toMatch(/^bereq \d+ pass$/);
  });

  it('a coalesced request logs its wait on the waiting list and is a hit', async () => {
    const release = deferred();
    const { sink, px } = await setup(async (_req, res) => {
      await release.promise;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    const agent = track(new Agent({ connections: 4 }));
    const both = [0, 1].map(() => request(`${px.url}/c`, { headers: { host: 't' }, dispatcher: agent }).then((r) => r.body.text()));
    await until(() => px.proxy.stats.busy_sleep === 1);
    release.resolve();
    await Promise.all(both);
    await until(() => sink.groups.length === 2);
    const waiter = sink.groups.find((g) => g.children.length === 0) as Transaction;
    expect(waiter.records.some((r) => r.tag === 'Timestamp' && r.value.startsWith('Waitinglist:'))).toBe(true);
    expect(tags(waiter)).toContain('Hit');
  });

  it('a streaming failure logs FetchError on the backend fetch', async () => {
    const { sink, get } = await setup(async (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('part');
      await new Promise((r) => setTimeout(r, 10));
      req.socket.destroy();
    });
    await get('/f').catch(() => undefined);
    await until(() => sink.groups.length === 1);
    expect(value(sink.groups[0]?.children[0] as Transaction, 'FetchError')).toMatch(/^body fetch failed/);
  });
});

describe('sessions and byte accounting', () => {
  it('each connection is a Session transaction linking to its requests, closed with the reason', async () => {
    const sink = new MemorySink();
    const origin = track(await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '5' });
      res.end('hello');
    }));
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    // Two requests on one connection, the second asks to close.
    await rawExchange(px.port, 'GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await until(() => sink.sessions.length === 1 && sink.groups.length === 2);
    const sess = sink.sessions[0] as Transaction;
    expect(sess.type).toBe('Session');
    expect(value(sess, 'Begin')).toBe('sess 0 HTTP/1');
    expect(value(sess, 'SessOpen')).toMatch(/^127\.0\.0\.1 \d+ a0 127\.0\.0\.1 \d+ \d+\.\d{6} 0$/);
    const [r1, r2] = sink.groups as [Transaction, Transaction];
    expect(sess.records.filter((r) => r.tag === 'Link').map((r) => r.value)).toEqual([`req ${r1.vxid} rxreq`, `req ${r2.vxid} rxreq`]);
    expect(value(r1, 'Begin')).toBe(`req ${sess.vxid} rxreq`);
    expect(value(sess, 'SessClose')).toMatch(/^REQ_CLOSE \d+\.\d{3}$/);
    expect(value(r1, 'ReqStart')?.split(' ')[1]).toBe(value(sess, 'SessOpen')?.split(' ')[1]);
  });

  it("a long keep-alive connection's Session grows by one number per request, its Link records as they were", () => {
    // Session 11: each request appended five raw entries (`Link req N rxreq`) to its connection's Session, which lives
    // as long as the connection: 5000 requests made 25 000 entries. Links in a row now share one entry.
    const sink = new MemorySink();
    const log = new TxLog([sink]);
    const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, openedMs: 0 });
    sess.timestamp('Start');
    const before = sess.raw.length;
    const vxids: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const t = log.beginRequest(sess);
      vxids.push(t.vxid);
      t.end();
    }
    expect(sess.raw.length - before).toBeLessThanOrEqual(4);
    // A restart in between (another reason) starts a new entry; the order of the records is kept.
    const other = log.beginRequest(sess, 'restart');
    const last = log.beginRequest(sess);
    other.end();
    last.end();
    sess.add('SessClose', 'REM_CLOSE 0.001');
    sess.end();
    const links = sess.records.filter((r) => r.tag === 'Link').map((r) => r.value);
    expect(links).toEqual([...vxids.map((v) => `req ${v} rxreq`), `req ${other.vxid} restart`, `req ${last.vxid} rxreq`]);
    expect(tags(sess).slice(-2)).toEqual(['SessClose', 'End']);
    expect(formatVarnishlog(sess, 'vxid').split('\n').filter((l) => l.startsWith('-   Link ')).length).toBe(5002);
  });

  it('SessClose names who closed: HTTP/1.0 without keep-alive, the proxy after a 400, the client', async () => {
    const sink = new MemorySink();
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('x')));
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    await rawExchange(px.port, 'GET /a HTTP/1.0\r\n\r\n');
    await until(() => sink.sessions.length === 1);
    await rawExchange(px.port, 'GET /a HTTP/1.1\r\nUser-Agent: t\r\n\r\n');
    await until(() => sink.sessions.length === 2);
    const agent = new Agent({ connections: 1 });
    const keep = await request(`${px.url}/a`, { dispatcher: agent });
    await keep.body.text();
    await agent.close();
    await until(() => sink.sessions.length === 3);
    expect(sink.sessions.map((t) => value(t, 'SessClose')?.split(' ')[0])).toEqual(['REQ_HTTP10', 'RESP_CLOSE', 'REM_CLOSE']);
  });

  it('-g session holds each request until its connection closes, and lets them out on their own past the limit', () => {
    const out: TxView[] = [];
    const groups = new SessionGroups((v) => out.push(v), 2);
    const log = new TxLog([{ write: (g) => groups.request(g), session: (t) => groups.session(t) }]);
    const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, openedMs: 0 });
    const req = (): void => log.beginRequest(sess).end();
    req();
    expect(out).toEqual([]);
    req();
    // The limit (2) is reached: both go out as plain request groups.
    expect(out.map((v) => v.type)).toEqual(['Request', 'Request']);
    req();
    sess.end();
    expect(out.map((v) => v.type)).toEqual(['Request', 'Request', 'Session']);
    expect(out[2]?.children.map((c) => c.type)).toEqual(['Request']);
    // A request whose connection was not logged (session 0) goes out at once.
    log.beginRequest(0).end();
    expect(out).toHaveLength(4);
  });

  it('ReqAcct counts the request and response bytes; BereqAcct the backend body', async () => {
    const sink = new MemorySink();
    const origin = track(await startScriptedOrigin(async (req, res) => {
      for await (const _ of req) void _;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('abc');
      res.end('defg');
    }));
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    const head = 'POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\n';
    const raw = await rawExchange(px.port, `${head}hello world`);
    await until(() => sink.groups.length === 1);
    const acct = (value(sink.groups[0] as Transaction, 'ReqAcct') ?? '').split(' ').map(Number);
    const respHead = raw.indexOf('\r\n\r\n') + 4;
    // Body bytes are the payload without chunked framing, as Varnish counts them.
    expect(acct).toEqual([head.length, 11, head.length + 11, respHead, 7, respHead + 7]);
    const be = (value(sink.groups[0]?.children[0] as Transaction, 'BereqAcct') ?? '').split(' ').map(Number);
    expect(be[1]).toBe(11);
    expect(be[4]).toBe(7);
    expect(be[0]).toBeGreaterThan(20);
    expect(be[2]).toBe((be[0] as number) + 11);
  });

  it('-g vxid layout: every transaction its own level-1 block, the fetch ending before its request', async () => {
    const { sink, get } = await setup((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    await get('/v');
    await until(() => sink.groups.length === 1);
    const g = sink.groups[0] as Transaction;
    const blocks = formatVarnishlog(g, 'vxid').split('\n\n').filter(Boolean);
    expect(blocks.map((b) => b.split('\n')[0])).toEqual([
      `*   << BeReq    >> ${String(g.children[0]?.vxid).padEnd(10)}`,
      `*   << Request  >> ${String(g.vxid).padEnd(10)}`,
    ]);
    // Read back from NDJSON, the same text comes out (sluice log formats what the admin API streams).
    const back = parseNdjsonGroup(formatNdjson(g).trim());
    expect(back === undefined ? '' : formatVarnishlog(back, 'vxid')).toBe(formatVarnishlog(g, 'vxid'));
    expect(back === undefined ? '' : formatVarnishlog(back)).toBe(formatVarnishlog(g));
  });

  it('a request the parser refuses is logged with HttpGarbage, escaped as varnishlog prints unsafe tags', async () => {
    const sink = new MemorySink();
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('x')));
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    const raw = await rawExchange(px.port, 'GET /a\u0001b HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => sink.groups.length === 1 && sink.sessions.length === 1);
    const g = sink.groups[0] as Transaction;
    expect(value(g, 'HttpGarbage')).toBe('"GET /a%01b HTTP/1.1%0d%0aHost: t%0d%0a%0d%0a"');
    expect(value(g, 'RespStatus')).toBe('400');
    expect(tags(g)).not.toContain('VCL_call');
    expect(Number(value(g, 'ReqAcct')?.split(' ')[5])).toBe(raw.length);
    expect(value(sink.sessions[0] as Transaction, 'SessClose')).toMatch(/^RX_JUNK /);
  });

  it('with no sink wanting records, no transaction is built', async () => {
    const idle: TxSink & { n: number } = { active: false, n: 0, write() { this.n++; } };
    const log = new TxLog([idle]);
    expect(log.enabled).toBe(false);
    const origin = track(await startScriptedOrigin((_req, res) => void res.end('x')));
    const px = track(await startProxy(origin.url, { txlog: log }));
    const r = await request(`${px.url}/n`);
    await r.body.text();
    expect(idle.n).toBe(0);
    expect(log.beginRequest(0).vxid).toBe(1);
  });
});

describe('varnishlog text layout', () => {
  // The column rules of the real Varnish 7.1 output (see shared/varnishlog/FORMAT.md §2.1).
  const HEADER = /^(\*{1,3} {0,2}|\*\d+\*) << (Request |BeReq   |Session ) >> \d+ *$/;
  const RECORD = /^(-{1,3} {0,2}|-\d+-) (\S.{13}) (.*)$/;
  const check = (line: string): boolean => line === '' || (HEADER.test(line) && line.length >= 27) || (RECORD.test(line) && line[18] === ' ');

  it('the real sample follows these rules (so the check is meaningful)', () => {
    const lines = readFileSync(SAMPLE, 'utf8').split('\n');
    expect(lines.length).toBeGreaterThan(100);
    expect(lines.filter((l) => l.startsWith('**  << BeReq'))).toHaveLength(1);
    expect(lines.filter((l) => !check(l))).toEqual([]);
  });

  it('our text output follows the same rules, nesting the fetch one level deeper; NDJSON round-trips', async () => {
    const { sink, get } = await setup((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    await get('/layout');
    await until(() => sink.groups.length === 1);
    const g = sink.groups[0] as Transaction;
    const text = formatVarnishlog(g);
    const lines = text.split('\n');
    expect(lines.filter((l) => !check(l))).toEqual([]);
    expect(lines[0]).toBe(`*   << Request  >> ${String(g.vxid).padEnd(10)}`);
    expect(lines).toContain(`**  << BeReq    >> ${String(g.children[0]?.vxid).padEnd(10)}`);
    expect(lines.some((l) => /^--  BerespStatus   200$/.test(l))).toBe(true);
    expect(lines.some((l) => /^-   End            $/.test(l))).toBe(true);
    const parsed = JSON.parse(formatNdjson(g)) as { vxid: number; records: Array<[string, string]>; children: Array<{ vxid: number }> };
    expect(parsed.vxid).toBe(g.vxid);
    expect(parsed.records).toEqual(g.records.map((r) => [r.tag, r.value]));
    expect(parsed.children[0]?.vxid).toBe(g.children[0]?.vxid);
  });
});

describe('seconds6', () => {
  it('formats as toFixed(6) does', () => {
    // (Exact half microseconds may round the other way: binary fractions make toFixed's choice arbitrary there.)
    for (const ms of [0, 0.0004, 0.0006, 1, 999.9996, 1234.5678, 1795305441683.321, -1165.718, 0.02]) {
      expect(seconds6(ms)).toBe((ms / 1000).toFixed(6));
    }
  });
});
