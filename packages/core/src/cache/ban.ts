import { ProxyError } from '../errors.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import { normaliseHost } from '../http/target.js';

/**
 * Bans (Varnish): an expression over stored objects, `obj.status`, `obj.http.<name>`, `req.url` and `req.http.host`
 * (the request that made the object), with `==`, `!=`, `~` (regex), `!~`, joined by `&&`:
 *
 *   req.url ~ ^/products/ && obj.http.content-type ~ "text/html"
 *   obj.status == 404
 *
 * Values are bare words or double-quoted strings (with \" and \\ escapes). Bans are not applied by walking the
 * cache: an object is tested against the bans newer than it when it is looked up, and a background sweeper walks
 * the rest a slice at a time, so a ban over a million objects never stalls the proxy.
 */
export type BanField = { kind: 'status' } | { kind: 'obj.http'; name: string } | { kind: 'req.url' } | { kind: 'req.http'; name: string };
export type BanOp = '==' | '!=' | '~' | '!~';

export interface BanCondition {
  field: BanField;
  op: BanOp;
  value: string;
  regex: RegExp | undefined;
}

export interface Ban {
  id: number;
  expr: string;
  conditions: BanCondition[];
  createdMs: number;
}

/** What a ban is tested against: an object's status and headers, and the URL and Host that made it. */
export interface BanTarget {
  status: number;
  headers: HeaderMap;
  url: string;
  host: string;
}

/** A ban expression that does not parse (the admin API answers 400 with its message). */
export class BanSyntaxError extends ProxyError {
  constructor(message: string) {
    super('CORE_ERR_BAN_SYNTAX', message, { source: 'downstream', status: 400 });
  }
}

/** Parses a ban expression; throws BanSyntaxError naming the problem. */
export function parseBan(expr: string): BanCondition[] {
  const out: BanCondition[] = [];
  const cur = { s: expr, i: 0 };
  for (;;) {
    skipSpace(cur);
    const f = banFieldAt(cur);
    skipSpace(cur);
    const om = /^(==|!=|!~|~)/.exec(cur.s.slice(cur.i));
    if (om === null) throw new BanSyntaxError(`expected ==, !=, ~ or !~ after ${f.text}`);
    const op = om[1] as BanOp;
    cur.i += op.length;
    skipSpace(cur);
    let value = banValueAt(cur, op);
    // Objects keep their request's Host normalised (http/target.ts): `req.http.host == Example.com:80` means them too.
    if (f.field.kind === 'req.http' && (op === '==' || op === '!=')) value = normaliseHost(value);
    if (f.field.kind === 'status' && (op === '~' || op === '!~' || !/^\d{3}$/.test(value))) {
      throw new BanSyntaxError('obj.status compares with == or != against a 3-digit status');
    }
    let regex: RegExp | undefined;
    if (op === '~' || op === '!~') {
      try {
        regex = new RegExp(value);
      } catch (e: unknown) {
        throw new BanSyntaxError(`invalid regular expression "${value}": ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    out.push({ field: f.field, op, value, regex });
    skipSpace(cur);
    if (cur.i >= cur.s.length) return out;
    if (cur.s.slice(cur.i, cur.i + 2) !== '&&') throw new BanSyntaxError(`expected && or the end at "${cur.s.slice(cur.i, cur.i + 20)}"`);
    cur.i += 2;
  }
}

/** A position in a ban expression being parsed. */
interface BanCursor {
  s: string;
  i: number;
}

function skipSpace(c: BanCursor): void {
  while (c.i < c.s.length && /\s/.test(c.s[c.i] as string)) c.i++;
}

/** The field a condition tests: obj.status, obj.http.NAME, req.url or req.http.host. */
function banFieldAt(c: BanCursor): { field: BanField; text: string } {
  const fm = /^(obj\.status|obj\.http\.[A-Za-z0-9!#$%&'*+.^_`|~-]+|req\.url|req\.http\.[A-Za-z0-9!#$%&'*+.^_`|~-]+)/.exec(c.s.slice(c.i));
  if (fm === null) throw new BanSyntaxError(`expected obj.status, obj.http.NAME, req.url or req.http.NAME at "${c.s.slice(c.i, c.i + 20)}"`);
  const f = fm[1] as string;
  c.i += f.length;
  if (f === 'obj.status') return { field: { kind: 'status' }, text: f };
  if (f === 'req.url') return { field: { kind: 'req.url' }, text: f };
  if (f.startsWith('obj.http.')) return { field: { kind: 'obj.http', name: f.slice(9).toLowerCase() }, text: f };
  const name = f.slice(9).toLowerCase();
  if (name !== 'host') throw new BanSyntaxError('only req.url and req.http.host are kept with objects');
  return { field: { kind: 'req.http', name }, text: f };
}

/** A value: a quoted string (backslash escapes) or a bare word up to whitespace or &. */
function banValueAt(c: BanCursor, op: BanOp): string {
  const s = c.s;
  if (s[c.i] !== '"') {
    const vm = /^[^\s&]+/.exec(s.slice(c.i));
    if (vm === null) throw new BanSyntaxError(`expected a value after ${op}`);
    c.i += vm[0].length;
    return vm[0];
  }
  c.i++;
  let value = '';
  while (c.i < s.length) {
    const ch = s[c.i] as string;
    if (ch === '\\' && c.i + 1 < s.length) {
      value += s[c.i + 1];
      c.i += 2;
      continue;
    }
    if (ch === '"') {
      c.i++;
      return value;
    }
    value += ch;
    c.i++;
  }
  throw new BanSyntaxError('unterminated quoted value');
}

function fieldValue(f: BanField, t: BanTarget): string | undefined {
  switch (f.kind) {
    case 'status':
      return String(t.status);
    case 'req.url':
      return t.url;
    case 'req.http':
      return t.host;
    case 'obj.http':
      return getHeader(t.headers, f.name);
  }
}

/** True when every condition holds (a missing header matches only != and !~). */
export function banMatches(conditions: readonly BanCondition[], t: BanTarget): boolean {
  for (const c of conditions) {
    const v = fieldValue(c.field, t);
    let ok: boolean;
    switch (c.op) {
      case '==':
        ok = v === c.value;
        break;
      case '!=':
        ok = v !== c.value;
        break;
      case '~':
        ok = v !== undefined && (c.regex as RegExp).test(v);
        break;
      case '!~':
        ok = v === undefined || !(c.regex as RegExp).test(v);
        break;
    }
    if (!ok) return false;
  }
  return true;
}
