import { randomUUID } from 'node:crypto';
import type { CacheObject, ObjectReader } from '../cache/cache-object.js';
import { errorMessage, ProxyError } from '../errors.js';
import { notModifiedHeaders } from '../http/conditional.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { BodyCursor } from './cursor.js';
import { deliveryHeaders, fetchFailedSynth, NO_BODY_STATUS, sendStoredHit, writeHead } from './head.js';
import { planDelivery, plannedHead, type BodyRange, type DecidedPlan, type DeliveryPlan } from './plan.js';

/**
 * The deliver step: one client's copy of an object (CacheObject -> client). A complete stored object with a plain
 * request leaves in one write; everything else waits for what it needs of the object (headers, the whole body with
 * doStream off, the bytes a range starts at), plans the answer (full, 304, 206, multipart, 416) and streams it.
 * An ESI template is handed to `templates` (esi/) once its headers are decided.
 */
export function deliver<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, templates?: TemplateDelivery<Ctx>): Step | Promise<Step> {
  const obj = tx.obj as CacheObject;
  const chunks = obj.stored === true ? obj.completeChunks : undefined;
  if (chunks !== undefined && !needsPlan(tx, obj) && templates?.isTemplate(obj) !== true) {
    // Complete stored object, plain request: Content-Length, head and body in one write; no reader, no waiting.
    if (sendStoredHit(env, tx, obj, chunks)) return 'done';
    const instead = writeHead(env, tx, obj);
    if (instead === undefined) {
      endComplete(env, tx, obj, chunks);
      return 'done';
    }
    // The deliver hook restarted, answered with a synth, or is async.
    if (typeof instead === 'string') return instead;
    return instead.then((s) => {
      if (s !== undefined) return s;
      endComplete(env, tx, obj, chunks);
      return 'done';
    });
  }
  return deliverPlanned(env, tx, obj, templates);
}

/** ESI delivery, handed in by the machine: whether an object is a template, and its delivery from a body cursor. */
export interface TemplateDelivery<Ctx> {
  isTemplate(obj: CacheObject): boolean;
  deliver(tx: Tx<Ctx>, obj: CacheObject, body: BodyCursor): Promise<Step>;
}

/** Whether the request carries anything (a condition, a range) that may change what is delivered. */
function needsPlan<Ctx>(tx: Tx<Ctx>, obj: CacheObject): boolean {
  const h = tx.req.headers;
  return obj.status === 200 && (h['range'] !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined);
}

/**
 * Ends a response whose head is written with the whole body of a complete object: its chunks (one Buffer once
 * joined) leave under one cork, no reader, no copy. HEAD and bodiless statuses get no body.
 */
function endComplete<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, chunks: readonly Buffer[]): void {
  if (tx.req.method === 'HEAD' || NO_BODY_STATUS(obj.status)) {
    tx.res.end();
    return;
  }
  env.stats.s_resp_bodybytes += obj.length;
  tx.res.endChunks(chunks);
}

/** Delivery in general: wait for what is needed, plan, write the head, copy the body as it arrives. */
async function deliverPlanned<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, templates: TemplateDelivery<Ctx> | undefined): Promise<Step> {
  const reader = obj.readable ? obj.openReader() : undefined;
  // The cursor (an async generator over the reader) only for what needs one: ESI, ranges, multipart (issue 16).
  let cursor: BodyCursor | undefined;
  const cursorOf = (r: ObjectReader): BodyCursor => (cursor ??= new BodyCursor(obj.read(r, tx.abortWatch)));
  try {
    const early = await untilDeliverable(env, tx, obj);
    if (early !== undefined) return early;
    if (reader !== undefined && templates?.isTemplate(obj) === true) return await templates.deliver(tx, obj, cursorOf(reader));
    // Decided at once unless the plan must wait for bytes (a range past what arrived): no promise hop on a miss.
    const first = planFor(env, tx, obj);
    const plan = first.kind === 'wait' ? await decidePlan(env, tx, obj, first) : first;
    if (plan === undefined) return fetchFailedSynth(tx, obj);
    const head = plannedHead(plan, () => deliveryHeaders(obj, env.via), () => ({ ...notModifiedHeaders(obj.headers), via: env.via }));
    const written = writeHead(env, tx, obj, head.override);
    const instead = written instanceof Promise ? await written : written;
    if (instead !== undefined) return instead;
    const res = tx.res;
    if (tx.req.method === 'HEAD' || NO_BODY_STATUS(res.statusCode) || reader === undefined || head.ranges.length === 0) {
      res.end();
      return 'done';
    }
    const complete = obj.stored === true ? obj.completeChunks : undefined;
    if (plan.kind === 'full' && complete !== undefined) {
      endComplete(env, tx, obj, complete);
      return 'done';
    }
    // Headers go out at once only when no body byte is there yet; otherwise they leave with the first bytes.
    if (obj.length === 0 && !obj.isFinal) res.flushHeaders();
    try {
      const only = head.ranges.length === 1 && head.tail === undefined ? head.ranges[0] : undefined;
      if (only !== undefined && only.head === undefined && reader !== undefined) {
        // One plain range (the whole body, or a single 206): straight from the object's reader, no generators.
        await sendFromObject(env, tx, obj, reader, only.start, only.end, obj.stored === false);
      } else {
        const c = cursorOf(reader as ObjectReader);
        await sendBody(env, tx, head.ranges, head.tail, (from, to) => c.range(from, to), obj.stored === false);
      }
    } catch (e: unknown) {
      // The fetch failed mid-body (or the client left): cut the client off so it can tell the body is incomplete
      // (no terminating chunk, or fewer bytes than Content-Length).
      if (!tx.abortWatch.aborted) env.log({ level: 'warn', event: 'stream-cut', message: errorMessage(e), url: tx.req.url });
      res.destroy();
    }
    return 'done';
  } finally {
    if (cursor !== undefined) await cursor.close();
    if (reader !== undefined) obj.closeReader(reader);
  }
}

