import { getHeader, type HeaderMap } from '../http/headers.js';

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

export class BanSyntaxError extends Error {
  override readonly name = 'BanSyntaxError';
}

/** Parses a ban expression; throws BanSyntaxError naming the problem. */
export function parseBan(expr: string): BanCondition[] {
  const out: BanCondition[] = [];
  let i = 0;
  const s = expr;
  const skip = (): void => {
    while (i < s.length && /\s/.test(s[i] as string)) i++;
  };
  for (;;) {
    skip();
    const fm = /^(obj\.status|obj\.http\.[A-Za-z0-9!#$%&'*+.^_`|~-]+|req\.url|req\.http\.[A-Za-z0-9!#$%&'*+.^_`|~-]+)/.exec(s.slice(i));
    if (fm === null) throw new BanSyntaxError(`expected obj.status, obj.http.NAME, req.url or req.http.NAME at "${s.slice(i, i + 20)}"`);
    const f = fm[1] as string;
    i += f.length;
    let field: BanField;
    if (f === 'obj.status') field = { kind: 'status' };
    else if (f === 'req.url') field = { kind: 'req.url' };
    else if (f.startsWith('obj.http.')) field = { kind: 'obj.http', name: f.slice(9).toLowerCase() };
    else {
      const name = f.slice(9).toLowerCase();
      if (name !== 'host') throw new BanSyntaxError('only req.url and req.http.host are kept with objects');
      field = { kind: 'req.http', name };
    }
    skip();
    const om = /^(==|!=|!~|~)/.exec(s.slice(i));
    if (om === null) throw new BanSyntaxError(`expected ==, !=, ~ or !~ after ${f}`);
    const op = om[1] as BanOp;
    i += op.length;
    skip();
    let value = '';
    if (s[i] === '"') {
      i++;
      let closed = false;
      while (i < s.length) {
        const c = s[i] as string;
        if (c === '\\' && i + 1 < s.length) {
          value += s[i + 1];
          i += 2;
          continue;
        }
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        value += c;
        i++;
      }
      if (!closed) throw new BanSyntaxError('unterminated quoted value');
    } else {
      const vm = /^[^\s&]+/.exec(s.slice(i));
      if (vm === null) throw new BanSyntaxError(`expected a value after ${op}`);
      value = vm[0];
      i += value.length;
    }
    if (field.kind === 'status' && (op === '~' || op === '!~' || !/^\d{3}$/.test(value))) {
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
    out.push({ field, op, value, regex });
    skip();
    if (i >= s.length) return out;
    if (s.slice(i, i + 2) !== '&&') throw new BanSyntaxError(`expected && or the end at "${s.slice(i, i + 20)}"`);
    i += 2;
  }
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
