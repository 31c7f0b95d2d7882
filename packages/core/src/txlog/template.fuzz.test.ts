import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkProperty, fuzzTimeoutMs } from '../test-support/fuzz.js';
import { ByteWriter } from './bytes.js';
import { writeNdjson, writeVarnishlog } from './format-bytes.js';
import { RecordRun, statusRun, vclRun } from './raw.js';
import { templateCounts } from './template.js';
import { formatNdjson, formatVarnishlog, MemorySink, TxLog, type Transaction, type TxGrouping, type TxView } from './txlog.js';

/**
 * A connection's transactions rendered from templates (txlog/template.ts) against the string formatters (the
 * reference, txlog/format.ts): many requests on one connection, drawn from a few shapes (the same records, other
 * numbers: a keep-alive client's repeated hits) and their near misses (a number where a string was, a string changed,
 * a record more or less, another run, masking on or off), in every grouping, text and NDJSON. Whatever a template
 * holds, each transaction's bytes must be the formatter's for its own records.
 */

type Op =
  | { k: 'add'; tag: string; value: string }
  | { k: 'words'; tag: string; a: string | number; b: string | number; c: string | number }
  | { k: 'ts'; label: string }
  | { k: 'headers'; h: Record<string, string> }
  | { k: 'block'; block: string; stable: boolean }
  | { k: 'hit'; n: number[] }
  | { k: 'acct'; n: number[] }
  | { k: 'vcl'; call: string; ret: string }
  | { k: 'status'; status: number }
  // A run of its own records, none at times (a run with no records writes nothing: a template must not take it for one that has).
  | { k: 'run'; records: Array<[string, string]> };

