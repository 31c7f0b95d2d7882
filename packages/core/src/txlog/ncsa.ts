import type { TxView } from './txlog.js';

/**
 * The access log line of a client request, in varnishncsa's default format (NCSA combined):
 *   %h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i"
 * built from the request's log records, so what Sluice writes `sluice replay` reads (and so do the log tools that
 * read Apache's and nginx's logs). As varnishncsa: the request line holds an absolute URL with the Host (or
 * `localhost`), `%b` is the response body bytes or `-` for none, `%u` the Basic-auth user when credentials are logged.
 */
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function formatNcsa(t: TxView): string {
  let client = '-';
  let method: string | undefined;
  let url: string | undefined;
  let proto: string | undefined;
  let status = '-';
  let bodyBytes = '-';
  let startSec: number | undefined;
  const req = new Map<string, string>();
  for (const r of t.records) {
    switch (r.tag) {
      case 'ReqStart':
        client = r.value.split(' ')[0] || '-';
        break;
      case 'ReqMethod':
        method ??= r.value;
        break;
      case 'ReqURL':
        url ??= r.value;
        break;
      case 'ReqProtocol':
        proto ??= r.value;
        break;
      case 'ReqHeader': {
        const i = r.value.indexOf(':');
        const name = r.value.slice(0, i).toLowerCase();
        if (i > 0 && !req.has(name)) req.set(name, r.value.slice(i + 1).trim());
        break;
      }
      case 'RespStatus':
        status = r.value;
        break;
      case 'ReqAcct': {
        const b = r.value.split(' ')[4];
        bodyBytes = b === undefined || b === '0' ? '-' : b;
        break;
      }
      case 'Timestamp':
        if (r.value.startsWith('Start: ')) startSec = Number(r.value.slice(7).split(' ')[0]);
        break;
    }
  }
  const line = method === undefined ? '-' : `${method} ${absolute(url ?? '/', req.get('host'))} ${proto ?? 'HTTP/1.1'}`;
  return `${client} - ${userOf(req.get('authorization'))} [${clf(startSec)}] "${escape(line)}" ${status} ${bodyBytes} "${escape(req.get('referer') ?? '-')}" "${escape(req.get('user-agent') ?? '-')}"\n`;
}

function absolute(url: string, host: string | undefined): string {
  return url.startsWith('/') ? `http://${host ?? 'localhost'}${url}` : url;
}

/** The user of `Authorization: Basic ...`, or `-` (masked credentials name no user). */
function userOf(auth: string | undefined): string {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth ?? '');
  if (m === null) return '-';
  const decoded = Buffer.from(m[1] as string, 'base64').toString('latin1');
  const user = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
  return user === '' ? '-' : escape(user);
}

/** `[10/Oct/2000:13:55:36 +0000]` (UTC). */
function clf(sec: number | undefined): string {
  const d = new Date(sec === undefined || !Number.isFinite(sec) ? Date.now() : sec * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Quotes, backslashes and control characters escaped as varnishncsa does (`\"`, `\\`, `\xNN`). */
function escape(s: string): string {
  return s.replace(/[\\"\x00-\x1f\x7f]/g, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}
