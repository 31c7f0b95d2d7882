import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { startProxy, until, useCleanup } from '../test-support/harness.js';
import { FileSink } from './file-sink.js';
import { templateCounts } from './template.js';
import { formatNdjson, formatVarnishlog, MemorySink, TxLog, type TxView } from './txlog.js';

/**
 * Templates of a connection's log records (txlog/template.ts) on a real proxy: the log file, text and NDJSON, holds
 * for every exchange what the string formatters give for its records, while keep-alive connections repeat requests
 * (so templates are made and used) and change them between repeats: a header changed, HEAD, a 304, a new object
 * under the same key, a masked secret, another client address.
 */
const track = useCleanup();

/** A group read back as records only (no raw records, no templates): the formatters' reference path. */
const asRecords = (t: TxView): TxView => ({ vxid: t.vxid, type: t.type, records: t.records.map((r) => ({ ...r })), children: t.children.map(asRecords), endSeq: t.endSeq ?? 0 });

/** Sends `text` (pipelined requests, the last one closing) from `localAddress` and reads until the proxy closes. */
function exchange(port: number, text: string, localAddress: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    sock.on('data', () => {});
    sock.on('error', reject);
    sock.on('close', () => resolve());
    sock.write(text);
  });
}

const req = (method: string, url: string, lines: string[] = []): string => `${method} ${url} HTTP/1.1\r\nHost: t\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
const times = (n: number, s: string): string => s.repeat(n);

describe('a connection\'s log records rendered from templates (issue 16)', () => {
  it('writes each exchange as the string formatters do: changed header, HEAD, 304, new object, secrets, another client', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-template-'));
    track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    let version = 0;
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        version++;
        res.writeHead(200, { 'cache-control': 'max-age=60', etag: `"v${version}"`, 'content-length': '2' });
        res.end('ok');
      }),
    );
    const memory = new MemorySink();
    const textFile = path.join(dir, 'log.text');
    const jsonFile = path.join(dir, 'log.ndjson');
    const text = new FileSink(openSync(textFile, 'a'), 'text');
    const ndjson = new FileSink(openSync(jsonFile, 'a'), 'ndjson');
    const px = await startProxy(origin.url, { txlog: new TxLog([memory, text, ndjson]), purgeAllow: ['127.0.0.1'] });
    const before = { ...templateCounts };

    const GET = req('GET', '/o');
    const one =
      times(5, GET) +
      // A header value changed, then a header more.
      times(4, req('GET', '/o', ['X-A: 1'])) +
      times(4, req('GET', '/o', ['X-A: 2'])) +
      times(4, req('GET', '/o', ['X-A: 2', 'X-B: 3'])) +
      // HEAD, a 304, the plain GET again between them.
      times(4, req('HEAD', '/o')) +
      GET +
      times(4, req('GET', '/o', ['If-None-Match: "v1"'])) +
      GET +
      // Credentials (masked in the log), one changing.
      times(4, req('GET', '/o', ['Cookie: sid=abc; theme=dark', 'Authorization: Basic dXNlcjpwdw=='])) +
      times(2, req('GET', '/o', ['Cookie: sid=xyz; theme=dark', 'Authorization: Basic dXNlcjpwdw=='])) +
      // Two URLs in turn (two templates on one connection).
      times(4, req('GET', '/o') + req('GET', '/p')) +
      // A new object under the same key.
      req('PURGE', '/o') +
      times(4, GET) +
      req('GET', '/o', ['Connection: close']);
    await exchange(px.port, one, '127.0.0.1');
    // The same requests from another client address (its own connection, its own ReqStart).
    await exchange(px.port, times(5, GET) + req('GET', '/o', ['Connection: close']), '127.0.0.2');
    const sent = one.split('\r\n\r\n').length - 1 + 6;
    await until(() => memory.groups.length === sent && memory.sessions.length === 2);
    await px.close();
    await text.close();
    await ndjson.close();

    // Every group as the reference formatters give it, in the order the sinks got them.
    const want = memory.groups.map((g) => formatVarnishlog(asRecords(g))).join('');
    expect(readFileSync(textFile, 'utf8')).toBe(want);
    expect(readFileSync(jsonFile, 'utf8')).toBe(memory.groups.map((g) => formatNdjson(asRecords(g))).join(''));
    // What the exchanges were: 304s, HEADs, masked secrets, both client addresses, two objects.
    const all = memory.groups.map((g) => g.records);
    const values = (tag: string): string[] => all.flatMap((rs) => rs.filter((r) => r.tag === tag).map((r) => r.value));
    expect(values('RespStatus').filter((s) => s === '304')).toHaveLength(4);
    expect(values('ReqMethod').filter((m) => m === 'HEAD')).toHaveLength(4);
    expect(values('ReqHeader')).toContain('cookie: sid=***; theme=***');
    expect(values('ReqHeader').join('\n')).not.toMatch(/abc|xyz|dXNlcjpwdw/);
    expect(new Set(values('ReqStart').map((s) => s.split(' ')[0]))).toEqual(new Set(['127.0.0.1', '127.0.0.2']));
    expect(values('RespHeader').filter((h) => h.startsWith('etag: '))).toEqual(expect.arrayContaining(['etag: "v1"', 'etag: "v3"']));
    // Templates were made (one per format at least) and used for most of these exchanges (not vacuous).
    expect(templateCounts.compiled - before.compiled).toBeGreaterThanOrEqual(2);
    expect(templateCounts.rendered - before.rendered).toBeGreaterThan(40);
  });

  it('a hit\'s template survives Age ticking over a second boundary (the header block is a run slot): same bytes, no new template', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-template-age-'));
    track({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
        res.end('ok');
      }),
    );
    const memory = new MemorySink();
    const textFile = path.join(dir, 'log.text');
    const jsonFile = path.join(dir, 'log.ndjson');
    const text = new FileSink(openSync(textFile, 'a'), 'text');
    const ndjson = new FileSink(openSync(jsonFile, 'a'), 'ndjson');
    const px = await startProxy(origin.url, { txlog: new TxLog([memory, text, ndjson]) });
    const sock = net.connect({ port: px.port, host: '127.0.0.1' });
    track({ close: async () => void sock.destroy() });
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    const responses = (): number => got.split('HTTP/1.1 200 OK').length - 1;
    const GET = req('GET', '/aged');
    // The miss and the first hits: templates made for the hit's shape.
    sock.write(GET.repeat(6));
    await until(() => responses() === 6 && memory.groups.length === 6);
    const ageOf = (): string[] => memory.groups.map((g) => g.records.find((r) => r.tag === 'RespHeader' && r.value.startsWith('age: '))?.value ?? '');
    const firstAge = ageOf()[5];
    const before = { ...templateCounts };
    // Until Age has ticked (the object is older by a second): each round another three hits on the same connection.
    for (let round = 0; round < 50 && ageOf().at(-1) === firstAge; round++) {
      const n = memory.groups.length;
      sock.write(GET.repeat(3));
      await until(() => memory.groups.length === n + 3);
      if (ageOf().at(-1) === firstAge) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ageOf().at(-1)).not.toBe(firstAge);
    sock.end(req('GET', '/aged', ['Connection: close']));
    await until(() => memory.sessions.length === 1);
    await px.close();
    await text.close();
    await ndjson.close();
    expect(readFileSync(textFile, 'utf8')).toBe(memory.groups.map((g) => formatVarnishlog(asRecords(g))).join(''));
    expect(readFileSync(jsonFile, 'utf8')).toBe(memory.groups.map((g) => formatNdjson(asRecords(g))).join(''));
    // Every hit after the first ones, before and after the tick, from the templates made before it (the last request,
    // with its Connection header, has records of its own: its request is not the connection's repeated one).
    const hits = memory.groups.length - 6 - 1;
    expect(templateCounts.compiled - before.compiled).toBe(0);
    expect(templateCounts.rendered - before.rendered).toBe(2 * hits);
  });
});
