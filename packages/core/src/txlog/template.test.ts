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
    // Templates were made and used for these exchanges (not vacuous).
    expect(templateCounts.compiled - before.compiled).toBeGreaterThan(8);
    expect(templateCounts.rendered - before.rendered).toBeGreaterThan(10);
  });
});
