import http from 'node:http';
import type { CacheObject } from '../cache/cache-object.js';
import type { LookupResult } from '../cache/store.js';
import { ttlLeftSec } from '../http/age.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import type { BadRequestInfo, ConnectionContext } from '../http1/server.js';
import { pushHeaders, RAW_WORDS, type RawRecords, RequestRunCache, runOf, statusRun, vclRun } from './raw.js';
import { maskRawHead } from './secrets.js';
import type { Transaction, TxLog } from './txlog.js';

/**
 * The record builders: what each step of the machine writes to the transaction log, in varnishlog's tags and order.
 * Kept here so the steps say "log the lookup" and the log's vocabulary lives in one room.
 */

/** Where a connection keeps its Session transaction. */
const SESSION_KEY = 'txlog.session';

/** The request's parent in the log: its connection's Session transaction, or 0 when there is none. */
export function sessionOf(c: ConnectionContext): Transaction | 0 {
  return (c.values.get(SESSION_KEY) as Transaction | undefined) ?? 0;
}

/** A Session transaction per client connection while the log is wanted; its requests link to it. */
export function logSessionOpened(txlog: TxLog | undefined, c: ConnectionContext): void {
  if (txlog === undefined || !txlog.enabled) return;
  const sess = txlog.beginSession(c);
  sess.timestamp('Start');
  c.values.set(SESSION_KEY, sess);
  c.onClose.add(() => {
    sess.add('SessClose', `${c.closeReason ?? 'REM_CLOSE'} ${((Date.now() - c.openedMs) / 1000).toFixed(3)}`);
    sess.end();
  });
}

/** The request line and headers as received (varnishlog's ReqMethod, ReqURL, ReqProtocol, ReqHeader). */
export function logRequest(t: Transaction, req: { method: string; url: string; httpVersion: string; headers: HeaderMap }): void {
  t.add('ReqMethod', req.method);
  t.add('ReqURL', req.url);
  t.add('ReqProtocol', `HTTP/${req.httpVersion}`);
  t.headers('ReqHeader', req.headers);
}

/**
 * A client request's opening records: timestamps (Start and Req at the moment the transaction began), ReqStart, the
 * request, and the X-Forwarded-For sent on. On a logged
 * connection, a request the same as the connection's last one (txlog/raw.ts's RequestRunCache) logs these records as
 * the run made of them the first time it recurred.
 */
export function logClientRequest(t: Transaction, c: ConnectionContext, remoteAddress: string, req: { method: string; url: string; httpVersion: string; headers: HeaderMap }): void {
  t.timestamp('Start');
  // The head was whole when the transaction began (the server hands over parsed requests): one clock read for both.
  t.timestampAtStart('Req');
  if (t.ended) return;
  const mask = !t.logSecrets;
  const sess = t.session;
  if (sess === undefined) return appendClientRequest(t.raw, mask, c.remotePort, remoteAddress, req);
  const cache = (sess.requestRuns ??= new RequestRunCache());
  if (cache.matches(remoteAddress, c.remotePort, req)) {
    t.run((cache.run ??= runOf((raw) => appendClientRequest(raw, mask, c.remotePort, remoteAddress, req))));
    return;
  }
  cache.remember(remoteAddress, c.remotePort, req);
  appendClientRequest(t.raw, mask, c.remotePort, remoteAddress, req);
}

/** logClientRequest's records after the timestamps, appended to `raw` (a transaction's, or a run's scratch). */
function appendClientRequest(raw: RawRecords, mask: boolean, port: number, remoteAddress: string, req: { method: string; url: string; httpVersion: string; headers: HeaderMap }): void {
  raw.push(RAW_WORDS, 'ReqStart', remoteAddress, port, 'a0');
  raw.push('ReqMethod', req.method, 'ReqURL', req.url, 'ReqProtocol', `HTTP/${req.httpVersion}`);
  pushHeaders(raw, 'ReqHeader', req.headers, mask);
  // As Varnish logs it: the X-Forwarded-For the proxy sends on, as the last header before policy runs.
  const xff = getHeader(req.headers, 'x-forwarded-for');
  if (xff !== undefined) raw.push('ReqUnset', `x-forwarded-for: ${xff}`);
  raw.push('ReqHeader', `X-Forwarded-For: ${xff === undefined ? remoteAddress : `${xff}, ${remoteAddress}`}`);
}

/**
 * A request the HTTP parser refused is a transaction too, as in Varnish: what arrived as `HttpGarbage` (credentials
 * masked, quoted, bytes outside printable ASCII as %XX, cut at 254), the refusal as `RespStatus`.
 */
export function logGarbage(txlog: TxLog | undefined, status: number, reason: string, info: BadRequestInfo): void {
  if (txlog === undefined || !txlog.enabled) return;
  const c = info.connection;
  const t = txlog.beginRequest(sessionOf(c));
  t.timestamp('Start');
  t.add('ReqStart', `${c.remoteAddress} ${c.remotePort} a0`);
  const received = txlog.logSecrets ? info.received : Buffer.from(maskRawHead(info.received.toString('latin1')), 'latin1');
  let garbage = '"';
  for (const b of received) garbage += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`;
  t.add('HttpGarbage', `${garbage.slice(0, 253)}"`);
  t.add('BogoHeader', reason);
  t.add('RespProtocol', 'HTTP/1.1');
  t.add('RespStatus', String(status));
  t.add('RespReason', info.reasonPhrase);
  const body = `${status} ${reason}\n`.length;
  t.add('ReqAcct', `${info.received.length} 0 ${info.received.length} ${info.responseBytes - body} ${body} ${info.responseBytes}`);
  t.timestamp('Resp');
  t.end();
}

