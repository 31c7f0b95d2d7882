import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { request } from 'undici';
import { startProxy, useCleanup } from '../test-support/harness.js';
import { charsFrom, FUZZ_SEED, fuzzRuns } from '../test-support/fuzz.js';

/**
 * End-to-end fuzz over real sockets (issue 10): a real proxy in front of a real loopback origin gets a few hundred
 * mutated request heads and bodies on raw connections. Asserted: nothing throws past the connection (an
 * 'uncaughtException' listener records any crash, with the inputs in flight), each connection gets a response that
 * starts with a valid HTTP/1.1 status line and a complete head, or a close, or nothing while it still waits for
 * bytes a truncated request promised; and afterwards a normal GET still gets 200.
 *
 * NOTE (fuzz branch, before the crash fix in main): on this branch the test fails: request bodies that the proxy never
 * reads, chunked bodies with a framing error arriving with the head, or a client closing mid-body (this test closes
 * connections still waiting for promised bytes after an idle window) destroy the body Readable with an error nobody listens
 * to, and the process would exit. It passes once that fix lands; the inputs are kept as they are.
 */

const track = useCleanup();

/** Requests as a client might send them, before mutation. Most ask for Connection: close so the proxy ends them. */
const chunkLine = fc.tuple(fc.nat({ max: 40 }), fc.constantFrom('', ';a=b', ';x="y;z"', ' ', ';\x01', 'zz', '-5', '0x1'));
const base = fc.oneof(
  fc.tuple(fc.constantFrom('GET', 'HEAD', 'PURGE', 'OPTIONS'), fc.constantFrom('/static/1', '/r?x=1', '/big')).map(([m, p]) => `${m} ${p} HTTP/1.1\r\nHost: fuzz.test\r\nConnection: close\r\n\r\n`),
  fc.tuple(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT'), fc.nat({ max: 30 }), fc.nat({ max: 30 })).map(([m, cl, sent]) => `${m} /cl HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: ${cl}\r\nConnection: close\r\n\r\n${'x'.repeat(sent)}`),
  fc.tuple(fc.constantFrom('GET', 'POST'), fc.array(chunkLine, { maxLength: 3 })).map(([m, cs]) => {
    let body = '';
    for (const [n, ext] of cs) body += `${n.toString(16)}${ext}\r\n${'y'.repeat(n)}\r\n`;
    return `${m} /te HTTP/1.1\r\nHost: fuzz.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}0\r\n\r\n`;
  }),
  fc.constantFrom(
    'GET /e HTTP/1.1\r\nHost: fuzz.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: fuzz.test\r\n\r\nGET /b HTTP/1.1\r\nHost: fuzz.test\r\nConnection: close\r\n\r\n',
    'POST /p HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  ),
);

type Mutation = { op: 'flip'; at: number; bit: number } | { op: 'insert'; at: number; ch: string } | { op: 'delete'; at: number; n: number } | { op: 'truncate'; at: number };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), ch: charsFrom('\r\n\0 :;\t,\x7f') }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
);

function mutate(s: string, ms: readonly Mutation[]): Buffer {
  const b = [...Buffer.from(s, 'latin1')];
  for (const m of ms) {
    const at = m.at % (b.length + 1);
    if (m.op === 'flip') {
      if (at < b.length) b[at] = (b[at] as number) ^ (1 << m.bit);
    } else if (m.op === 'insert') b.splice(at, 0, m.ch.charCodeAt(0));
    else if (m.op === 'delete') b.splice(at, m.n);
    else b.length = Math.max(at, 1);
  }
  return Buffer.from(b);
}

/** An input: mutated bytes, sent in one write or split in two. */
const input = fc.record({ req: fc.tuple(base, fc.array(mutation, { maxLength: 3 })).map(([s, ms]) => mutate(s, ms)), split: fc.option(fc.nat()) });

type Outcome = { kind: 'response'; statusLine: string } | { kind: 'closed' } | { kind: 'waiting' };

/** Sends `req`, then watches the connection until it closes or stays quiet for `idleMs`. */
function exchange(port: number, req: Buffer, split: number | null, idleMs: number): Promise<{ outcome: Outcome; raw: Buffer }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(chunks);
      if (raw.length > 0) resolve({ outcome: { kind: 'response', statusLine: raw.toString('latin1', 0, Math.max(0, raw.indexOf('\r\n'))) }, raw });
      else resolve({ outcome: closed ? { kind: 'closed' } : { kind: 'waiting' }, raw });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), idleMs);
    };
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      arm();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => finish(true));
    const cut = split === null || req.length < 2 ? req.length : 1 + (split % (req.length - 1));
    sock.write(req.subarray(0, cut));
    if (cut < req.length) setImmediate(() => sock.write(req.subarray(cut)));
    arm();
  });
}

const STATUS_LINE = /^HTTP\/1\.1 [1-5]\d\d [\x20-\x7e]*$/;

describe('wire fuzz: mutated requests over raw sockets', () => {
  const crashes: Array<{ error: string; inFlight: string[] }> = [];
  const inFlight = new Set<string>();
  const onCrash = (e: unknown): void => {
    crashes.push({ error: String(e), inFlight: [...inFlight] });
  };
  afterEach(() => {
    process.off('uncaughtException', onCrash);
  });

  it('no input throws past its connection; every answer is a valid HTTP/1.1 response or a close; GET still works', async () => {
    process.on('uncaughtException', onCrash);
    const origin = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('cache-control', req.url === '/static/1' ? 'max-age=60' : 'no-store');
        res.end(req.url === '/big' ? 'z'.repeat(100_000) : 'ok');
      });
      req.on('error', () => res.destroy());
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    track({ close: () => new Promise<void>((r) => { origin.closeAllConnections(); origin.close(() => r()); }) });
    const px = track(await startProxy(`http://127.0.0.1:${(origin.address() as AddressInfo).port}`));

    const n = fuzzRuns(200);
    const inputs = fc.sample(input, { seed: FUZZ_SEED, numRuns: n });
    const results: Array<{ req: Buffer; outcome: Outcome; raw: Buffer }> = [];
    // 50 connections at a time, each watched until it closes or stays quiet for 1.5 s: long enough that a loaded
    // machine still gets its answers in (the count below needs them), short enough for a few rounds.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < inputs.length) {
        const { req, split } = inputs[next++] as (typeof inputs)[number];
        const key = JSON.stringify(req.toString('latin1'));
        inFlight.add(key);
        const r = await exchange(px.port, req, split, 1500);
        inFlight.delete(key);
        results.push({ req, ...r });
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));

    expect(crashes, JSON.stringify(crashes.slice(0, 5), null, 1)).toEqual([]);
    for (const r of results) {
      if (r.outcome.kind !== 'response') continue;
      const what = `request ${JSON.stringify(r.req.toString('latin1'))} got ${JSON.stringify(r.raw.toString('latin1').slice(0, 200))}`;
      expect(r.outcome.statusLine, what).toMatch(STATUS_LINE);
      expect(r.raw.includes('\r\n\r\n'), what).toBe(true);
    }
    // The fuzz reached the proxy's answers, not only its silence.
    expect(results.filter((r) => r.outcome.kind === 'response').length).toBeGreaterThan(n / 4);

    const ok = await request(`${px.url}/static/1`);
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe('ok');
  }, 90_000);
});
