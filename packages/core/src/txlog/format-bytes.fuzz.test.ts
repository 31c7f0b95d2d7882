import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkProperty, fuzzTimeoutMs } from '../test-support/fuzz.js';
import { ByteWriter } from './bytes.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';
import { seconds6, statusRun, vclRun } from './raw.js';
import { formatNdjson, formatVarnishlog, MemorySink, TxLog, type Transaction, type TxGrouping, type TxView } from './txlog.js';

/**
 * The log file's byte formatters (txlog/format-bytes.ts) against the string formatters they replace on that path
 * (txlog/format.ts): the same bytes for any records, any numbers, any text (escapes, non-ASCII, lone surrogates),
 * every grouping and nesting level.
 */

/** The bytes a writer holds, one character a byte (latin1: compared as strings, which is fast, byte for byte). */
function written(fn: (w: ByteWriter) => void, size = 8): string {
  const w = new ByteWriter(size);
  fn(w);
  return w.buf.toString('latin1', 0, w.n);
}

/** The bytes of `s` as UTF-8, one character a byte. */
const utf8 = (s: string): string => Buffer.from(s).toString('latin1');

/** Text that steers the writers into their branches: escapes, multi-byte characters, surrogates (paired and not). */
const nasty = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  // Long enough for the writers' bulk path (48 characters and more).
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 40, maxLength: 120 }) },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.constantFrom('a', 'Z', ' ', '"', '\\', '\n', '\r', '\r\n', '\t', '\b', '\f', '\x00', '\x1f', '\x7f', '\u0080', '\u00e9', '\u07ff', '\u0800', '\uffff', '\ud800', '\udbff', '\udc00', '\udfff', '\ud83d\ude00', ':', ': '), { maxLength: 20 })
      .map((xs) => xs.join('')),
  },
);

/** Numbers where digit writers go wrong: signs, fractions, powers of ten, 2^31, 2^53, NaN and the infinities. */
const nastyNumber = fc.oneof(
  fc.integer(),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  fc.double(),
  fc.constantFrom(0, -0, 9, 10, 99, 100, 999999, 1e6, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 1e9, 1e15 - 1, 1e15, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e21, 0.5, -0.5, 1e-7, 5e-7, NaN, Infinity, -Infinity),
);

/** An epoch time in ms as the clock gives it, or anything. */
const clockValue = fc.oneof({ weight: 4, arbitrary: fc.double({ min: 1e12, max: 4e12, noNaN: true }) }, { weight: 1, arbitrary: nastyNumber });

/** Header lines as the hit path's serialised block holds them (and some that are not: no CRLF at the end, empty lines). */
const headerName = fc.constantFrom('set-cookie', 'Cookie', 'authorization', 'proxy-authorization', 'age', 'cache-control', 'content-length', 'x-a', 'cookie2', 'COOKIE');
const blockLine = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(headerName, nasty).map(([n, v]) => `${n}: ${v.replace(/\r\n/g, '')}\r\n`) },
  { weight: 1, arbitrary: fc.constant('\r\n') },
  { weight: 1, arbitrary: nasty },
);
const block = fc.array(blockLine, { maxLength: 6 }).map((ls) => ls.join(''));

type Op =
  | { k: 'add'; tag: string; value: string }
  | { k: 'words'; tag: string; a: string | number; b: string | number; c: string | number }
  | { k: 'link'; a: string | number; b: string | number; c: string | number }
  | { k: 'ts'; label: string }
  | { k: 'headers'; tag: string; h: Record<string, string | string[]> }
  | { k: 'block'; stable: string; rest: string; useStable: boolean }
  | { k: 'hit'; n: number[] }
  | { k: 'acct'; n: number[] }
  | { k: 'vcl'; call: string; ret: string }
  | { k: 'status'; status: number };

