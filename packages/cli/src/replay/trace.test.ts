import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SAMPLE_DIR, TRACE_FIXTURES } from '../test-support/sample.js';
import { parseTrace, readTrace, TraceFormatError, withHost, type ReplayRequest, type Trace } from './trace.js';

// The parsers against the real Varnish 7.1 sample (fixtures/varnishlog, copied from shared/varnishlog by
// fixtures/scripts/copy-sample.mjs; its README.md has the expected table), and against two blocks of it cut and edited
// (fixtures/traces, fixtures/scripts/trace-excerpt.mjs).
const sample = (f: string): string => path.join(SAMPLE_DIR, f);
type ClientResult = { seq: number; method: string; url: string; status: number };
const clientResults = (): ClientResult[] => JSON.parse(readFileSync(sample('client_results.json'), 'utf8')) as ClientResult[];
const header = (r: ReplayRequest, name: string): string | undefined => r.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
const seqOf = (r: ReplayRequest): number => Number(header(r, 'X-Client-Seq'));

const VSL_FILES = ['request.log', 'vxid.log', 'session.log', 'raw.log', 'sample.vsl'];

describe('trace readers on the shared Varnish sample', () => {
  it.each(VSL_FILES)('%s: 38 client requests in arrival order, statuses as the client saw them', (file) => {
    const t = readTrace(sample(file));
    const results = clientResults();
    expect(t.skipped).toEqual([]);
    expect(t.requests).toHaveLength(38);
    // Arrival order recovered from Timestamp Start although blocks come in completion order.
    expect(t.requests.map(seqOf)).toEqual(results.map((c) => c.seq));
    for (const r of t.requests) {
      const c = results[r.seq - 1] as ClientResult;
      expect(r.method).toBe(c.method);
      expect(r.recorded.status).toBe(c.status);
      if (r.seq !== 32) expect(r.url).toBe(c.url);
    }
  });

  it.each(VSL_FILES)('%s: outcomes as the README table: 18 hit, 16 miss, 3 pass, 1 synth, with details', (file) => {
    const t = readTrace(sample(file));
    const count: Record<string, number> = {};
    for (const r of t.requests) count[r.recorded.outcome] = (count[r.recorded.outcome] ?? 0) + 1;
    expect(count).toEqual({ hit: 18, miss: 16, pass: 3, synth: 1 });
    const by = (seq: number): ReplayRequest => t.requests[seq - 1] as ReplayRequest;
    expect(by(20).recorded).toMatchObject({ outcome: 'miss', detail: 'hit-for-miss' });
    expect(by(35).recorded).toMatchObject({ outcome: 'hit', detail: 'grace' });
    for (const s of [23, 24, 25, 26]) expect(by(s).recorded).toMatchObject({ outcome: 'hit', detail: 'waitinglist' });
    expect(by(34).recorded).toMatchObject({ outcome: 'synth', status: 400 });
    expect([17, 18, 21].map((s) => by(s).recorded.outcome)).toEqual(['pass', 'pass', 'pass']);
    // ReqAcct field 5 and Timestamp Process.
    expect(by(16).recorded.bodyBytes).toBe(96256);
    expect(by(22).recorded.ttfbMs).toBeGreaterThan(600);
  });

  it('rebuilds requests as the client sent them: header order and case, no recorder X-Forwarded-For, body size', () => {
    const t = readTrace(sample('request.log'));
    const by = (seq: number): ReplayRequest => t.requests[seq - 1] as ReplayRequest;
    expect(by(1).headers).toEqual([
      ['User-Agent', 'vsample-client/1.0 (node)'],
      ['Accept', '*/*'],
      ['X-Client-Seq', '1'],
      ['Host', '127.0.0.1:20101'],
      ['Connection', 'keep-alive'],
    ]);
    for (const r of t.requests) expect(header(r, 'X-Forwarded-For')).toBeUndefined();
    // seq 33: raw socket, Host first, a value with TAB, quotes, backslash and UTF-8 kept verbatim.
    expect(by(33).headers[0]?.[0]).toBe('Host');
    expect(header(by(33), 'X-Note')).toBe('tab\there, "double quoted", back\\slash, Zürich → 東京 ✓');
    // seq 34: HTTP/1.1 without Host stays without Host.
    expect(header(by(34), 'Host')).toBeUndefined();
    // seq 21: the POST body is not logged; its size is (ReqAcct field 2).
    expect(by(21)).toMatchObject({ method: 'POST', bodyBytes: 57 });
    expect(header(by(21), 'Content-Length')).toBe('57');
    // seq 32: the URL was cut at 254 bytes by vsl_reclen; it is replayed as logged, with a note.
    expect(by(32).url).toHaveLength(254);
    expect(by(32).notes.join(' ')).toMatch(/truncated/);
    // seq 8: the first ReqMethod (HEAD), not Varnish's rewritten backend method.
    expect(by(8).method).toBe('HEAD');
  });

  it('withHost replaces the recorded Host in place and leaves Host-less requests alone', () => {
    const t = withHost(readTrace(sample('request.log')), 'staging.test:8080');
    expect(t.requests[0]?.headers[3]).toEqual(['Host', 'staging.test:8080']);
    expect(header(t.requests[33] as ReplayRequest, 'Host')).toBeUndefined();
    expect(t.requests.filter((r) => header(r, 'Host') === 'staging.test:8080')).toHaveLength(37);
  });

  it('ncsa.log: 38 requests with status and size, Host from the absolute URL, no outcome', () => {
    const t = readTrace(sample('ncsa.log'));
    expect(t.format).toBe('ncsa');
    expect(t.skipped).toEqual([]);
    expect(t.requests).toHaveLength(38);
    expect(t.requests.every((r) => r.recorded.outcome === 'unknown')).toBe(true);
    expect(t.requests.map((r) => r.recorded.status).sort()).toEqual(clientResults().map((c) => c.status).sort());
    const first = t.requests[0] as ReplayRequest;
    expect(first).toMatchObject({ method: 'GET', url: '/news', protocol: 'HTTP/1.1', recorded: { status: 200, bodyBytes: 699 } });
    expect(first.headers).toEqual([
      ['Host', '127.0.0.1:20101'],
      ['User-Agent', 'vsample-client/1.0 (node)'],
    ]);
    const noHost = t.requests.find((r) => r.recorded.status === 400) as ReplayRequest;
    expect(header(noHost, 'Host')).toBeUndefined();
    expect(noHost.notes.join(' ')).toMatch(/localhost/);
  });
});

