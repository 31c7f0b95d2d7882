import type { Transaction, TxSink, TxView } from '@sluice/core';
import { CliError } from './errors.js';

/**
 * `--log ncsa --log-format FORMAT`: an access log line per client request in a format string, as `varnishncsa -F`
 * takes it (varnishncsa(1)), built from the request's log records. Without --log-format the line is varnishncsa's
 * default, `%h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i"`, which `sluice replay` reads back.
 *
 *   %b  response body bytes, `-` for none        %D  time to serve the request, microseconds
 *   %H  protocol                                  %h  client address
 *   %I  bytes received from the client            %{X}i  request header X (`-` when absent)
 *   %l  `-` (remote logname)                      %m  method
 *   %{X}o  response header X                      %O  bytes sent to the client
 *   %q  query string with its `?`, or empty       %r  request line (absolute URL, as varnishncsa)
 *   %s  status                                    %t  time received, [10/Oct/2000:13:55:36 +0000]
 *   %{X}t  time received as strftime(3) X, in UTC, with varnishncsa's %{sec} %{msec} %{usec} %{msec_frac} %{usec_frac}
 *          inside X, or as the whole of X (`%{msec_frac}t`, as Apache)
 *   %T  time to serve the request, seconds        %U  URL path without the query
 *   %u  Basic-auth user, `-`                      %%  a percent sign
 *   %{Varnish:handling}x  hit, miss, pass, pipe or synth     %{Varnish:hitmiss}x  hit or miss
 *   %{Varnish:side}x  c                           %{Varnish:vxid}x  the request's vxid
 *   %{Varnish:time_firstbyte}x  seconds from the start to the first response byte
 *   %{VSL:Tag}x  the value of the first record with that tag (`-` when none)
 * Escapes \n, \t, \" and \\ are honoured in the format string, as varnishncsa does.
 */

/** What a line can be built from: a request's records, read once. */
interface Fields {
  vxid: number;
  client: string;
  method: string | undefined;
  url: string | undefined;
  proto: string | undefined;
  status: string;
  req: Map<string, string>;
  resp: Map<string, string>;
  acct: string[];
  startSec: number | undefined;
  respSinceStartSec: number | undefined;
  handling: string;
  tags: Map<string, string>;
}

/** The fields of one request group (its root's records). */
function fieldsOf(t: TxView): Fields {
  const f: Fields = { vxid: t.vxid, client: '-', method: undefined, url: undefined, proto: undefined, status: '-', req: new Map(), resp: new Map(), acct: [], startSec: undefined, respSinceStartSec: undefined, handling: '-', tags: new Map() };
  for (const r of t.records) {
    if (!f.tags.has(r.tag)) f.tags.set(r.tag, r.value);
    switch (r.tag) {
      case 'ReqStart':
        f.client = r.value.split(' ')[0] || '-';
        break;
      case 'ReqMethod':
        f.method ??= r.value;
        break;
      case 'ReqURL':
        f.url ??= r.value;
        break;
      case 'ReqProtocol':
        f.proto ??= r.value;
        break;
      case 'ReqHeader':
      case 'RespHeader':
        header(r.tag === 'ReqHeader' ? f.req : f.resp, r.value, r.tag === 'RespHeader');
        break;
      case 'RespStatus':
        f.status = r.value;
        break;
      case 'ReqAcct':
        f.acct = r.value.split(' ');
        break;
      case 'Timestamp':
        timestamp(f, r.value);
        break;
      case 'VCL_call':
        f.handling = handlingOf(r.value, f.handling);
        break;
    }
  }
  return f;
}

function header(m: Map<string, string>, line: string, last: boolean): void {
  const i = line.indexOf(':');
  if (i <= 0) return;
  const name = line.slice(0, i).toLowerCase();
  if (last || !m.has(name)) m.set(name, line.slice(i + 1).trim());
}

function timestamp(f: Fields, v: string): void {
  const [label, abs, since] = v.split(' ');
  if (label === 'Start:') f.startSec = Number(abs);
  if (label === 'Resp:' || label === 'Process:') f.respSinceStartSec = Number(since);
}

