import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../test-support/run-cli.js';

/**
 * The exact bytes `sluice replay` puts on the wire. The target is a raw socket server that keeps every request's
 * bytes as received (no HTTP library between: nothing lower-cases, sorts, joins or adds a header), so these tests see
 * the header order and case, a request without Host, and the made-up body of the recorded size.
 */

interface RawTarget {
  url: string;
  /** Each request's bytes, head and body, as received (in the order they completed). */
  requests: Buffer[];
  close(): Promise<void>;
}

/** The end of the request at the start of `buf` (head + Content-Length or chunked body), or -1 while incomplete. */
function requestEnd(buf: Buffer): number {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return -1;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const bodyStart = headEnd + 4;
  if (/^transfer-encoding:[ \t]*chunked/im.test(head)) {
    const last = buf.indexOf('\r\n0\r\n\r\n', bodyStart - 2);
    return last < 0 ? -1 : last + 7;
  }
  const cl = /^content-length:[ \t]*(\d+)/im.exec(head);
  const end = bodyStart + (cl === null ? 0 : Number(cl[1]));
  return buf.length >= end ? end : -1;
}

async function rawTarget(): Promise<RawTarget> {
  const requests: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    let buf = Buffer.alloc(0);
    // A request cut short (a body shorter than its framing says) is kept as received when the client gives up.
    s.on('close', () => {
      sockets.delete(s);
      if (buf.length > 0) requests.push(buf);
    });
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let end = requestEnd(buf); end > 0; end = requestEnd(buf)) {
        requests.push(buf.subarray(0, end));
        buf = buf.subarray(end);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A Sluice NDJSON log group for one request (what `sluice proxy --log-format ndjson` writes). */
function group(vxid: number, at: number, method: string, url: string, protocol: string, headers: string[], acct?: string): string {
  const records: Array<[string, string]> = [
    ['Begin', 'req 1 rxreq'],
    ['Timestamp', `Start: ${at}.000000 0.000000 0.000000`],
    ['ReqMethod', method],
    ['ReqURL', url],
    ['ReqProtocol', protocol],
    ...headers.map((h): [string, string] => ['ReqHeader', h]),
    ['VCL_call', 'RECV'],
    ['RespStatus', '200'],
    ...(acct === undefined ? [] : [['ReqAcct', acct] as [string, string]]),
    ['End', ''],
  ];
  return JSON.stringify({ vxid, type: 'Request', records, children: [] });
}

describe('the bytes sluice replay sends', () => {
  it('header lines in their recorded order and case, no Host added, and a body of the recorded size', async ({ onTestFinished }) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-wire-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const target = await rawTarget();
    onTestFinished(() => target.close());
    const trace = path.join(dir, 'wire.ndjson');
    const lines = [
      // Out of alphabetical order, mixed case, a repeated field, a value with spaces and UTF-8.
      group(2, 1795295118, 'GET', '/a?x=1', 'HTTP/1.1', ['user-Agent: replay-test', 'X-Zed: 1', 'Host: origin.test', 'accept: */*', 'X-Dup: one', 'x-dup: two', 'X-Note: Zürich  →  東京']),
      // HTTP/1.1 without Host: replayed without Host (the target answers 400 to the real thing).
      group(3, 1795295119, 'GET', '/nohost', 'HTTP/1.1', ['User-Agent: replay-test']),
      // A body the log did not keep: made up at the logged size (ReqAcct field 2), Content-Length as recorded.
      group(4, 1795295120, 'POST', '/form', 'HTTP/1.1', ['Host: origin.test', 'Content-Type: text/plain', 'Content-Length: 7'], '90 7 97 100 2 102'),
      // A chunked body: the logged size in one chunk, then the last chunk.
      group(5, 1795295121, 'PUT', '/up', 'HTTP/1.1', ['Host: origin.test', 'Transfer-Encoding: chunked'], '80 5 85 100 2 102'),
    ];
    writeFileSync(trace, `${lines.join('\n')}\n`);
    const r = await runCli(['replay', trace, '--target', target.url, '--asap', '--json', '--timeout', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(target.requests.map((b) => b.toString('utf8'))).toEqual([
      'GET /a?x=1 HTTP/1.1\r\nuser-Agent: replay-test\r\nX-Zed: 1\r\nHost: origin.test\r\naccept: */*\r\nX-Dup: one\r\nx-dup: two\r\nX-Note: Zürich  →  東京\r\n\r\n',
      'GET /nohost HTTP/1.1\r\nUser-Agent: replay-test\r\n\r\n',
      'POST /form HTTP/1.1\r\nHost: origin.test\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nxxxxxxx',
      'PUT /up HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nxxxxx\r\n0\r\n\r\n',
    ]);
    // UTF-8 values go out as the client's UTF-8 bytes, not Latin-1.
    expect(target.requests[0]!.includes(Buffer.from('東京', 'utf8'))).toBe(true);
  });

  it('--host rewrites the recorded Host in place (same position and case) and still adds none', async ({ onTestFinished }) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-wire-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const target = await rawTarget();
    onTestFinished(() => target.close());
    const trace = path.join(dir, 'host.ndjson');
    const lines = [
      group(2, 1795295118, 'GET', '/b', 'HTTP/1.1', ['Accept: */*', 'host: origin.test', 'X-After: 1']),
      group(3, 1795295119, 'GET', '/nohost', 'HTTP/1.1', ['Accept: */*']),
    ];
    writeFileSync(trace, `${lines.join('\n')}\n`);
    const r = await runCli(['replay', trace, '--target', target.url, '--host', 'staging.test:8080', '--asap', '--json', '--timeout', '2']);
    expect(r.code).toBe(0);
    expect(target.requests.map((b) => b.toString('utf8'))).toEqual([
      'GET /b HTTP/1.1\r\nAccept: */*\r\nhost: staging.test:8080\r\nX-After: 1\r\n\r\n',
      'GET /nohost HTTP/1.1\r\nAccept: */*\r\n\r\n',
    ]);
  });
});
