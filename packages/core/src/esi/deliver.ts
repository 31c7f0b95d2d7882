import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { CacheObject, ObjectReader } from '../cache/cache-object.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { BodyCursor } from '../deliver/cursor.js';
import { untilDeliverable, type TemplateDelivery } from '../deliver/deliver.js';
import { deliveryHeaders, NO_BODY_STATUS, writeHead } from '../deliver/head.js';
import { errorMessage, ProxyError } from '../errors.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import { logResp, logVcl } from '../txlog/records.js';
import { esiProgramOf, isEsiTemplate, type EsiOp } from './program.js';

/**
 * The delivery side of ESI (Varnish's VDP esi, cache_esi_deliver.c): a template's program is walked in order; its
 * bytes go out as they arrive, and each include is a subrequest through the whole machine (recv, cacheKey, lookup:
 * a hit or a miss of its own, cached on its own) whose body is written in its place before the walk goes on, so
 * the client gets the page in order and the bytes before an include before the include is even looked up.
 *
 * As Varnish: the response has no Content-Length (chunked, or close-delimited for HTTP/1.0), its ETag is weakened,
 * Range is ignored (the whole page, 200); includes nest up to `esiMaxDepth` (deeper ones are skipped with a
 * VCL_Error record); an include's body is delivered whatever its status unless `esiIncludeOnError`, which leaves out
 * includes answered other than 200/204 and cuts the page off at one without `onerror="continue"`. Unlike Varnish,
 * conditional requests get the whole page (the template's validators say nothing of its includes). An include that
 * fails mid-body ends there and the page goes on (Varnish closes that include and continues).
 *
 * The machine hands in `subrequest` (proxy/esi-request.ts): this room never imports the machine.
 */

/** An include's subrequest run to where it has an object to read ('deliver') or an answer of its own ('synth'). */
export type EsiSubrequest<Ctx> = (parent: Tx<Ctx>, inc: IncludeOp, level: number) => Promise<{ tx: Tx<Ctx>; stopped: Step }>;

export type IncludeOp = Extract<EsiOp, { kind: 'include' }>;

/** What one page's walk shares: the environment, the subrequest runner, the bytes written. */
interface Walk<Ctx> {
  env: ProxyEnv<Ctx>;
  subrequest: EsiSubrequest<Ctx>;
  bytes: number;
}

export function esiDelivery<Ctx>(env: ProxyEnv<Ctx>, subrequest: EsiSubrequest<Ctx>): TemplateDelivery<Ctx> {
  return { isTemplate: isEsiTemplate, deliver: (tx, obj, body) => deliverTemplate({ env, subrequest, bytes: 0 }, tx, obj, body) };
}

async function deliverTemplate<Ctx>(w: Walk<Ctx>, tx: Tx<Ctx>, obj: CacheObject, body: BodyCursor): Promise<Step> {
  const env = w.env;
  const headers = deliveryHeaders(obj, env.via);
  weakenEtag(headers);
  delete headers['accept-ranges'];
  writeHead(env, tx, obj, { status: obj.status, headers, length: undefined });
  const res = tx.res;
  if (tx.req.method === 'HEAD' || NO_BODY_STATUS(res.statusCode)) {
    res.end();
    return 'done';
  }
  res.flushHeaders();
  try {
    await walk(w, tx, obj, body, 0);
    res.end();
  } catch (e: unknown) {
    // The template failed mid-body, an include aborted the page, or the client left: cut the client off so it can
    // tell the body is incomplete (no terminating chunk).
    if (!tx.signal.aborted) env.log({ level: 'warn', event: 'esi-cut', message: errorMessage(e), url: tx.req.url });
    res.destroy();
  }
  return 'done';
}

/** RFC 9110 §8.8.1: the assembled page is not byte-for-byte the template, so its ETag can only be weak (as Varnish). */
function weakenEtag(headers: HeaderMap): void {
  const etag = headers['etag'];
  if (typeof etag === 'string' && etag.startsWith('"')) headers['etag'] = `W/${etag}`;
}

/**
 * Runs the program of `obj` (a template at include depth `level`) into the client's response. Read-ahead: while an
 * include is delivered, the next include already parsed is looked up (and fetched, on a miss), one at a time.
 */