/** VCL_call HIT/MISS/PASS/PIPE/SYNTH -> varnishncsa's handling; the last one wins (a restart, a synth after a miss). */
function handlingOf(call: string, before: string): string {
  switch (call) {
    case 'HIT':
      return 'hit';
    case 'MISS':
      return 'miss';
    case 'PASS':
      return 'pass';
    case 'PIPE':
      return 'pipe';
    case 'SYNTH':
      return 'synth';
    default:
      return before;
  }
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `10/Oct/2000:13:55:36 +0000` (UTC). */
function clf(sec: number | undefined): string {
  const d = new Date(sec === undefined || !Number.isFinite(sec) ? Date.now() : sec * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Quotes, backslashes and control characters escaped as varnishncsa does. */
function esc(s: string): string {
  return s.replace(/[\\"\x00-\x1f\x7f]/g, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

function userOf(auth: string | undefined): string {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth ?? '');
  if (m === null) return '-';
  const decoded = Buffer.from(m[1] as string, 'base64').toString('latin1');
  const user = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
  return user === '' ? '-' : esc(user);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const FULL_DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const FULL_MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const pad = (n: number, w = 2, c = '0'): string => String(n).padStart(w, c);

/** strftime(3) conversions, in UTC (as %t is): what each gives for a Date and the request's start in seconds. */
const STRFTIME: Record<string, (d: Date, sec: number) => string> = {
  a: (d) => DAYS[d.getUTCDay()] as string,
  A: (d) => FULL_DAYS[d.getUTCDay()] as string,
  b: (d) => MONTHS[d.getUTCMonth()] as string,
  h: (d) => MONTHS[d.getUTCMonth()] as string,
  B: (d) => FULL_MONTHS[d.getUTCMonth()] as string,
  C: (d) => pad(Math.floor(d.getUTCFullYear() / 100)),
  d: (d) => pad(d.getUTCDate()),
  D: (d) => `${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${pad(d.getUTCFullYear() % 100)}`,
  e: (d) => pad(d.getUTCDate(), 2, ' '),
  F: (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`,
  H: (d) => pad(d.getUTCHours()),
  I: (d) => pad(((d.getUTCHours() + 11) % 12) + 1),
  j: (d) => pad(Math.floor((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000) + 1, 3),
  m: (d) => pad(d.getUTCMonth() + 1),
  M: (d) => pad(d.getUTCMinutes()),
  n: () => '\n',
  p: (d) => (d.getUTCHours() < 12 ? 'AM' : 'PM'),
  R: (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`,
  s: (_d, sec) => String(Math.floor(sec)),
  S: (d) => pad(d.getUTCSeconds()),
  t: () => '\t',
  T: (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`,
  u: (d) => String(d.getUTCDay() === 0 ? 7 : d.getUTCDay()),
  w: (d) => String(d.getUTCDay()),
  y: (d) => pad(d.getUTCFullYear() % 100),
  Y: (d) => String(d.getUTCFullYear()),
  z: () => '+0000',
  Z: () => 'UTC',
  '%': () => '%',
};

/** varnishncsa's extensions inside %{...}t: seconds, milli- and microseconds since the epoch, and their fractions. */
const TIME_EXTENSIONS: Record<string, (sec: number) => string> = {
  sec: (sec) => String(Math.floor(sec)),
  msec: (sec) => String(Math.floor(sec * 1e3)),
  usec: (sec) => String(Math.floor(sec * 1e6)),
  msec_frac: (sec) => pad(Math.floor((sec * 1e3) % 1e3), 3),
  usec_frac: (sec) => pad(Math.floor((sec * 1e6) % 1e6), 6),
};

/**
 * `%{X}t`: the time the request was received, X as strftime(3) takes it (in UTC, like %t), with varnishncsa's
 * extensions `%{sec}`, `%{msec}`, `%{usec}`, `%{msec_frac}`, `%{usec_frac}`. An unknown conversion is a usage error.
 */
function compileStrftime(spec: string): (sec: number | undefined) => string {
  const parts: Array<string | ((d: Date, sec: number) => string)> = [];
  const re = /%\{([a-z_]+)\}|%(.)|([^%]+)|(%$)/gys;
  for (let m = re.exec(spec); m !== null; m = re.exec(spec)) {
    if (m[1] !== undefined) {
      const ext = TIME_EXTENSIONS[m[1]];
      if (ext === undefined) throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: %{${spec}}t: %{${m[1]}} is not a time extension (sec, msec, usec, msec_frac, usec_frac)`);
      parts.push((_d, sec) => ext(sec));
    } else if (m[2] !== undefined) {
      const conv = STRFTIME[m[2]];
      if (conv === undefined) throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: %{${spec}}t: %${m[2]} is not a supported strftime conversion`);
      parts.push(conv);
    } else if (m[3] !== undefined) parts.push(m[3]);
    else throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: %{${spec}}t ends with a lone %`);
    if (re.lastIndex >= spec.length) break;
  }
  return (start) => {
    const sec = start === undefined || !Number.isFinite(start) ? Date.now() / 1000 : start;
    const d = new Date(sec * 1000);
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : p(d, sec);
    return out;
  };
}

type Piece = string | ((f: Fields) => string);

const dash = (v: string | undefined): string => (v === undefined || v === '' ? '-' : esc(v));

function requestLine(f: Fields): string {
  if (f.method === undefined) return '-';
  const url = f.url ?? '/';
  const abs = url.startsWith('/') ? `http://${f.req.get('host') ?? 'localhost'}${url}` : url;
  return esc(`${f.method} ${abs} ${f.proto ?? 'HTTP/1.1'}`);
}

const SIMPLE: Record<string, (f: Fields) => string> = {
  b: (f) => (f.acct[4] === undefined || f.acct[4] === '0' ? '-' : f.acct[4]),
  D: (f) => (f.respSinceStartSec === undefined ? '-' : String(Math.round(f.respSinceStartSec * 1e6))),
  H: (f) => dash(f.proto),
  h: (f) => f.client,
  I: (f) => f.acct[2] ?? '-',
  l: () => '-',
  m: (f) => dash(f.method),
  O: (f) => f.acct[5] ?? '-',
  q: (f) => {
    const i = (f.url ?? '').indexOf('?');
    return i < 0 ? '' : esc((f.url ?? '').slice(i));
  },
  r: requestLine,
  s: (f) => f.status,
  t: (f) => `[${clf(f.startSec)}]`,
  T: (f) => (f.respSinceStartSec === undefined ? '-' : String(Math.floor(f.respSinceStartSec))),
  U: (f) => dash((f.url ?? '').split('?')[0]),
  u: (f) => userOf(f.req.get('authorization')),
};

function extended(name: string, kind: string): (f: Fields) => string {
  if (kind === 'i') return (f) => dash(f.req.get(name.toLowerCase()));
  if (kind === 'o') return (f) => dash(f.resp.get(name.toLowerCase()));
  if (kind === 't') {
    // Apache's and varnishncsa's whole-field forms (`%{msec_frac}t`), else a strftime string.
    const whole = TIME_EXTENSIONS[name];
    if (whole !== undefined) return (f) => whole(f.startSec ?? Date.now() / 1000);
    const fmt = compileStrftime(name);
    return (f) => fmt(f.startSec);
  }
  switch (name) {
    case 'Varnish:handling':
      return (f) => f.handling;
    case 'Varnish:hitmiss':
      return (f) => (f.handling === 'hit' ? 'hit' : 'miss');
    case 'Varnish:side':
      return () => 'c';
    case 'Varnish:vxid':
      return (f) => String(f.vxid);
    case 'Varnish:time_firstbyte':
      return (f) => (f.respSinceStartSec === undefined ? '-' : f.respSinceStartSec.toFixed(6));
  }
  if (name.startsWith('VSL:')) {
    const tag = name.slice(4);
    return (f) => dash(f.tags.get(tag));
  }
  throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: %{${name}}x is not known (Varnish:handling, Varnish:hitmiss, Varnish:side, Varnish:vxid, Varnish:time_firstbyte, VSL:Tag)`);
}

/** Compiles a varnishncsa -F format into a line builder; an unknown directive is a usage error naming it. */
export function compileNcsaFormat(format: string): (t: TxView) => string {
  const pieces: Piece[] = [];
  const re = /%\{((?:[^{}]|\{[^{}]*\})*)\}([iotx])|%([a-zA-Z%])|\\([nt"\\])|([^%\\]+|\\)/gy;
  let pos = 0;
  for (let m = re.exec(format); m !== null && pos < format.length; m = pos < format.length ? re.exec(format) : null) {
    pos = re.lastIndex;
    if (m[2] !== undefined) pieces.push(extended(m[1] as string, m[2]));
    else if (m[3] !== undefined) {
      if (m[3] === '%') pieces.push('%');
      else {
        const fn = SIMPLE[m[3]];
        if (fn === undefined) throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: %${m[3]} is not a varnishncsa format directive`);
        pieces.push(fn);
      }
    } else if (m[4] !== undefined) pieces.push(m[4] === 'n' ? '\n' : m[4] === 't' ? '\t' : m[4]);
    else pieces.push(m[5] as string);
  }
  if (pos < format.length) throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format: cannot read "${format.slice(pos)}" (a % must start a directive: %h, %{Referer}i, ...)`);
  return (t) => {
    const f = fieldsOf(t);
    let line = '';
    for (const p of pieces) line += typeof p === 'string' ? p : p(f);
    return `${line}\n`;
  };
}

/** varnishncsa's default format (NCSA combined), what --log ncsa writes without --log-format. */
export const NCSA_DEFAULT_FORMAT = '%h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i"';

/**
 * An access log with a custom format: one line per client request, buffered and written every 20 ms (or at 64 KiB)
 * as core's StreamSink does.
 */
export class NcsaFormatSink implements TxSink {
  private pending = '';
  private scheduled = false;

  constructor(
    private readonly out: { write(s: string): unknown },
    private readonly line: (t: TxView) => string,
  ) {}

  write(root: Transaction): void {
    this.pending += this.line(root);
    if (this.pending.length >= 64 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 20).unref();
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending === '') return;
    const chunk = this.pending;
    this.pending = '';
    this.out.write(chunk);
  }
}