/** The pairs every hit logs, taken without vclRun's lookups. */
const RECV_HASH = vclRun('RECV', 'hash');
const HIT_DELIVER = vclRun('HIT', 'deliver');
const DELIVER_DELIVER = vclRun('DELIVER', 'deliver');

/** A VCL_call / VCL_return pair. */
export function logVcl(t: Transaction | undefined, call: string, ret: string): void {
  if (t === undefined) return;
  if (ret === 'hash' && call === 'RECV') t.run(RECV_HASH);
  else if (ret === 'deliver' && call === 'DELIVER') t.run(DELIVER_DELIVER);
  else t.run(vclRun(call, ret));
}

/** Hit / HitMiss / HitPass and the VCL_call that follows, as varnishlog shows a lookup. */
export function logLookup(t: Transaction, r: LookupResult, nowMs: number, hitForMissSec: number): void {
  switch (r.kind) {
    case 'hit':
    case 'grace':
      t.hit(r.obj.fetchVxid, ttlLeftSec(r.obj, nowMs), r.obj.graceSec, r.obj.keepSec);
      t.run(HIT_DELIVER);
      break;
    case 'busy':
      t.timestamp('Waitinglist');
      break;
    case 'miss':
      logVcl(t, 'MISS', 'fetch');
      break;
    case 'hit-for-miss':
      t.add('HitMiss', `0 ${hitForMissSec.toFixed(6)}`);
      logVcl(t, 'MISS', 'fetch');
      break;
    case 'hit-for-pass':
      t.add('HitPass', `0 ${hitForMissSec.toFixed(6)}`);
      logVcl(t, 'PASS', 'fetch');
      break;
  }
}

/**
 * The response as sent; `deliver` = false for synth responses (vcl_synth runs instead of vcl_deliver). `stable`: for a
 * header block, a prefix of it that recurs as it is (the object's stored headers on the hit path), logged as one run.
 */
export function logResp(t: Transaction, status: number, headers: HeaderMap | string, deliver = true, stable?: string): void {
  t.run(statusRun(status, http.STATUS_CODES[status] ?? ''));
  if (typeof headers === 'string') t.headerBlock('RespHeader', headers, stable);
  else t.headers('RespHeader', headers);
  if (deliver) logVcl(t, 'DELIVER', 'deliver');
  t.timestamp('Process');
}

/** A client request's closing records: byte accounting and the Resp timestamp. */
/**
 * A restart (VSL_ChgId): the old transaction gets `Timestamp Restart`, `Link req N restart` and ends; the new one
 * begins with `Begin req <old> restart` and logs the request again (ReqStart, the request line and headers) as
 * cnt_recv does. Returns the new transaction.
 */
export function logRestart(txlog: TxLog, old: Transaction): Transaction {
  old.timestamp('Restart');
  const t = txlog.beginRestart(old);
  old.end();
  t.timestamp('Start');
  const start = old.records.find((r) => r.tag === 'ReqStart');
  if (start !== undefined) t.add('ReqStart', start.value);
  return t;
}

/** The request as the restarted transaction walks it again (cnt_recv logs it on every walk). */
export function logRestartedRequest(t: Transaction, req: { method: string; url: string; httpVersion: string; headers: HeaderMap }): void {
  logRequest(t, req);
}

export function logRequestEnd(t: Transaction, headBytes: number, bodyBytes: number, res: { headerBytes: number; bodyBytes: number }): void {
  t.acct(headBytes, bodyBytes, res.headerBytes, res.bodyBytes);
  t.timestamp('Resp');
  t.end();
}

/** Bytes of an HTTP/1.1 head: start line, header lines, blank line. */
export function headBytes(startLine: string, headers: HeaderMap): number {
  let n = Buffer.byteLength(startLine) + 4;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) n += k.length + 4 + Buffer.byteLength(one);
  }
  return n;
}

/** The backend request as sent to the origin client (BereqMethod ... Bereq timestamp); returns its head's bytes. */
export function logBereq(be: Transaction, bereq: { method: string; path: string; headers: HeaderMap }): number {
  be.add('BereqMethod', bereq.method);
  be.add('BereqURL', bereq.path);
  be.add('BereqProtocol', 'HTTP/1.1');
  be.headers('BereqHeader', bereq.headers);
  logVcl(be, 'BACKEND_FETCH', 'fetch');
  be.timestamp('Fetch');
  be.timestamp('Bereq');
  return headBytes(`${bereq.method} ${bereq.path} HTTP/1.1`, bereq.headers);
}

/** The backend response's status line and headers; returns its head's bytes. */
export function logBeresp(be: Transaction, status: number, headers: HeaderMap): number {
  const reason = http.STATUS_CODES[status] ?? '';
  be.timestamp('Beresp');
  be.add('BerespProtocol', 'HTTP/1.1');
  be.add('BerespStatus', String(status));
  be.add('BerespReason', reason);
  be.headers('BerespHeader', headers);
  return headBytes(`HTTP/1.1 ${status} ${reason}`, headers);
}

/** What vcl_backend_response decided: TTL, storage, the Process timestamp. */
export function logBerespDecided(be: Transaction, obj: CacheObject, b: { ttlSec: number; graceSec: number; keepSec: number; uncacheable: boolean }): void {
  be.add('TTL', `RFC ${b.ttlSec.toFixed(0)} ${b.graceSec} ${b.keepSec} ${Math.floor(obj.responseTimeMs / 1000)} ${b.uncacheable ? 'uncacheable' : 'cacheable'}`);
  logVcl(be, 'BACKEND_RESPONSE', 'deliver');
  be.add('Storage', obj.stored === true ? 'malloc s0' : 'malloc Transient');
  be.timestamp('Process');
}