const tag = fc.oneof(fc.constantFrom('ReqHeader', 'RespHeader', 'Debug', 'VCL_Log', 'Link', 'Timestamp'), nasty);
const wordVal = fc.oneof(nasty, nastyNumber);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('add' as const), tag, value: nasty }),
  fc.record({ k: fc.constant('words' as const), tag, a: wordVal, b: wordVal, c: wordVal }),
  // Links in a row (joined into one entry when their first and last words are the same: raw.ts's RAW_LINKS).
  fc.record({ k: fc.constant('link' as const), a: fc.oneof(fc.constantFrom('req', 'bereq'), wordVal), b: fc.oneof(nastyNumber, wordVal), c: fc.oneof(fc.constantFrom('rxreq', 'restart'), wordVal) }),
  fc.record({ k: fc.constant('ts' as const), label: fc.oneof(fc.constantFrom('Start', 'Req', 'Resp', 'Process'), nasty) }),
  fc.record({ k: fc.constant('headers' as const), tag, h: fc.dictionary(headerName, fc.oneof(nasty, fc.array(nasty, { maxLength: 3 })), { maxKeys: 4 }) }),
  fc.record({ k: fc.constant('block' as const), stable: block, rest: block, useStable: fc.boolean() }),
  fc.record({ k: fc.constant('hit' as const), n: fc.array(nastyNumber, { minLength: 4, maxLength: 4 }) }),
  fc.record({ k: fc.constant('acct' as const), n: fc.array(nastyNumber, { minLength: 4, maxLength: 4 }) }),
  fc.record({ k: fc.constant('vcl' as const), call: fc.constantFrom('RECV', 'HIT', 'DELIVER'), ret: fc.constantFrom('hash', 'deliver', 'pass') }),
  fc.record({ k: fc.constant('status' as const), status: fc.constantFrom(200, 206, 304, 404, 503, 599) }),
);

function apply(t: Transaction, o: Op): void {
  switch (o.k) {
    case 'add':
      return t.add(o.tag, o.value);
    case 'words':
      return t.words(o.tag, o.a, o.b, o.c);
    case 'link':
      return t.words('Link', o.a, o.b, o.c);
    case 'ts':
      return t.timestamp(o.label);
    case 'headers':
      return t.headers(o.tag, o.h);
    case 'block':
      // The hit path: the object's stored block (ending in CRLF) and what the hit adds after it.
      return o.useStable ? t.headerBlock('RespHeader', `${o.stable}\r\n${o.rest}`, `${o.stable}\r\n`) : t.headerBlock('RespHeader', `${o.stable}${o.rest}`);
    case 'hit':
      return t.hit(...(o.n as [number, number, number, number]));
    case 'acct':
      return t.acct(...(o.n as [number, number, number, number]));
    case 'vcl':
      return t.run(vclRun(o.call, o.ret));
    case 'status':
      return t.run(statusRun(o.status, o.status === 200 ? 'OK' : 'Other'));
  }
}

/** A group: a request with a fetch, a restart and nested subrequests (levels past 3), on a session. */
const scenario = fc.record({
  logSecrets: fc.boolean(),
  clock: fc.array(clockValue, { minLength: 1, maxLength: 8 }),
  ops: fc.array(fc.array(op, { maxLength: 8 }), { minLength: 6, maxLength: 6 }),
  depth: fc.integer({ min: 0, max: 5 }),
  restart: fc.boolean(),
  /** Requests before the one built here on the same session (the session's Link records in a row). */
  before: fc.integer({ min: 0, max: 3 }),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

function build(s: Scenario): { roots: Transaction[]; sessions: Transaction[] } {
  let i = 0;
  const sink = new MemorySink();
  const log = new TxLog([sink], { now: () => s.clock[i++ % s.clock.length] as number, logSecrets: s.logSecrets });
  const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: 1 });
  const ops = (t: Transaction, n: number): void => {
    for (const o of s.ops[n] ?? []) apply(t, o);
  };
  for (let b = 0; b < s.before; b++) log.beginRequest(sess).end();
  let req = log.beginRequest(sess);
  req.timestamp('Start');
  ops(req, 0);
  if (s.restart) {
    const next = log.beginRestart(req);
    req.end();
    req = next;
    ops(req, 1);
  }
  const be = log.beginBereq(req, 'fetch');
  ops(be, 2);
  let parent = req;
  const subs: Transaction[] = [];
  for (let d = 0; d < s.depth; d++) {
    const sub = log.beginSubrequest(parent, d % 2 === 0 ? 'slice' : 'esi');
    ops(sub, 3 + (d % 2));
    subs.push(sub);
    parent = sub;
  }
  for (const sub of subs.reverse()) sub.end();
  be.end();
  ops(req, 5);
  req.end();
  sess.end();
  return { roots: sink.groups, sessions: sink.sessions };
}

