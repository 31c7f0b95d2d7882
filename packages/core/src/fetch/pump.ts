import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { CacheObject } from '../cache/cache-object.js';
import type { AbortLike } from '../upstream.js';

/** What the pump does with each chunk besides appending it: byte counts, store charges. */
export type OnChunk = (chunk: Buffer) => void;

/**
 * Copies an origin body into `obj` as it arrives, resolving at its end and rejecting with its error (a reset, a
 * premature close, the fetch's signal). Chunks are taken from 'data' events, synchronously: no promise per chunk,
 * and the body stream never fills up, so undici never pauses its parser and unshifts the rest of a socket read
 * (measured with async iteration: one pause and re-parse per 64 KiB, issue 16).
 *
 * An unstored object's fetch still stops at `transitBytes` ahead of the slowest reader: the stream is paused, and
 * resumed from the object's next change (a reader passed chunks, left, or the object was failed or finished).
 */
export function pump(obj: CacheObject, body: Readable, transitBytes: number, signal: AbortLike, onChunk: OnChunk): Promise<void> {
  if (isDirect(body)) return pumpDirect(obj, body, transitBytes, signal, onChunk);
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    /** Paused by the pump for transit space (not by anyone else). */
    let waitingSpace = false;
    const settle = (e: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      signal.removeEventListener('abort', onAbort);
      if (e === undefined) resolve();
      else reject(e instanceof Error ? e : new Error(String(e)));
    };
    const resumeWhenSpace = (): void => {
      if (settled) return;
      if (obj.overTransit(transitBytes) && !obj.isFinal) obj.onNextChange(resumeWhenSpace);
      else {
        waitingSpace = false;
        body.resume();
      }
    };
    const onData = (chunk: Buffer): void => {
      if (settled) return;
      try {
        obj.extend(chunk);
        onChunk(chunk);
      } catch (e: unknown) {
        // A chunk the object refuses (it failed meanwhile): the body stops here, the fetch fails with the error.
        body.destroy(e as Error);
        settle(e);
        return;
      }
      if (obj.overTransit(transitBytes)) {
        waitingSpace = true;
        body.pause();
        obj.onNextChange(resumeWhenSpace);
      }
    };
    const onAbort = (): void => {
      body.destroy(signal.reason as Error);
      settle(signal.reason ?? new Error('fetch aborted'));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    // What the origin sent with its head waits in the stream's buffer: taken now, synchronously, before the
    // deliveries the head woke run. They then find body bytes and send head and body in one write; found late (on
    // 'data', a tick later) a small miss went out in two writes, head then body (+0.5 ms TTFB in bench/ab.mjs).
    while (!settled && !waitingSpace) {
      const c = takeBuffered(body);
      if (c === null) break;
      onData(c);
    }
    if (settled) return;
    body.on('data', onData);
    // Flowing from here on (unless the bytes taken above filled the transit buffer: then from resumeWhenSpace).
    if (!waitingSpace) body.resume();
    finished(body, { writable: false }, (err) => settle(err ?? undefined));
  });
}

/** What the stream holds already, without waiting; null when it holds nothing. */
function takeBuffered(body: Readable): Buffer | null {
  if (body.readableLength === 0 || body.destroyed) return null;
  return body.read() as Buffer | null;
}

/**
 * A body that can hand its chunks straight to a consumer (the origin client's, read through undici's dispatch
 * handler: no stream events per chunk, issue 16). `attach` hands over what arrived already, synchronously, and false
 * when the body is read as a stream already; `data` returning false pauses the origin read until `flow()`.
 */
interface DirectBody extends Readable {
  readonly attachable: boolean;
  attach(sink: DirectSink): boolean;
  flow(): void;
}

interface DirectSink {
  data(chunk: Buffer): boolean;
  end(): void;
  error(e: Error): void;
}

function isDirect(body: Readable): body is DirectBody {
  const d = body as Partial<DirectBody>;
  return typeof d.attach === 'function' && typeof d.flow === 'function' && d.attachable === true;
}

/**
 * The pump over a direct body: the same contract as the stream pump (transit bound, abort, a refused chunk fails the
 * fetch, what came with the head taken synchronously) without a stream in between.
 */
function pumpDirect(obj: CacheObject, body: DirectBody, transitBytes: number, signal: AbortLike, onChunk: OnChunk): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (e: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (e === undefined) resolve();
      else reject(e instanceof Error ? e : new Error(String(e)));
    };
    const resumeWhenSpace = (): void => {
      if (settled) return;
      if (obj.overTransit(transitBytes) && !obj.isFinal) obj.onNextChange(resumeWhenSpace);
      else body.flow();
    };
    const sink: DirectSink = {
      data(chunk: Buffer): boolean {
        if (settled) return false;
        try {
          obj.extend(chunk);
          onChunk(chunk);
        } catch (e: unknown) {
          // A chunk the object refuses (it failed meanwhile): the body stops here, the fetch fails with the error.
          settle(e);
          body.destroy(e as Error);
          return false;
        }
        if (!obj.overTransit(transitBytes)) return true;
        obj.onNextChange(resumeWhenSpace);
        return false;
      },
      end(): void {
        settle(undefined);
      },
      error(e: Error): void {
        settle(e);
      },
    };
    const onAbort = (): void => {
      settle(signal.reason ?? new Error('fetch aborted'));
      body.destroy(signal.reason as Error);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    // What the origin sent with its head is handed over now, synchronously (as the stream pump's takeBuffered: head
    // and body of a small miss in one client write); the rest as the parser reads it.
    if (!body.attach(sink)) settle(new Error('origin body already read'));
  });
}