const text = fc.oneof(fc.constantFrom('a', 'GET', '/static/1k', 'HTTP/1.1', 'caf\u00e9', 'x"y\\z', '\ud800', 'sid=1; t=2', ''), fc.string({ maxLength: 8 }));
const num = fc.oneof(fc.integer({ min: 0, max: 100000 }), fc.double({ min: -1e6, max: 1e13, noNaN: true }), fc.constantFrom(0, -0, 2 ** 31, 1e21, NaN, Infinity));
const tagName = fc.constantFrom('ReqHeader', 'RespHeader', 'Debug', 'Link', 'ReqStart');
const blockText = fc
  .array(fc.tuple(fc.constantFrom('age', 'cookie', 'set-cookie', 'authorization', 'via', 'x-a'), text), { maxLength: 4 })
  .map((ls) => ls.map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, '')}\r\n`).join(''));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('add' as const), tag: tagName, value: text }),
  fc.record({ k: fc.constant('words' as const), tag: tagName, a: fc.oneof(text, num), b: fc.oneof(text, num), c: fc.oneof(text, num) }),
  fc.record({ k: fc.constant('ts' as const), label: fc.constantFrom('Start', 'Req', 'Process', 'Resp') }),
  fc.record({ k: fc.constant('headers' as const), h: fc.dictionary(fc.constantFrom('host', 'cookie', 'authorization', 'x-a'), text, { maxKeys: 3 }) }),
  fc.record({ k: fc.constant('block' as const), block: blockText, stable: fc.boolean() }),
  fc.record({ k: fc.constant('hit' as const), n: fc.array(num, { minLength: 4, maxLength: 4 }) }),
  fc.record({ k: fc.constant('acct' as const), n: fc.array(num, { minLength: 4, maxLength: 4 }) }),
  fc.record({ k: fc.constant('vcl' as const), call: fc.constantFrom('RECV', 'HIT', 'DELIVER'), ret: fc.constantFrom('hash', 'deliver') }),
  fc.record({ k: fc.constant('status' as const), status: fc.constantFrom(200, 304, 404) }),
  fc.record({ k: fc.constant('run' as const), records: fc.array(fc.tuple(tagName, text), { maxLength: 2 }) }),
);

/** A shape's ops with other numbers (what a repeated request changes), from `fresh`, taken in turn. */
function renumber(ops: readonly Op[], fresh: readonly number[], at: { i: number }): Op[] {
  const next = (): number => fresh[at.i++ % fresh.length] as number;
  return ops.map((o) => {
    if (o.k === 'hit' || o.k === 'acct') return { ...o, n: o.n.map(() => next()) };
    if (o.k === 'words') return { ...o, a: typeof o.a === 'number' ? next() : o.a, b: typeof o.b === 'number' ? next() : o.b, c: typeof o.c === 'number' ? next() : o.c };
    return o;
  });
}

function apply(t: Transaction, o: Op): void {
  switch (o.k) {
    case 'add':
      return t.add(o.tag, o.value);
    case 'words':
      return t.words(o.tag, o.a, o.b, o.c);
    case 'ts':
      return t.timestamp(o.label);
    case 'headers':
      return t.headers('ReqHeader', o.h);
    case 'block':
      return o.stable ? t.headerBlock('RespHeader', o.block, o.block) : t.headerBlock('RespHeader', o.block);
    case 'hit':
      return t.hit(...(o.n as [number, number, number, number]));
    case 'acct':
      return t.acct(...(o.n as [number, number, number, number]));
    case 'vcl':
      return t.run(vclRun(o.call, o.ret));
    case 'status':
      return t.run(statusRun(o.status, o.status === 200 ? 'OK' : 'Other'));
    case 'run':
      return t.run(new RecordRun(o.records));
  }
}

/** Requests on one connection: each picks a shape (or a near miss of one) and fresh numbers. */
const scenario = fc.record({
  logSecrets: fc.boolean(),
  clock: fc.array(fc.oneof(fc.double({ min: 1e12, max: 4e12, noNaN: true }), num), { minLength: 1, maxLength: 9 }),
  shapes: fc.array(fc.array(op, { minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 3 }),
  fresh: fc.array(num, { minLength: 1, maxLength: 12 }),
  picks: fc.array(fc.tuple(fc.nat(), fc.option(fc.tuple(fc.nat(), op), { freq: 4 }), fc.boolean()), { minLength: 3, maxLength: 24 }),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

function build(s: Scenario): { roots: Transaction[]; session: Transaction } {
  let c = 0;
  const sink = new MemorySink();
  const log = new TxLog([sink], { now: () => s.clock[c++ % s.clock.length] as number, logSecrets: s.logSecrets });
  const sess = log.beginSession({ remoteAddress: '127.0.0.1', remotePort: 5000, localAddress: '127.0.0.1', localPort: 80, openedMs: 1 });
  const at = { i: 0 };
  for (const [pick, change, fetch] of s.picks) {
    const ops = renumber(s.shapes[pick % s.shapes.length] as Op[], s.fresh, at);
    // A near miss: one op replaced by another (a record changed, or the same kind with other strings).
    if (change !== null) ops[change[0] % ops.length] = change[1];
    const t = log.beginRequest(sess);
    t.timestamp('Start');
    for (const o of ops) apply(t, o);
    // Some groups with a fetch (a template is per transaction; the group's shape is not).
    if (fetch) {
      const be = log.beginBereq(t, 'fetch');
      be.timestamp('Start');
      be.end();
    }
    t.end();
  }
  sess.end();
  return { roots: sink.groups, session: sink.sessions[0] as Transaction };
}

function written(fn: (w: ByteWriter) => void): string {
  const w = new ByteWriter(16);
  fn(w);
  return w.buf.toString('latin1', 0, w.n);
}

const utf8 = (s: string): string => Buffer.from(s).toString('latin1');

describe('a connection\'s formatted records as templates (txlog/template.ts, issue 16)', () => {
  it(
    'renders each transaction as the formatters do, whatever the templates hold (text and NDJSON, every grouping)',
    async () => {
      const before = { ...templateCounts };
      await checkProperty(
        'txlog templates = string formatters',
        fc.property(scenario, (s) => {
          const { roots, session } = build(s);
          expect(roots).toHaveLength(s.picks.length);
          // The file sink's order: each group as it ends, in one format per sink (both here, as with a live tail).
          for (const g of roots) {
            expect(written((w) => writeVarnishlog(w, g))).toBe(utf8(formatVarnishlog(g)));
            expect(written((w) => writeNdjson(w, g))).toBe(utf8(formatNdjson(g)));
          }
          // -g vxid (each transaction at level 1) and -g session (the requests at level 2 under their session).
          const whole: TxView = { vxid: session.vxid, type: session.type, records: session.records, raw: session.raw, children: roots, endSeq: session.endSeq };
          for (const g of roots) expect(written((w) => writeVarnishlog(w, g, 'vxid'))).toBe(utf8(formatVarnishlog(g, 'vxid')));
          for (const grouping of ['session', 'request'] as TxGrouping[]) expect(written((w) => writeVarnishlog(w, whole, grouping))).toBe(utf8(formatVarnishlog(whole, grouping)));
        }),
        300,
      );
      // Not vacuous: templates were made and used.
      expect(templateCounts.compiled).toBeGreaterThan(before.compiled + 50);
      expect(templateCounts.rendered).toBeGreaterThan(before.rendered + 500);
    },
    fuzzTimeoutMs(300) * 3,
  );
});