/** A group as read back from NDJSON: records only, nothing raw. */
const asRecords = (t: TxView): TxView => ({ vxid: t.vxid, type: t.type, records: t.records.map((r) => ({ ...r })), children: t.children.map(asRecords), endSeq: t.endSeq ?? 0 });

describe('the log file written as bytes (txlog/format-bytes.ts)', () => {
  it(
    'writes what formatVarnishlog and formatNdjson give, for any records, in every grouping',
    async () => {
      await checkProperty(
        'txlog byte formatters = string formatters',
        fc.property(scenario, (s) => {
          const { roots, sessions } = build(s);
          expect(roots.length).toBeGreaterThan(0);
          // -g session: the session with its requests as children, as SessionGroups hands it out.
          const sess = sessions[0] as Transaction;
          const session: TxView = { vxid: sess.vxid, type: sess.type, records: sess.records, raw: sess.raw, children: roots, endSeq: sess.endSeq };
          for (const v of [...roots, session, ...roots.map(asRecords)]) {
            for (const g of ['request', 'vxid', 'session'] as TxGrouping[]) {
              expect(written((w) => writeVarnishlog(w, v, g))).toBe(utf8(formatVarnishlog(v, g)));
            }
            expect(written((w) => writeNdjson(w, v))).toBe(utf8(formatNdjson(v)));
          }
        }),
        200,
      );
    },
    fuzzTimeoutMs(200) * 3,
  );

  it('writes strings as Buffer.from and JSON.stringify do, numbers as String, toFixed and seconds6 do', async () => {
    await checkProperty(
      'ByteWriter pieces',
      fc.property(nasty, nastyNumber, (s, x) => {
        expect(written((w) => w.str(s))).toBe(utf8(s));
        expect(written((w) => w.json(s))).toBe(utf8(JSON.stringify(s).slice(1, -1)));
        expect(written((w) => w.num(x))).toBe(String(x));
        expect(written((w) => w.fixed6(x))).toBe(x.toFixed(6));
        expect(written((w) => w.sec6(x))).toBe(seconds6(x));
      }),
      2000,
    );
  });

  it('writes a ttl with 6 decimals as toFixed does, halves and their neighbours included (the digit path below 1e6)', async () => {
    // Values a microsecond's half away from a rounding step, and their neighbouring doubles: where x * 1e6 is inexact.
    const half = fc
      .tuple(fc.integer({ min: -999_999_999_999, max: 999_999_999_999 }), fc.integer({ min: -3, max: 3 }))
      .map(([us, k]) => {
        let x = (us + 0.5) / 1e6;
        for (let i = 0; i < Math.abs(k); i++) x = k > 0 ? nextUp(x) : -nextUp(-x);
        return x;
      });
    const ttl = fc.oneof(half, fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }));
    await checkProperty(
      'ByteWriter fixed6',
      fc.property(ttl, (x) => {
        expect(written((w) => w.fixed6(x))).toBe(x.toFixed(6));
      }),
      20000,
    );
  });

  it('keeps writing past its first buffer (growth) and across the same second (the cached digits)', () => {
    const w = new ByteWriter(4);
    let want = '';
    for (let i = 0; i < 2000; i++) {
      const ms = 1_796_149_385_000 + i * 0.75;
      w.sec6(ms);
      w.byte(0x20);
      w.sec6(i * 3.3);
      w.str(' caf\u00e9 ');
      w.json('"\ud800"');
      w.byte(0x0a);
      want += `${seconds6(ms)} ${seconds6(i * 3.3)} caf\u00e9 \\"\\ud800\\"\n`;
    }
    expect(w.buf.toString('utf8', 0, w.n)).toBe(want);
  });
});

/** The next double above `x` (finite x). */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  const b = new Float64Array([x]);
  const u = new BigInt64Array(b.buffer);
  u[0] = (u[0] as bigint) + (x > 0 ? 1n : -1n);
  return b[0] as number;
}
