import type { TxView } from '@sluice/core';

/**
 * `sluice log -q QUERY`: varnishlog's query language (vsl-query(7)), evaluated here in the CLI process on the groups
 * the admin API sends, as varnishlog evaluates it in its own process and never in varnishd's workers.
 *
 *   query     := or
 *   or        := and ('or' and)*
 *   and       := not ('and' not)*
 *   not       := 'not' not | '(' query ')' | test
 *   test      := record [op operand]        (a record alone: true when such a record exists)
 *   record    := ['{' level ['+'|'-'] '}'] taglist [':' prefix] ['[' field ']']  |  'vxid'
 *   taglist   := tag (',' tag)*             (a tag may end in '*': `Req*`; case-insensitive)
 *   op        := '==' '!=' '<' '<=' '>' '>=' (numbers)  |  'eq' 'ne' (strings)  |  '~' '!~' (regular expressions)
 *
 * As in Varnish, a test is true when any record of the group satisfies it. `ReqHeader:Host` takes the records whose
 * value starts with `Host:` (case-insensitive) and compares what follows, trimmed. `[n]` compares the n-th
 * whitespace-separated field (1-based). A numeric comparison is false for a value that is not a number. Levels count
 * from 1 (the group's root), so `{2}BerespStatus >= 500` looks at backend fetches only.
 */
export type LogQuery =
  | { kind: 'and' | 'or'; left: LogQuery; right: LogQuery }
  | { kind: 'not'; inner: LogQuery }
  | { kind: 'test'; sel: Selector; op?: Op; operand?: string; num?: number; re?: RegExp };

type Op = '==' | '!=' | '<' | '<=' | '>' | '>=' | 'eq' | 'ne' | '~' | '!~';

interface Selector {
  vxid: boolean;
  tags: RegExp[];
  prefix?: string;
  field?: number;
  level?: { n: number; cmp: '=' | '+' | '-' };
}

/** A query that cannot be parsed; the message says where. */
export class QuerySyntaxError extends Error {}

const TOKEN = /\s*(\(|\)|==|!=|<=|>=|<|>|!~|~|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()=!<>~"']+)/y;

function tokenize(src: string): string[] {
  const out: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < src.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(src);
    if (m === null) {
      if (src.slice(at).trim() === '') break;
      throw new QuerySyntaxError(`unexpected "${src.slice(at).trim()}"`);
    }
    out.push(m[1] as string);
  }
  return out;
}

const OPS = new Set<string>(['==', '!=', '<', '<=', '>', '>=', 'eq', 'ne', '~', '!~']);

class Parser {
  private i = 0;
  constructor(private readonly toks: string[]) {}

  parse(): LogQuery {
    if (this.toks.length === 0) throw new QuerySyntaxError('empty query');
    const q = this.or();
    if (this.i < this.toks.length) throw new QuerySyntaxError(`unexpected "${this.toks[this.i] as string}"`);
    return q;
  }

  private peek(): string | undefined {
    return this.toks[this.i];
  }

  private or(): LogQuery {
    let left = this.and();
    while (this.peek()?.toLowerCase() === 'or') {
      this.i++;
      left = { kind: 'or', left, right: this.and() };
    }
    return left;
  }

  private and(): LogQuery {
    let left = this.not();
    while (this.peek()?.toLowerCase() === 'and') {
      this.i++;
      left = { kind: 'and', left, right: this.not() };
    }
    return left;
  }

  private not(): LogQuery {
    const t = this.peek();
    if (t === undefined) throw new QuerySyntaxError('the query ends where a test was expected');
    if (t.toLowerCase() === 'not') {
      this.i++;
      return { kind: 'not', inner: this.not() };
    }
    if (t === '(') {
      this.i++;
      const q = this.or();
      if (this.peek() !== ')') throw new QuerySyntaxError('missing ")"');
      this.i++;
      return q;
    }
    return this.test();
  }

  private test(): LogQuery {
    const sel = parseSelector(this.toks[this.i++] as string);
    const op = this.peek();
    if (op === undefined || !OPS.has(op)) return { kind: 'test', sel };
    this.i++;
    const raw = this.toks[this.i++];
    if (raw === undefined || raw === ')' || raw === '(') throw new QuerySyntaxError(`"${op}" needs an operand`);
    return operandTest(sel, op as Op, unquote(raw));
  }
}

function unquote(s: string): string {
  if ((s.startsWith('"') && s.endsWith('"')) || (s.startsWith("'") && s.endsWith("'"))) return s.slice(1, -1).replace(/\\(.)/g, '$1');
  return s;
}

