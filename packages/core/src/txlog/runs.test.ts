import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { rawExchange, startProxy, until, useCleanup } from '../test-support/harness.js';
import { ByteWriter } from './bytes.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';
import { RAW_RUN, type RecordRun } from './raw.js';
import { formatNdjson, formatVarnishlog, MemorySink, TxLog, type Transaction } from './txlog.js';

/**
 * Records that recur, logged as runs on the request path (issue 16): a keep-alive connection's repeated request
 * (RequestRunCache on its Session) and a prepared hit's response headers. Whatever is cached, each request's records
 * must be its own: a header changed, added, removed or moved on the same connection, a new object under the same key,
 * a secret masked (or not, with logSecrets) in a request that recurs.
 */
const track = useCleanup();

const values = (t: Transaction, tag: string): string[] => t.records.filter((r) => r.tag === tag).map((r) => r.value);
const runs = (t: Transaction): RecordRun[] => t.raw.filter((_, i) => t.raw[i - 1] === RAW_RUN && typeof t.raw[i] === 'object') as RecordRun[];
/** The run holding `tag`'s records in `t`, if they were logged as one. */
const runOf = (t: Transaction, tag: string): RecordRun | undefined => runs(t).find((r) => r.tags.includes(tag));

/** The log file's bytes for a group are the string formatters' (text and NDJSON). */
function expectSameBytes(g: Transaction): void {
  const w = new ByteWriter(64);
  writeVarnishlog(w, g);
  expect(w.buf.toString('utf8', 0, w.n)).toBe(formatVarnishlog(g));
  const j = new ByteWriter(64);
  writeNdjson(j, g);
  expect(j.buf.toString('utf8', 0, j.n)).toBe(formatNdjson(g));
}

async function loggedProxy(logSecrets: boolean) {
  const sink = new MemorySink();
  let fetches = 0;
  const origin = track(
    await startScriptedOrigin((_req, res) => {
      fetches++;
      res.writeHead(200, { 'cache-control': 'max-age=60', 'x-version': String(fetches), 'content-length': '2' });
      res.end('ok');
    }),
  );
  const px = track(await startProxy(origin.url, { txlog: new TxLog([sink], { logSecrets }), purgeAllow: ['127.0.0.1'] }));
  return { sink, px, fetches: () => fetches };
}

/** Requests as [url, header lines], sent pipelined on one connection (the last one closes it). */
async function sendOnOneConnection(port: number, reqs: Array<[string, string[]]>): Promise<void> {
  const text = reqs.map(([url, lines], i) => `GET ${url} HTTP/1.1\r\nHost: t\r\n${lines.map((l) => `${l}\r\n`).join('')}${i === reqs.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('');
  await rawExchange(port, text);
}

describe('a connection\'s repeated request logged as one run (issue 16)', () => {
  const reqs: Array<[string, string[]]> = [
    ['/a', ['X-A: 1']],
    ['/a', ['X-A: 1']],
    ['/a', ['X-A: 1']],
    // A value changed, a header added, the same two in another order, one removed.
    ['/a', ['X-A: 2']],
    ['/a', ['X-A: 2', 'X-B: 3']],
    ['/a', ['X-B: 3', 'X-A: 2']],
    ['/a', ['X-B: 3']],
    ['/a', ['X-B: 3']],
    // Credentials: masked unless logSecrets, in a request that recurs and one whose secret alone changes.
    ['/a', ['Cookie: sid=abc; theme=dark', 'Authorization: Basic dXNlcjpwdw==']],
    ['/a', ['Cookie: sid=abc; theme=dark', 'Authorization: Basic dXNlcjpwdw==']],
    ['/a', ['Cookie: sid=xyz; theme=dark', 'Authorization: Basic dXNlcjpwdw==']],
    // Another URL, then an X-Forwarded-For (ReqUnset and the combined value) twice.
    ['/b', ['X-B: 3']],
    ['/b', ['X-Forwarded-For: 10.0.0.9']],
    ['/b', ['X-Forwarded-For: 10.0.0.9']],
    ['/b', ['X-Forwarded-For: 10.0.0.8']],
  ];

  for (const logSecrets of [false, true]) {
    it(`each request's records are its own${logSecrets ? ' (logSecrets: credentials as sent)' : ' (credentials masked)'}`, async () => {
      const { sink, px } = await loggedProxy(logSecrets);
      await sendOnOneConnection(px.port, reqs);
      await until(() => sink.groups.length === reqs.length && sink.sessions.length === 1);
      const groups = [...sink.groups].sort((a, b) => a.vxid - b.vxid);
      const mask = (line: string): string => {
        if (logSecrets) return line;
        if (line.startsWith('Cookie: ')) return line.replace(/sid=[^;]*; theme=.*/, 'sid=***; theme=***');
        if (line.startsWith('Authorization: ')) return 'Authorization: Basic ***';
        return line;
      };
      groups.forEach((g, i) => {
        const [url, lines] = reqs[i] as [string, string[]];
        expect(values(g, 'ReqURL')).toEqual([url]);
        const last = i === reqs.length - 1;
        const sent = ['Host: t', ...lines, ...(last ? ['Connection: close'] : [])].map(mask);
        const xff = lines.find((l) => l.startsWith('X-Forwarded-For: '))?.slice(17);
        // The parser's names are lowercase; the X-Forwarded-For sent on comes last.
        const expected = sent.map((l) => `${l.slice(0, l.indexOf(':')).toLowerCase()}${l.slice(l.indexOf(':'))}`);
        expect(values(g, 'ReqHeader')).toEqual([...expected, `X-Forwarded-For: ${xff === undefined ? '127.0.0.1' : `${xff}, 127.0.0.1`}`]);
        expect(values(g, 'ReqUnset')).toEqual(xff === undefined ? [] : [`x-forwarded-for: ${xff}`]);
        expect(values(g, 'ReqStart')).toEqual(values(groups[0] as Transaction, 'ReqStart'));
        expectSameBytes(g);
      });
      // The repeats were runs, the same run while the request stayed the same; a changed request was not one.
      const r = groups.map((g) => runOf(g, 'ReqHeader'));
      expect(r[0]).toBeUndefined();
      expect(r[1]).toBeDefined();
      expect(r[2]).toBe(r[1]);
      expect(r[3]).toBeUndefined();
      expect(r[9]).toBeDefined();
      expect(r[10]).toBeUndefined();
      expect(r[13]).toBeDefined();
      expect(r[14]).toBeUndefined();
      if (!logSecrets) {
        // A masked secret is masked in the run too; nothing of it in any record.
        const all = groups.flatMap((g) => g.records.map((x) => x.value)).join('\n');
        expect(all).not.toMatch(/abc|xyz|dXNlcjpwdw/);
      }
    });
  }

  it('a request on another connection is not taken for the last one of this connection (ReqStart has its own port)', async () => {
    const { sink, px } = await loggedProxy(false);
    const three: Array<[string, string[]]> = [['/a', ['X-A: 1']], ['/a', ['X-A: 1']], ['/a', ['X-A: 1']]];
    await sendOnOneConnection(px.port, three);
    await sendOnOneConnection(px.port, three);
    await until(() => sink.groups.length === 6 && sink.sessions.length === 2);
    const groups = [...sink.groups].sort((a, b) => a.vxid - b.vxid);
    const ports = groups.map((g) => values(g, 'ReqStart')[0]?.split(' ')[1]);
    const sessPorts = [...sink.sessions].sort((a, b) => a.vxid - b.vxid).map((s) => values(s, 'SessOpen')[0]?.split(' ')[1]);
    expect(ports).toEqual([sessPorts[0], sessPorts[0], sessPorts[0], sessPorts[1], sessPorts[1], sessPorts[1]]);
    expect(sessPorts[0]).not.toBe(sessPorts[1]);
    // The second request of each connection is its run (the third closes), each connection's own.
    expect(runOf(groups[1] as Transaction, 'ReqStart')).toBeDefined();
    expect(runOf(groups[4] as Transaction, 'ReqStart')).toBeDefined();
    expect(runOf(groups[4] as Transaction, 'ReqStart')).not.toBe(runOf(groups[1] as Transaction, 'ReqStart'));
    for (const g of groups) expectSameBytes(g);
  });
});

