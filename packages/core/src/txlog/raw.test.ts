import { describe, expect, it } from 'vitest';
import { logResp, logRestart, logVcl } from './records.js';
import { RAW_RUN, RecordRun, statusRun, vclRun } from './raw.js';
import { formatNdjson, formatVarnishlog, MemorySink, TxLog, type Transaction, type TxGrouping, type TxView } from './txlog.js';
import { ByteWriter } from './bytes.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';

/** What the byte formatters (the log file's) write for `v`, as text. */
function written(fn: (w: ByteWriter) => void): string {
  const w = new ByteWriter(16);
  fn(w);
  return w.buf.toString('utf8', 0, w.n);
}

/** A group as the formatters saw it before issue 16: records as tag/value objects, nothing appended raw. */
const asRecords = (t: TxView): TxView => ({ vxid: t.vxid, type: t.type, records: t.records.map((r) => ({ ...r })), children: t.children.map(asRecords), endSeq: t.endSeq ?? 0 });

/** A request that restarts, fetches, and starts a subrequest, on a logged session; a fixed clock. */
function groups(logSecrets: boolean): { sink: MemorySink; roots: Transaction[] } {
  let now = 1_764_600_000_000;
  const sink = new MemorySink();
  const log = new TxLog([sink], { now: () => (now += 1.25), logSecrets });
  const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: now });
  sess.timestamp('Start');
  const first = log.beginRequest(sess);
  first.timestamp('Start');
  first.timestamp('Req');
  first.words('ReqStart', '127.0.0.1', 5000, 'a0');
  first.add('ReqMethod', 'GET');
  first.add('ReqURL', '/caf\u00e9?q="x"\\y');
  first.headers('ReqHeader', { host: 't', authorization: 'Basic dXNlcjpwdw==', cookie: 'a=1; b=2', 'x-tab': 'a\tb', 'x-many': ['1', '2'] });
  const second = logRestart(log, first);
  second.hit(3, -1.5, 10, 0);
  second.headerBlock('RespHeader', 'content-type: text/plain\r\nset-cookie: sid=abc; Path=/\r\n\r\nx-odd: \u00e9\r\n');
  const be = log.beginBereq(second, 'bgfetch');
  be.timestamp('Start');
  be.add('BereqURL', '/x');
  const sub = log.beginSubrequest(second, 'slice');
  sub.timestamp('Start');
  sub.acct(1, 2, 3, 4);
  sub.end();
  second.acct(88, 0, 172, 1024);
  second.timestamp('Resp');
  second.end();
  be.timestamp('BerespBody');
  be.end();
  const other = log.beginRequest(sess);
  other.timestamp('Start');
  other.end();
  sess.add('SessClose', 'REM_CLOSE 0.001');
  sess.end();
  return { sink, roots: sink.groups };
}