/**
 * Waits until the object can be delivered: its headers decided, the whole body with doStream off, enough of it for
 * adaptive streaming. Returns the step to take instead when there is nothing to deliver from it: the stale object
 * (stale-if-error) or a synth for a failed fetch.
 */
export async function untilDeliverable<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject): Promise<Step | undefined> {
  // waitState('stream') without its own promise: a miss's delivery waits here for the head (issue 16).
  while (obj.state === 'busy') await obj.waitChange(tx.abortWatch);
  if (tx.stale !== undefined && (obj.failedWithoutResponse || obj.status >= 500) && tx.stale.staleUsableOnError(env.now(), obj.failedWithoutResponse)) {
    // stale-if-error (RFC 5861): the origin failed; the stale object is served instead.
    env.stats.stale_if_error++;
    tx.obj = tx.stale;
    tx.stale = undefined;
    tx.status = { hit: true, detail: 'stale-if-error' };
    tx.outcome = 'hit';
    return 'deliver';
  }
  if (obj.failedWithoutResponse) return fetchFailedSynth(tx, obj);
  if (!obj.doStream && !obj.isFinal) {
    await obj.waitState('finished', tx.abortWatch);
    if (obj.state === 'failed') return fetchFailedSynth(tx, obj);
  }
  // Adaptive streaming: a body known to be small is delivered whole (one write, Content-Length); an unknown-length
  // body starts once streamMinBytes arrived or it ended.
  const minBytes = obj.streamMinBytes;
  if (minBytes > 0 && !obj.isFinal) {
    if (obj.expectedLength !== undefined) {
      if (obj.expectedLength < minBytes) await obj.waitState('finished', tx.abortWatch);
    } else {
      while (obj.length < minBytes && !obj.isFinal) await obj.waitChange(tx.abortWatch);
    }
    if (obj.state === 'failed') return fetchFailedSynth(tx, obj);
  }
  return undefined;
}

/** Plans, waiting for more of the object while the plan cannot be decided yet; undefined when the fetch failed. */
async function decidePlan<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, first: DeliveryPlan): Promise<DecidedPlan | undefined> {
  let plan: DeliveryPlan = first;
  while (plan.kind === 'wait') {
    if (obj.state === 'failed') return undefined;
    // An unstored object cannot be waited on: this delivery's reader, still at offset 0, holds its fetch to the
    // transit buffer, so the bytes the range needs would never come (found by bench/soak). The Range is ignored, as
    // RFC 9110 §14.2 allows: the whole body.
    if (obj.stored === false) return { kind: 'full' };
    await obj.waitChange(tx.abortWatch);
    plan = planFor(env, tx, obj);
  }
  return plan;
}

function planFor<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject): DeliveryPlan {
  return planDelivery(
    tx.req.method,
    tx.req.headers,
    { status: obj.status, headers: obj.headers, length: obj.length, complete: obj.state === 'finished', expectedLength: obj.expectedLength },
    { maxRanges: env.maxRanges, boundary: newBoundary },
  );
}

/** A multipart/byteranges boundary. */
export function newBoundary(): string {
  return `sluice-${randomUUID()}`;
}

/**
 * Body bytes a delivery queues in the client socket before it waits for 'drain' (the socket's own mark is 16 KiB,
 * less than one origin read): chunks already in memory leave several to a writev, and one 'drain' wakes the
 * delivery per this many bytes instead of per chunk (issue 16). It bounds what an unstored object's client holds
 * beyond the transit buffer.
 */
export const SEND_QUEUE_BYTES = 256 * 1024;