describe('a prepared hit\'s response headers logged as a run (issue 16)', () => {
  it('a new object under the same key logs its own headers, and so does each hit on it', async () => {
    const { sink, px, fetches } = await loggedProxy(false);
    const PURGE = 'PURGE /o HTTP/1.1\r\nHost: t\r\n\r\n';
    const GET = 'GET /o HTTP/1.1\r\nHost: t\r\n\r\n';
    await rawExchange(px.port, `${GET}${GET}${GET}${PURGE}${GET}${GET}${GET}GET /o HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
    await until(() => sink.groups.length === 8);
    expect(fetches()).toBe(2);
    const groups = [...sink.groups].sort((a, b) => a.vxid - b.vxid);
    const version = (g: Transaction): string[] => values(g, 'RespHeader').filter((v) => v.startsWith('x-version: '));
    expect(groups.map(version)).toEqual([['x-version: 1'], ['x-version: 1'], ['x-version: 1'], [], ['x-version: 2'], ['x-version: 2'], ['x-version: 2'], ['x-version: 2']]);
    // Each hit names the fetch of the object it got.
    const fetchOf = (g: Transaction): string => String((g.children[0] as Transaction).vxid);
    for (const i of [1, 2]) expect(values(groups[i] as Transaction, 'Hit')[0]?.split(' ')[0]).toBe(fetchOf(groups[0] as Transaction));
    for (const i of [5, 6, 7]) expect(values(groups[i] as Transaction, 'Hit')[0]?.split(' ')[0]).toBe(fetchOf(groups[4] as Transaction));
    for (const g of groups) {
      // One record per field, Age and Cache-Status present once (the run is the whole block, nothing twice).
      const resp = values(g, 'RespHeader');
      if (g === groups[3]) continue;
      expect(resp.filter((v) => v.startsWith('age: '))).toHaveLength(1);
      expect(resp.filter((v) => v.startsWith('cache-status: '))).toHaveLength(1);
      expect(new Set(resp).size).toBe(resp.length);
      expectSameBytes(g);
    }
    // The hits' headers were runs: the object's block, another one for the new object.
    const hitRun = (i: number): RecordRun | undefined => runOf(groups[i] as Transaction, 'RespHeader');
    expect(hitRun(1)).toBeDefined();
    expect(hitRun(5)).toBeDefined();
    expect(hitRun(5)).not.toBe(hitRun(1));
  });
});