async function walk<Ctx>(w: Walk<Ctx>, tx: Tx<Ctx>, obj: CacheObject, body: BodyCursor, level: number): Promise<void> {
  const program = esiProgramOf(obj);
  if (program === undefined) throw new ProxyError('CORE_ERR_INTERNAL', 'ESI delivery of an object without a program', { source: 'internal' });
  const ahead = new Map<IncludeOp, Promise<Started<Ctx>>>();
  let read = 0;
  try {
    for (let i = 0; ; i++) {
      // The program grows in the same step as the body: wait for the object to change until the op is there, reading
      // past what is settled meanwhile (an unstored template's fetch waits for this reader).
      while (i >= program.ops.length && !program.done && !obj.isFinal) {
        if (program.settled > read) {
          read = program.settled;
          for await (const _ of body.range(read - 1, read - 1));
        } else {
          await obj.waitChange(tx.signal);
        }
      }
      if (failed(obj)) throw fetchError(obj);
      const op = program.ops[i];
      if (op === undefined) break;
      if (op.kind === 'bytes') {
        await copy(w, tx, body.range(op.start, op.end - 1));
        read = op.end;
        continue;
      }
      const next = nextInclude(program.ops, i + 1);
      if (next !== undefined && level < w.env.esiMaxDepth && !ahead.has(next)) ahead.set(next, startInclude(w, tx, next, level));
      const started = ahead.get(op);
      ahead.delete(op);
      await include(w, tx, op, level, started);
    }
    // The body's own checks (its length against Content-Length) end the fetch after the parser has seen the end.
    await obj.waitState('finished', tx.signal);
    if (failed(obj)) throw fetchError(obj);
  } finally {
    for (const p of ahead.values()) void p.then(abandon, () => undefined);
  }
}

/** The first include at or after `from` among the ops parsed so far. */
function nextInclude(ops: readonly EsiOp[], from: number): IncludeOp | undefined {
  for (let k = from; k < ops.length; k++) {
    const o = ops[k] as EsiOp;
    if (o.kind === 'include') return o;
  }
  return undefined;
}

/** A reader on an object, owned by one include's delivery. */
interface Reader {
  obj: CacheObject;
  r: ObjectReader;
}

/** An include's subrequest done: where it stopped, and a reader on its object opened at once. */
interface Started<Ctx> {
  tx: Tx<Ctx>;
  stopped: Step;
  reader: Reader | undefined;
}

/**
 * Starts an include's subrequest. Its object gets a reader as soon as there is one: an unstored (pass) body is then
 * held to the transit buffer for it (not read into memory while an earlier include is delivered), and its fetch
 * stops when the reader closes unread.
 */
function startInclude<Ctx>(w: Walk<Ctx>, parent: Tx<Ctx>, op: IncludeOp, level: number): Promise<Started<Ctx>> {
  w.env.stats.esi_req++;
  const p = w.subrequest(parent, op, level + 1).then((s) => ({ ...s, reader: openReader(s.tx.obj, s.stopped) }));
  p.catch(() => undefined);
  return p;
}

/** A read-ahead include the page never reached (it was cut off): its reader closes, its log ends. */
function abandon<Ctx>(s: Started<Ctx>): void {
  s.reader?.obj.closeReader(s.reader.r);
  s.tx.log?.add('ReqAcct', '0 0 0 0 0 0');
  s.tx.log?.timestamp('Resp');
  s.tx.log?.end();
}

/** Read through a function: the state changes across awaits, which narrowing cannot see. */
const failed = (obj: CacheObject): boolean => obj.state === 'failed';

function fetchError(obj: CacheObject): Error {
  return obj.error ?? new ProxyError('CORE_ERR_UPSTREAM_BODY', 'template fetch failed', { source: 'upstream' });
}