/** Ends the response when `sent` bytes are what it announced; otherwise logs the mismatch and cuts the client off. */
function endChecked<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, sent: number): void {
  const res = tx.res;
  const announced = res.announcedLength;
  if (announced !== undefined && announced !== sent) {
    env.log({ level: 'error', event: 'length-mismatch', message: `sent ${sent} of ${String(announced)} bytes`, url: tx.req.url });
    res.destroy();
    return;
  }
  res.end();
}

/** Counts body bytes sent from an unstored object (`transit_bodybytes`) and tells the proxy's owner (onTransitBytes). */
function countTransit<Ctx>(env: ProxyEnv<Ctx>, bytes: number): void {
  env.stats.transit_bodybytes += bytes;
  env.onTransitBytes?.(bytes);
}

/**
 * Writes bytes [start, end] (inclusive) of the object from `reader` (at offset 0, nothing read yet) and ends the
 * response: every chunk already there leaves in one synchronous pass (they go out as one writev under the response's
 * cork), and the delivery waits only when it has caught up with the fetch (one plain promise per wait, one abort
 * listener for the whole body) or when SEND_QUEUE_BYTES are queued in the socket. This is sendBody for one range
 * without its two generator layers (the object's read and the cursor's range), which cost several promises and
 * iterator results per chunk (issue 16). `transit` as for sendBody. Throws the fetch's error when the object failed, or the abort reason; a body
 * that does not add up to the length announced is cut off, never ended cleanly.
 */
async function sendFromObject<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, reader: ObjectReader, start: number, end: number, transit: boolean): Promise<void> {
  const res = tx.res;
  const signal = tx.abortWatch;
  let wake: (() => void) | undefined;
  const onAbort = (): void => wake?.();
  signal.addEventListener('abort', onAbort, { once: true });
  let sent = 0;
  try {
    for (;;) {
      signal.throwIfAborted();
      const at = reader.offset;
      const chunk = obj.nextChunk(reader);
      if (chunk === undefined) {
        if (obj.state === 'finished') break;
        if (obj.state === 'failed') throw obj.error ?? new ProxyError('CORE_ERR_UPSTREAM_BODY', 'fetch failed', { source: 'upstream' });
        await new Promise<void>((resolve) => {
          wake = resolve;
          obj.onNextChange(resolve);
        });
        wake = undefined;
        continue;
      }
      const chunkEnd = at + chunk.length;
      if (chunkEnd <= start) continue;
      const piece = at >= start && chunkEnd <= end + 1 ? chunk : chunk.subarray(Math.max(0, start - at), Math.min(chunk.length, end + 1 - at));
      sent += piece.length;
      env.stats.s_resp_bodybytes += piece.length;
      if (transit) countTransit(env, piece.length);
      const ok = res.write(piece);
      if (chunkEnd > end) break;
      if (!ok && res.queuedBytes >= SEND_QUEUE_BYTES) await res.drained(signal);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  endChecked(env, tx, sent);
}

/**
 * Writes a planned body: each range (after its multipart part head), then the multipart tail, from `bytes(from, to)`
 * (inclusive offsets), and ends the response. Throws what the source throws; a body that does not add up to the
 * length announced is cut off, never ended cleanly. A batch (an array: the slicer's cached segment) is written whole
 * before one wait for drain: its chunks leave in one writev, where one wait per chunk would cost a drain cycle (a
 * promise, a timer, a listener) per 64 KiB. `transit`: the body is an unstored object's, dropped once sent (counted in
 * `transit_bodybytes`, the trigger of the proxy's young-generation GC: see packages/cli/src/runtime-memory.ts).
 */
export async function sendBody<Ctx>(
  env: ProxyEnv<Ctx>,
  tx: Tx<Ctx>,
  ranges: readonly BodyRange[],
  tail: Buffer | undefined,
  bytes: (from: number, to: number) => AsyncIterable<Buffer | readonly Buffer[]>,
  transit = false,
): Promise<void> {
  const res = tx.res;
  let sent = 0;
  for (const r of ranges) {
    if (r.head !== undefined) {
      sent += r.head.length;
      if (!res.write(r.head)) await res.drained(tx.abortWatch);
    }
    for await (const piece of bytes(r.start, r.end)) {
      let ok: boolean;
      if (Buffer.isBuffer(piece)) {
        sent += piece.length;
        env.stats.s_resp_bodybytes += piece.length;
        if (transit) countTransit(env, piece.length);
        ok = res.write(piece);
      } else {
        ok = true;
        for (const chunk of piece) {
          sent += chunk.length;
          env.stats.s_resp_bodybytes += chunk.length;
          if (transit) countTransit(env, chunk.length);
          ok = res.write(chunk);
        }
      }
      if (!ok && res.queuedBytes >= SEND_QUEUE_BYTES) await res.drained(tx.abortWatch);
    }
  }
  if (tail !== undefined) {
    sent += tail.length;
    res.write(tail);
  }
  endChecked(env, tx, sent);
}
