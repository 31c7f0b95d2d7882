import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { FileSink } from './file-sink.js';
import { formatVarnishlog, MemorySink, StreamSink, TxLog, type Transaction, type TxGrouping, type TxSink, type TxView } from './txlog.js';

const track = useCleanup();

// The formatter before issue 16 (records as objects, one JSON.stringify a group): NDJSON must stay byte-identical.
const oldJson = (t: TxView): unknown => ({ vxid: t.vxid, type: t.type, records: t.records.map((r) => [r.tag, r.value]), children: t.children.map(oldJson) });

describe('the log file (FileSink: formatted as bytes in the proxy thread, written by libuv\'s pool)', () => {
  it('writes the same bytes as the in-thread sink, for text and NDJSON in every grouping, escapes and masking included', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-filesink-'));
    track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    const combos: Array<['text' | 'ndjson', TxGrouping]> = [];
    for (const f of ['text', 'ndjson'] as const) for (const g of ['request', 'vxid', 'session'] as const) combos.push([f, g]);
    const memory = new MemorySink();
    const inThread = combos.map(([f, g]) => {
      const sink = { text: '', stream: undefined as StreamSink | undefined };
      sink.stream = new StreamSink({ write: (s: string) => (sink.text += s) }, f, g);
      return sink;
    });
    const files = combos.map(([f, g], i) => {
      const file = path.join(dir, `log-${i}.${f}`);
      return { file, sink: new FileSink(openSync(file, 'a'), f, g) };
    });
    const sinks: TxSink[] = [memory, ...inThread.map((s) => s.stream as StreamSink), ...files.map((f) => f.sink)];
    const origin = track(
      await startScriptedOrigin((req, res) => {
        res.writeHead(200, { 'cache-control': req.url === '/nocache' ? 'no-store' : 'max-age=60', 'set-cookie': 'sid=abc; Path=/', 'x-odd': 'tab\there "q" back\\slash caf\u00e9' });
        res.end('body');
      }),
    );
    const px = await startProxy(origin.url, { txlog: new TxLog(sinks) });
    const agent = new Agent({ connections: 1 });
    const headers = { authorization: 'Basic dXNlcjpwdw==', cookie: 'a=1; b=2', 'x-note': 'tab\there "q" \\ caf\u00e9' };
    for (const p of ['/a', '/a', '/nocache', '/a?x="y"', '/a']) {
      const r = await request(`${px.url}${p}`, { headers, dispatcher: agent });
      await r.body.text();
    }
    await agent.close();
    await px.close();
    await until(() => memory.groups.length === 5 && memory.sessions.length === 1);
    for (const s of inThread) s.stream?.flush();
    for (const f of files) await f.sink.close();

    for (const [i, [format, grouping]] of combos.entries()) {
      const written = readFileSync(files[i]?.file as string, 'utf8');
      expect(written.length).toBeGreaterThan(1000);
      expect(written, `${format} -g ${grouping}`).toBe(inThread[i]?.text);
    }
    // Text, -g request: what the string formatter (txlog/format.ts, the reference) gives for the same groups; the
    // in-thread sink writes bytes too now (stdout), so it is no reference of its own.
    expect(readFileSync(files[0]?.file as string, 'utf8')).toBe(memory.groups.map((g: Transaction) => formatVarnishlog(g)).join(''));
    // NDJSON, -g request: line for line what the old formatter gave for the same groups.
    const lines = readFileSync(files[0 + 3]?.file as string, 'utf8').trimEnd().split('\n');
    expect(lines).toEqual(memory.groups.map((g: Transaction) => JSON.stringify(oldJson(g))));
    expect(lines.join('\n')).toContain('"ReqHeader","x-note: tab\\there \\"q\\" \\\\ caf\u00e9"');
    expect(lines.join('\n')).toContain('"ReqHeader","authorization: Basic ***"');
    expect(lines.join('\n')).toContain('"RespHeader","set-cookie: sid=***; Path=/"');
  });

  it('many groups: several writes, one at a time, in order; close writes the rest; the same bytes as the in-thread sink', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-filesink-'));
    track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    for (const format of ['text', 'ndjson'] as const) {
      const file = path.join(dir, `many.${format}`);
      const sink = new FileSink(openSync(file, 'a'), format);
      let expected = '';
      const ref = new StreamSink({ write: (s: string) => (expected += s) }, format);
      let now = 1_796_149_385_000;
      const log = new TxLog([sink, ref], { now: () => (now += 0.37) });
      // About 2.5 MB: ten 256 KiB writes, each started while groups keep coming.
      for (let i = 0; i < 5000; i++) {
        const t = log.beginRequest(0);
        t.timestamp('Start');
        t.add('ReqURL', `/object/${i}?q=${'x'.repeat(i % 200)}`);
        t.headers('ReqHeader', { host: 'example.com', 'x-n': String(i), cookie: `a=${i}` });
        t.headerBlock('RespHeader', `content-type: text/plain\r\nx-i: ${i}\r\nage: 1\r\n`, 'content-type: text/plain\r\n');
        t.acct(100, 0, 200, i);
        t.timestamp('Resp');
        t.end();
        if (i % 500 === 0) await new Promise((r) => setImmediate(r));
      }
      await sink.close();
      ref.flush();
      const got = readFileSync(file, 'utf8');
      expect(got.length).toBeGreaterThan(2_000_000);
      expect(got).toBe(expected);
    }
  });

  it('a file it cannot write to is reported once and the proxy keeps serving', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-filesink-'));
    track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    const file = path.join(dir, 'ro.log');
    openSync(file, 'a');
    const errors: string[] = [];
    // Opened read-only: every write fails (EBADF).
    const sink = new FileSink(openSync(file, 'r'), 'text', 'request', (code) => errors.push(code));
    track({ close: () => sink.close() });
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end('ok');
      }),
    );
    const px = track(await startProxy(origin.url, { txlog: new TxLog([sink]) }));
    for (let i = 0; i < 3; i++) {
      const r = await request(`${px.url}/x`);
      expect(await r.body.text()).toBe('ok');
      sink.flush();
      await new Promise((r) => setTimeout(r, 30));
    }
    await until(() => errors.length > 0);
    expect(errors).toEqual(['EBADF']);
    expect(readFileSync(file, 'utf8')).toBe('');
  });
});