describe('records appended raw (issue 16)', () => {
  it('format to the same bytes as the records did, as strings and written as bytes (the log file)', () => {
    for (const logSecrets of [false, true]) {
      const { sink, roots } = groups(logSecrets);
      expect(roots.length).toBe(2);
      const views: TxView[] = [...roots, ...sink.sessions];
      for (const v of views) {
        for (const g of ['request', 'vxid'] as TxGrouping[]) {
          const text = formatVarnishlog(v, g);
          expect(text).toBe(formatVarnishlog(asRecords(v), g));
          expect(written((w) => writeVarnishlog(w, v, g))).toBe(text);
          expect(written((w) => writeVarnishlog(w, asRecords(v), g))).toBe(text);
        }
        expect(formatNdjson(v)).toBe(formatNdjson(asRecords(v)));
        expect(written((w) => writeNdjson(w, v))).toBe(formatNdjson(v));
        expect(written((w) => writeNdjson(w, asRecords(v)))).toBe(formatNdjson(v));
      }
    }
  });

  it('gives the values the old builders gave', () => {
    const { roots } = groups(false);
    const text = formatVarnishlog(roots[0] as Transaction);
    // The restarted request at the level of the one it restarted (vsl_dispatch.c), its fetch and subrequest below.
    expect(text.split('\n').filter((l) => l.includes('<<'))).toEqual([
      '*   << Request  >> 2         ',
      '*   << Request  >> 3         ',
      '**  << BeReq    >> 4         ',
      '**  << Request  >> 5         ',
    ]);
    expect(text).toContain('-   Begin          req 1 rxreq\n');
    expect(text).toContain('-   Timestamp      Start: 1764600000.002500 0.000000 0.000000\n');
    // Since the start and since the previous timestamp, taken when formatted.
    expect(text).toContain('-   Timestamp      Req: 1764600000.003750 0.001250 0.001250\n');
    expect(text).toContain('-   Timestamp      Restart: 1764600000.005000 0.002500 0.001250\n');
    expect(text).toContain('-   ReqStart       127.0.0.1 5000 a0\n');
    expect(text).toContain('-   ReqHeader      authorization: Basic ***\n-   ReqHeader      cookie: a=***; b=***\n');
    expect(text).toContain('-   ReqHeader      x-many: 1\n-   ReqHeader      x-many: 2\n');
    expect(text).toContain('-   Link           req 3 restart\n');
    expect(text).toContain('-   Begin          req 2 restart\n');
    expect(text).toContain('-   Hit            3 -1.500000 10.000000 0.000000\n');
    expect(text).toContain('-   RespHeader     content-type: text/plain\n-   RespHeader     set-cookie: sid=***; Path=/\n-   RespHeader     x-odd: \u00e9\n');
    expect(text).toContain('-   ReqAcct        88 0 88 172 1024 1196\n');
    expect(text).toContain('--  ReqAcct        1 2 3 3 4 7\n');
    expect(text).toContain('-   Link           req 5 slice\n');
  });
});