function operandTest(sel: Selector, op: Op, operand: string): LogQuery {
  if (op === '~' || op === '!~') {
    try {
      return { kind: 'test', sel, op, operand, re: new RegExp(operand) };
    } catch {
      throw new QuerySyntaxError(`"${operand}" is not a regular expression`);
    }
  }
  if (op === 'eq' || op === 'ne') return { kind: 'test', sel, op, operand };
  const num = Number(operand);
  if (operand === '' || !Number.isFinite(num)) throw new QuerySyntaxError(`"${op}" compares numbers, and "${operand}" is not one (use eq/ne for strings)`);
  return { kind: 'test', sel, op, operand, num };
}

const SELECTOR = /^(?:\{(\d+)([+-]?)\})?([A-Za-z_*][\w*]*(?:,[A-Za-z_*][\w*]*)*)(?::([^[\]]+))?(?:\[(\d+)\])?$/;

function parseSelector(tok: string): Selector {
  if (tok.toLowerCase() === 'vxid') return { vxid: true, tags: [] };
  const m = SELECTOR.exec(tok);
  if (m === null) throw new QuerySyntaxError(`"${tok}" is not a record (Tag, Tag:Prefix, {level}Tag, Tag[field], vxid)`);
  const sel: Selector = { vxid: false, tags: (m[3] as string).split(',').map((t) => new RegExp(`^${t.replace(/\*/g, '.*')}$`, 'i')) };
  if (m[1] !== undefined) sel.level = { n: Number(m[1]), cmp: m[2] === '+' ? '+' : m[2] === '-' ? '-' : '=' };
  if (m[4] !== undefined) sel.prefix = m[4].toLowerCase();
  if (m[5] !== undefined) {
    sel.field = Number(m[5]);
    if (sel.field < 1) throw new QuerySyntaxError(`fields count from 1: "${tok}"`);
  }
  return sel;
}

/** Parses a query; throws QuerySyntaxError saying what is wrong. */
export function parseLogQuery(src: string): LogQuery {
  return new Parser(tokenize(src)).parse();
}

function levelOk(sel: Selector, level: number): boolean {
  if (sel.level === undefined) return true;
  const { n, cmp } = sel.level;
  return cmp === '=' ? level === n : cmp === '+' ? level >= n : level <= n;
}

/** The value a selector takes from one record, or undefined when the record is not selected. */
function selectValue(sel: Selector, tag: string, value: string): string | undefined {
  if (!sel.tags.some((t) => t.test(tag))) return undefined;
  let v = value;
  if (sel.prefix !== undefined) {
    const colon = v.indexOf(':');
    if (colon < 0 || v.slice(0, colon).trim().toLowerCase() !== sel.prefix) return undefined;
    v = v.slice(colon + 1).trim();
  }
  if (sel.field !== undefined) {
    const f = v.trim().split(/\s+/)[sel.field - 1];
    if (f === undefined) return undefined;
    v = f;
  }
  return v;
}

function compare(q: Extract<LogQuery, { kind: 'test' }>, v: string): boolean {
  switch (q.op) {
    case undefined:
      return true;
    case 'eq':
      return v === q.operand;
    case 'ne':
      return v !== q.operand;
    case '~':
      return (q.re as RegExp).test(v);
    case '!~':
      return !(q.re as RegExp).test(v);
    default: {
      if (v.trim() === '') return false;
      const n = Number(v);
      if (!Number.isFinite(n)) return false;
      const k = q.num as number;
      return q.op === '==' ? n === k : q.op === '!=' ? n !== k : q.op === '<' ? n < k : q.op === '<=' ? n <= k : q.op === '>' ? n > k : n >= k;
    }
  }
}

function testGroup(q: Extract<LogQuery, { kind: 'test' }>, t: TxView, level: number): boolean {
  if (levelOk(q.sel, level)) {
    if (q.sel.vxid) {
      if (compare(q, String(t.vxid))) return true;
    } else {
      for (const r of t.records) {
        const v = selectValue(q.sel, r.tag, r.value);
        if (v !== undefined && compare(q, v)) return true;
      }
    }
  }
  return t.children.some((c) => testGroup(q, c, level + 1));
}

/** Whether a group (its root at level 1, children one level deeper) satisfies the query. */
export function matchesQuery(q: LogQuery, group: TxView, level = 1): boolean {
  switch (q.kind) {
    case 'and':
      return matchesQuery(q.left, group, level) && matchesQuery(q.right, group, level);
    case 'or':
      return matchesQuery(q.left, group, level) || matchesQuery(q.right, group, level);
    case 'not':
      return !matchesQuery(q.inner, group, level);
    case 'test':
      return testGroup(q, group, level);
  }
}

/** `-g raw`: one line per record, `%10u %-14s %c %s` as varnishlog prints (c: client side, b: backend). */
export function formatRaw(t: TxView): string {
  const side = t.type === 'BeReq' ? 'b' : t.type === 'Request' || t.type === 'Session' ? 'c' : '-';
  let out = '';
  for (const r of t.records) out += `${String(t.vxid).padStart(10)} ${r.tag.padEnd(14)} ${side} ${r.value}\n`;
  return out;
}