/** One request.log block (of seq 1 or 2, the ones committed), by the seq of its request, as text. */
function block(seq: number): string {
  const text = readFileSync(path.join(TRACE_FIXTURES, 'request-seq1-2.log'), 'utf8');
  const found = text.split('\n\n').find((b) => b.includes(`ReqHeader      X-Client-Seq: ${seq}\n`));
  if (found === undefined) throw new Error(`no block for seq ${seq}`);
  return `${found}\n\n`;
}

const parse = (text: string): Trace => parseTrace(Buffer.from(text), 'test.log');

describe('what real logs contain', () => {
  it('a log cut mid-block: the complete blocks replay, the cut one is skipped with the reason', () => {
    const b1 = block(1);
    const beforeUrl = parse(block(2) + b1.slice(0, b1.indexOf('-   ReqURL')));
    expect(beforeUrl.requests.map(seqOf)).toEqual([2]);
    expect(beforeUrl.skipped).toEqual([{ ref: 'test.log line 46 (vxid 2)', reason: 'incomplete group: the request line was never logged' }]);
    const beforeVcl = parse(block(2) + b1.slice(0, b1.indexOf('-   VCL_call')));
    expect(beforeVcl.requests.map(seqOf)).toEqual([2]);
    expect(beforeVcl.skipped[0]?.reason).toBe('incomplete group: its headers were not all logged');
  });

  it('a group varnishlog closed itself (VSL timeout, End synth) replays with a note when its headers are complete', () => {
    const b = block(2).replace(/-   End {12}\n/, '-   VSL            timeout\n-   End            synth\n');
    const t = parse(b);
    expect(t.requests).toHaveLength(1);
    expect(t.requests[0]?.notes.join(' ')).toMatch(/incomplete group/);
    expect(t.requests[0]?.recorded.status).toBe(200);
  });

  it('a restart: one request, replayed once, recorded status and outcome from the last request of the chain', () => {
    // Request 4 (seq 2) restarts into request 9004, a synth 404. varnishlog prints it at level 1 in the same block.
    const b = block(2)
      .replace(/-   End {12}\n/, '-   Link           req 9004 restart\n-   End            \n')
      .replace(/\n\n$/, '\n');
    const restarted = ['*   << Request  >> 9004      ', '-   Begin          req 4 restart', '-   ReqMethod      GET', '-   ReqURL         /elsewhere', '-   VCL_call       RECV', '-   VCL_return     synth', '-   VCL_call       SYNTH', '-   RespStatus     404', '-   End            ', '', ''].join('\n');
    const t = parse(b + restarted);
    expect(t.requests).toHaveLength(1);
    expect(t.requests[0]).toMatchObject({ url: '/news', recorded: { status: 404, outcome: 'synth' } });
    expect(t.requests[0]?.notes.join(' ')).toMatch(/restarted into request 9004/);
    expect(t.skipped).toEqual([]);
  });

  it('an ESI subrequest is listed as skipped (the target makes it), its parent replays', () => {
    const esi = ['**  << Request  >> 9010      ', '--  Begin          req 4 esi', '--  ReqMethod      GET', '--  ReqURL         /fragment', '--  VCL_call       RECV', '--  RespStatus     200', '--  End            ', '', ''].join('\n');
    const t = parse(block(2).replace(/\n\n$/, '\n') + esi);
    expect(t.requests.map((r) => r.url)).toEqual(['/news']);
    expect(t.skipped).toEqual([{ ref: 'test.log line 45 (vxid 9010)', reason: expect.stringMatching(/ESI subrequest of request 4/) }]);
  });

  it('interleaved groups (-g raw) and a request the recorder rejected as garbage', () => {
    const raw = [
      '         7 Begin          c req 6 rxreq',
      '         8 Begin          c req 6 rxreq',
      '         8 ReqMethod      c GET',
      '         7 Timestamp      c Start: 1795295118.500000 0.000000 0.000000',
      '         7 ReqMethod      c GET',
      '         8 ReqURL         c /b',
      '         7 ReqURL         c /a',
      '         8 Timestamp      c Start: 1795295118.400000 0.000000 0.000000',
      '         7 ReqProtocol    c HTTP/1.1',
      '         8 ReqProtocol    c HTTP/1.1',
      '         7 ReqHeader      c Host: x',
      '         8 ReqHeader      c Host: y',
      '         7 VCL_call       c RECV',
      '         8 VCL_call       c RECV',
      '         8 VCL_call       c MISS',
      '         7 Hit            c 3 10.0 10.0 0.0',
      '         7 RespStatus     c 200',
      '         8 RespStatus     c 200',
      '         9 Begin          c req 6 rxreq',
      '         9 HttpGarbage    c "GET%00"',
      '         9 RespStatus     c 400',
      '         9 End            c ',
      '         7 End            c ',
      '         8 End            c ',
      'this line is not varnishlog',
    ].join('\n');
    const t = parse(raw);
    expect(t.format).toBe('varnishlog-raw');
    expect(t.requests.map((r) => [r.url, r.recorded.outcome, header(r, 'Host')])).toEqual([
      ['/b', 'miss', 'y'],
      ['/a', 'hit', 'x'],
    ]);
    expect(t.skipped.map((s) => s.reason)).toEqual([expect.stringMatching(/not a varnishlog -g raw line/), expect.stringMatching(/HttpGarbage/)]);
  });

  it('records of a transaction whose Begin was missed are listed, not silently replayed or dropped', () => {
    const b = block(2).replace(/-   Begin {10}req 1 rxreq\n/, '');
    const t = parse(b);
    expect(t.requests).toEqual([]);
    expect(t.skipped[0]?.reason).toMatch(/no Begin record/);
  });

  it('an NDJSON log with a truncated line: the whole groups replay, the cut one is listed', () => {
    const good = '{"vxid":2,"type":"Request","records":[["Begin","req 1 rxreq"],["Timestamp","Start: 1795295118.500000 0.000000 0.000000"],["ReqMethod","GET"],["ReqURL","/a"],["ReqProtocol","HTTP/1.1"],["ReqHeader","host: x"],["VCL_call","RECV"],["VCL_call","MISS"],["RespStatus","200"],["End",""]],"children":[]}';
    const t = parse(`${good}\n${good.slice(0, 80)}\n`);
    expect(t.format).toBe('ndjson');
    expect(t.requests.map((r) => [r.url, r.recorded.status, r.recorded.outcome])).toEqual([['/a', 200, 'miss']]);
    expect(t.skipped).toEqual([{ ref: 'test.log line 2', reason: 'not a Sluice log group (truncated line?)' }]);
  });

  it('a file in no known format is refused with a one-line reason', () => {
    expect(() => parse('hello\nworld\n')).toThrow(TraceFormatError);
    expect(() => parse('hello\nworld\n')).toThrow(/not a trace Sluice can read.*"hello"/);
  });
});