describe('records that recur, logged as one run (issue 16)', () => {
  it('a header block with its stored part as a run gives the records the whole block gives, masked or not', () => {
    const stored = 'content-type: text/plain\r\nset-cookie: sid=abc; Path=/\r\n\r\nx-odd: caf\u00e9\r\n';
    const block = `${stored}age: 3\r\ncache-status: sluice; hit\r\nx-cut`;
    for (const logSecrets of [false, true]) {
      const sink = new MemorySink();
      const log = new TxLog([sink], { now: () => 1, logSecrets });
      const whole = log.beginRequest(0);
      whole.headerBlock('RespHeader', block);
      whole.end();
      const split = log.beginRequest(0);
      split.headerBlock('RespHeader', block, stored);
      // Twice: the second time the run is the one made the first time.
      split.headerBlock('RespHeader', block, stored);
      split.end();
      const values = (t: Transaction): string[] => t.records.filter((r) => r.tag === 'RespHeader').map((r) => r.value);
      expect(values(whole)).toEqual([
        'content-type: text/plain',
        logSecrets ? 'set-cookie: sid=abc; Path=/' : 'set-cookie: sid=***; Path=/',
        'x-odd: caf\u00e9',
        'age: 3',
        'cache-status: sluice; hit',
      ]);
      expect(values(split)).toEqual([...values(whole), ...values(whole)]);
      for (const g of ['request', 'vxid'] as TxGrouping[]) expect(written((w) => writeVarnishlog(w, split, g))).toBe(formatVarnishlog(asRecords(split), g));
      expect(written((w) => writeNdjson(w, split))).toBe(formatNdjson(asRecords(split)));
    }
  });

  it('a prefix that does not end a line is not taken as a run (the block is split as a whole)', () => {
    const sink = new MemorySink();
    const log = new TxLog([sink], { now: () => 1 });
    const t = log.beginRequest(0);
    t.headerBlock('RespHeader', 'a: 1\r\nb: 2\r\n', 'a: 1\r\nb');
    t.end();
    expect(t.raw.filter((x) => typeof x === 'object')).toEqual([]);
    expect(t.records.map((r) => `${r.tag} ${r.value}`)).toEqual(['Begin req 0 rxreq', 'RespHeader a: 1', 'RespHeader b: 2', 'End ']);
  });

  it('VCL call/return pairs and status lines are the records add() gave', () => {
    const sink = new MemorySink();
    const log = new TxLog([sink], { now: () => 1 });
    const t = log.beginRequest(0);
    logVcl(t, 'HIT', 'deliver');
    logResp(t, 404, {}, false);
    logResp(t, 299, {}, false);
    t.end();
    expect(t.records.slice(1, -2).map((r) => `${r.tag} ${r.value}`)).toEqual([
      'VCL_call HIT',
      'VCL_return deliver',
      'RespProtocol HTTP/1.1',
      'RespStatus 404',
      'RespReason Not Found',
      'Timestamp Process: 0.001000 0.000000 0.000000',
      'RespProtocol HTTP/1.1',
      'RespStatus 299',
      'RespReason ',
    ]);
  });

  it('runs in a row are one entry, their records in order, whichever run comes before or after (joined once, kept)', () => {
    // A hit logs VCL_call HIT, the status line, the object's headers and VCL_call DELIVER in a row: one entry, copied
    // as one piece (session 11). Objects A and B take turns behind the same runs, and run pairs recur in both orders.
    const log = new TxLog([new MemorySink()], { now: () => 1 });
    const tx = (block: string, reason: string): Transaction => {
      const t = log.beginRequest(0);
      t.run(vclRun('HIT', 'deliver'));
      logResp(t, 200, block, true, block);
      t.run(vclRun('SYNTH', reason));
      t.run(statusRun(503, 'Service Unavailable'));
      t.run(vclRun('SYNTH', reason));
      t.end();
      return t;
    };
    const want = (block: string, reason: string): string[] => [
      'VCL_call HIT',
      'VCL_return deliver',
      'RespProtocol HTTP/1.1',
      'RespStatus 200',
      'RespReason OK',
      ...block.split('\r\n').filter((l) => l !== '').map((l) => `RespHeader ${l}`),
      'VCL_call DELIVER',
      'VCL_return deliver',
      'Timestamp Process: 0.001000 0.000000 0.000000',
      'VCL_call SYNTH',
      `VCL_return ${reason}`,
      'RespProtocol HTTP/1.1',
      'RespStatus 503',
      'RespReason Service Unavailable',
      'VCL_call SYNTH',
      `VCL_return ${reason}`,
    ];
    const a = 'x-a: 1\r\nage: 0\r\n';
    const b = 'x-b: 2\r\ncookie: sid=1\r\n';
    const entries = (t: Transaction): number => t.raw.filter((x, i) => t.raw[i - 1] === RAW_RUN && x instanceof RecordRun).length;
    for (let i = 0; i < 6; i++) {
      for (const [block, reason] of [[a, 'deliver'], [b, 'restart'], [a, 'restart'], [b, 'deliver']] as const) {
        const t = tx(block, reason);
        expect(t.records.slice(1, -1).map((r) => `${r.tag} ${r.value}`)).toEqual(want(block, reason).map((l) => l.replace('cookie: sid=1', 'cookie: sid=***')));
        expect(entries(t)).toBe(2);
        expect(written((w) => writeVarnishlog(w, t))).toBe(formatVarnishlog(asRecords(t)));
        expect(written((w) => writeNdjson(w, t))).toBe(formatNdjson(asRecords(t)));
      }
    }
  });

  it('runs in a row past 64 records stay apart (a joined run does not grow with its transaction)', () => {
    const log = new TxLog([new MemorySink()], { now: () => 1 });
    const t = log.beginRequest(0);
    const pairs = ['A', 'B', 'C'].map((c) => vclRun('RECV', `x${c}`));
    for (let i = 0; i < 90; i++) t.run(pairs[i % 3] as RecordRun);
    t.end();
    const sizes = t.raw.filter((x, i) => t.raw[i - 1] === RAW_RUN && x instanceof RecordRun).map((r) => (r as RecordRun).tags.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64);
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(180);
    expect(t.records.slice(1, -1).map((r) => r.value)).toEqual(Array.from({ length: 90 }, (_, i) => ['RECV', `x${'ABC'[i % 3]}`]).flat());
  });
});