async function copy<Ctx>(w: Walk<Ctx>, tx: Tx<Ctx>, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<void> {
  const res = tx.res;
  for await (const chunk of chunks) {
    w.bytes += chunk.length;
    w.env.stats.s_resp_bodybytes += chunk.length;
    if (!res.write(chunk)) await res.drained(tx.signal);
  }
}

/** One include at depth `level + 1`: its subrequest, then its body (or synth), logged as its own transaction. */
async function include<Ctx>(w: Walk<Ctx>, parent: Tx<Ctx>, op: IncludeOp, level: number, started: Promise<Started<Ctx>> | undefined): Promise<void> {
  const env = w.env;
  const abortOnError = env.esiIncludeOnError && !op.onErrorContinue;
  if (level >= env.esiMaxDepth) {
    parent.log?.add('VCL_Error', `ESI depth limit reached (param max_esi_depth = ${env.esiMaxDepth})`);
    if (abortOnError) throw new ProxyError('CORE_ERR_ESI_INCLUDE_FAILED', `ESI depth limit reached at ${op.url}`, { source: 'internal' });
    return;
  }
  const sub = await (started ?? startInclude(w, parent, op, level));
  const tx = sub.tx;
  const before = w.bytes;
  try {
    await includeBody(w, sub, level + 1, abortOnError);
  } finally {
    const n = w.bytes - before;
    tx.log?.add('ReqAcct', `0 0 0 0 ${n} ${n}`);
    tx.log?.timestamp('Resp');
    tx.log?.end();
  }
}

async function includeBody<Ctx>(w: Walk<Ctx>, sub: Started<Ctx>, level: number, abortOnError: boolean): Promise<void> {
  const tx = sub.tx;
  let step = sub.stopped;
  let reader = sub.reader;
  try {
    while (step === 'deliver') {
      const obj = tx.obj as CacheObject;
      const early = await untilDeliverable(w.env, tx, obj);
      if (early === undefined) break;
      step = early;
      if (tx.obj !== obj) {
        // stale-if-error: the stale object is delivered instead.
        reader?.obj.closeReader(reader.r);
        reader = openReader(tx.obj, step);
      }
    }
    if (step === 'done') return;
    if (step !== 'deliver') return await includeSynth(w, tx, abortOnError);
    const obj = tx.obj as CacheObject;
    if (refused(w.env, obj.status, abortOnError, tx)) return;
    if (tx.log !== undefined) logResp(tx.log, obj.status, deliveryHeaders(obj, w.env.via));
    if (reader === undefined || obj.bodyless || NO_BODY_STATUS(obj.status)) return;
    const body = new BodyCursor(obj.read(reader.r, tx.signal));
    try {
      if (isEsiTemplate(obj)) await walk(w, tx, obj, body, level);
      else if (isGzipped(obj)) await copyGunzipped(w, tx, body.range(0, Number.MAX_SAFE_INTEGER));
      else await copy(w, tx, body.range(0, Number.MAX_SAFE_INTEGER));
      if (failed(obj)) throw fetchError(obj);
    } catch (e: unknown) {
      if (tx.signal.aborted || abortOnError || isAbortPage(e)) throw e;
      // The include broke off mid-body: what was sent of it stays, the page goes on.
      w.env.log({ level: 'warn', event: 'esi-include-cut', message: errorMessage(e), url: tx.req.url });
    } finally {
      await body.close();
    }
  } finally {
    reader?.obj.closeReader(reader.r);
  }
}

/** A gzipped include (its origin ignored the include's missing Accept-Encoding) goes in decompressed, as Varnish does. */
const isGzipped = (obj: CacheObject): boolean => /^\s*(x-)?gzip\s*$/i.test(getHeader(obj.headers, 'content-encoding') ?? '');

async function copyGunzipped<Ctx>(w: Walk<Ctx>, tx: Tx<Ctx>, chunks: AsyncIterable<Buffer>): Promise<void> {
  await pipeline(Readable.from(chunks), zlib.createGunzip(), async (out: AsyncIterable<Buffer>) => copy(w, tx, out), { signal: tx.signal });
}

function openReader(obj: CacheObject | undefined, step: Step): Reader | undefined {
  if (step !== 'deliver' || obj === undefined || !obj.readable) return undefined;
  return { obj, r: obj.openReader() };
}

const isAbortPage = (e: unknown): boolean => e instanceof ProxyError && e.code === 'CORE_ERR_ESI_INCLUDE_FAILED';

/** With esiIncludeOnError, an include answered other than 200/204 is left out, or cuts the page off. */
function refused<Ctx>(env: ProxyEnv<Ctx>, status: number, abortOnError: boolean, tx: Tx<Ctx>): boolean {
  if (!env.esiIncludeOnError || status === 200 || status === 204) return false;
  if (abortOnError) throw new ProxyError('CORE_ERR_ESI_INCLUDE_FAILED', `ESI include ${tx.req.url} answered ${status}`, { source: 'upstream' });
  return true;
}

/** An include answered by policy or by a failed fetch: its synthetic body goes in its place (Varnish's vcl_synth). */
async function includeSynth<Ctx>(w: Walk<Ctx>, tx: Tx<Ctx>, abortOnError: boolean): Promise<void> {
  const synth = tx.synth ?? { status: 500 };
  if (refused(w.env, synth.status, abortOnError, tx)) return;
  w.env.stats.s_synth++;
  if (tx.log !== undefined) {
    logVcl(tx.log, 'SYNTH', 'deliver');
    logResp(tx.log, synth.status, synth.headers ?? {}, false);
  }
  const body = synth.body ?? `${synth.status} ${http.STATUS_CODES[synth.status] ?? ''}\n`;
  await copy(w, tx, [Buffer.from(body)]);
}
