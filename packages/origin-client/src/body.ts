import { Readable } from 'node:stream';
import { errors as undiciErrors, util as undiciUtil, type Dispatcher } from 'undici';
import { wireHeaders } from './wire-headers.js';

export type Headers = Record<string, string | string[]>;

/**
 * What tells a request that nobody wants the answer any more: an AbortSignal, or anything of its shape (core hands
 * its FetchAbort, which costs no EventTarget). Listeners are called without an event.
 */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A direct consumer of an origin body (issue 16): the chunks as undici's parser hands them over, no stream in
 * between. `data` returns false to stop the flow (the origin read pauses) until `OriginBody.flow()`. After `end` or
 * `error` nothing more is called.
 */
export interface BodySink {
  data(chunk: Buffer): boolean;
  end(): void;
  error(e: Error): void;
}

function noop(): void {}

/**
 * An origin response body, read through undici's dispatch handler (not `request()`'s RequestHandler, AsyncResource
 * and BodyReadable). Two ways to read it, chosen by the first consumer:
 * - `attach(sink)`: the chunks go straight to the sink from the parser's callback; backpressure by the sink's return
 *   value and `flow()` (the cache fetch's pump).
 * - as a Readable (read, pipe, 'data', resume, async iteration): everything else (ESI, slicer cuts, discards).
 * Until one of them starts, chunks that arrived are held (up to the stream's highWaterMark, then the origin read
 * pauses): nothing flows before the consumer reads. Destroying it before its end aborts the origin request (its
 * connection is closed, never reused with an unread body).
 *
 * Reused from branch s7-ingest (3faaca6, 89a2f7e), with the handler as one object (no closures per request).
 */
export class OriginBody extends Readable {
  /** Chunks that arrived before a consumer started, or while the sink was paused. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private mode: 0 | 1 | 2 = MODE_NONE;
  private sink: BodySink | undefined = undefined;
  /** The sink asked for a pause (its data returned false). */
  private sinkPaused = false;
  /** The origin's message ended (onComplete) or failed (onError). */
  private done = false;
  private failure: Error | undefined = undefined;
  /** We told undici's parser to pause (a false return from onData). */
  private parserPaused = false;
  private resumeQueued = false;
  private readonly exchange: Exchange;
  private over = false;
  private onOver: (() => void) | undefined = undefined;

  constructor(exchange: Exchange) {
    super();
    this.exchange = exchange;
    // An origin failure nobody listens for ends this exchange, never the process (as undici's own body).
    this.on('error', noop);
  }

  private finishOnce(): void {
    if (this.over) return;
    this.over = true;
    this.exchange.finish();
    const fn = this.onOver;
    this.onOver = undefined;
    fn?.();
  }

  /** Runs `fn` once the consumer is done with the body (its end read, an error, destroyed), now if it is. One slot. */
  whenFinished(fn: () => void): void {
    if (this.over) fn();
    else this.onOver = fn;
  }

  /** Whether the origin's message ended (every byte arrived) or failed. */
  get settled(): boolean {
    return this.done;
  }

  /** Whether attach() would take the body: nobody read it as a stream yet and it is not destroyed. */
  get attachable(): boolean {
    return this.mode === MODE_NONE && !this.destroyed;
  }

  /**
   * Takes the body as a sink's: what arrived so far is handed over now, synchronously, then each chunk as it comes.
   * False (nothing attached) when the body is read as a stream already or was destroyed.
   */
  attach(sink: BodySink): boolean {
    if (this.mode !== MODE_NONE || this.destroyed) return false;
    this.mode = MODE_SINK;
    this.sink = sink;
    this.drainToSink();
    return true;
  }

  /** Resumes a sink that paused (its data returned false). */
  flow(): void {
    if (this.mode !== MODE_SINK || !this.sinkPaused) return;
    this.sinkPaused = false;
    this.drainToSink();
  }

  private drainToSink(): void {
    const sink = this.sink as BodySink;
    while (this.held.length > 0) {
      if (this.sinkPaused || this.sink === undefined) return;
      const c = this.held.shift() as Buffer;
      this.heldBytes -= c.length;
      if (!sink.data(c)) this.sinkPaused = true;
    }
    if (this.sinkPaused || this.sink === undefined) return;
    if (this.done) this.finishSink();
    else this.resumeOrigin();
  }

  private finishSink(): void {
    const sink = this.sink;
    if (sink === undefined) return;
    this.sink = undefined;
    if (this.failure !== undefined) sink.error(this.failure);
    else sink.end();
    // Nothing more for a stream consumer: closed ('close' for anyone listening), the request is over.
    if (!this.destroyed) this.destroy();
  }

  /**
   * The origin read goes on, a tick later (as a Readable's resume): never inside the parser's own call, and a reader
   * that frees transit space chunk by chunk does not restart the parser (and its re-read of the socket's buffer) for
   * each one.
   */
  private resumeOrigin(): void {
    if (!this.parserPaused || this.done || this.resumeQueued) return;
    this.resumeQueued = true;
    process.nextTick(resumeLater, this);
  }

  /** @internal the nextTick half of resumeOrigin. */
  resumeNow(): void {
    this.resumeQueued = false;
    if (!this.parserPaused || this.done || this.sinkPaused) return;
    this.parserPaused = false;
    this.exchange.resumeParser();
  }

  // --- from undici's parser (through the Exchange) ---

  /** A chunk of the body; false pauses the origin read. */
  onData(chunk: Buffer): boolean {
    if (this.accept(chunk)) return true;
    this.parserPaused = true;
    return false;
  }

  /** False when the origin read should pause. */
  private accept(chunk: Buffer): boolean {
    if (this.mode === MODE_SINK) {
      if (!this.sinkPaused && this.held.length === 0 && this.sink !== undefined) {
        if (this.sink.data(chunk)) return true;
        this.sinkPaused = true;
        return false;
      }
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      return false;
    }
    if (this.mode === MODE_STREAM) return this.push(chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    return this.heldBytes < this.readableHighWaterMark;
  }

  onComplete(): void {
    this.done = true;
    if (this.mode === MODE_SINK) {
      if (!this.sinkPaused && this.held.length === 0) this.finishSink();
    } else if (this.mode === MODE_STREAM) this.push(null);
  }

  onError(e: Error): void {
    if (this.done) return;
    this.done = true;
    this.failure = e;
    this.held = [];
    this.heldBytes = 0;
    if (this.mode === MODE_SINK) this.finishSink();
    // As undici's own body: destroyed once the handlers queued before the error ran.
    else queueMicrotask(() => this.destroy(e));
  }

  // --- Readable ---

  override _read(): void {
    if (this.mode === MODE_NONE) {
      this.mode = MODE_STREAM;
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const c of held) this.push(c);
      if (this.done && this.failure === undefined) {
        this.push(null);
        return;
      }
    }
    if (this.mode === MODE_STREAM) this.resumeOrigin();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.held = [];
    this.heldBytes = 0;
    const sink = this.sink;
    this.sink = undefined;
    if (!this.done) {
      this.done = true;
      const reason = err ?? new undiciErrors.RequestAbortedError();
      this.failure = reason;
      this.exchange.abortRequest(reason);
      sink?.error(reason);
    }
    // The consumer is done with it (read to its end, failed, or dropped): the connection slot frees.
    this.finishOnce();
    cb(err);
  }

  /** Reads and drops the rest (up to 128 KiB, then the connection goes instead), as undici's body.dump(). */
  dump(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.destroyed) return resolve();
      let n = 0;
      this.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 131072) this.destroy();
      });
      this.once('close', () => resolve());
      this.resume();
    });
  }
}

const MODE_NONE = 0;
const MODE_SINK = 1;
const MODE_STREAM = 2;

function resumeLater(b: OriginBody): void {
  b.resumeNow();
}

export interface DispatchedResponse {
  statusCode: number;
  headers: Headers;
  body: OriginBody;
}

/** What dispatchRequest needs besides the request: where bytes are counted, interim responses, the end of it. */
export interface ExchangeHooks {
  /** A body chunk of `n` bytes arrived (backend byte counters). */
  count(n: number): void;
  onInfo?: ((i: { statusCode: number; headers: Headers }) => void) | undefined;
}

/**
 * One request's handler for `dispatcher.dispatch`, in undici's own (legacy) handler calls: undici 7 calls
 * onConnect/onHeaders/onData/onComplete/onError natively, and wraps a handler of the newer controller API
 * (onRequestStart...) in an UnwrapHandler that parses the head once more: this one needs no wrapper.
 */
class Exchange {
  private abortFn: ((e: Error) => void) | undefined = undefined;
  private resumeFn: () => void = noop;
  private pendingAbort: Error | undefined = undefined;
  body: OriginBody | undefined = undefined;
  private over = false;
  private resolve: ((r: DispatchedResponse) => void) | undefined;
  private reject: ((e: unknown) => void) | undefined;
  private readonly hooks: ExchangeHooks;
  private readonly signal: AbortLike;
  readonly reqBody: unknown;
  private readonly onAbort: () => void;

  constructor(hooks: ExchangeHooks, signal: AbortLike, reqBody: unknown, resolve: (r: DispatchedResponse) => void, reject: (e: unknown) => void) {
    this.hooks = hooks;
    this.signal = signal;
    this.reqBody = reqBody;
    this.resolve = resolve;
    this.reject = reject;
    this.onAbort = () => this.aborted();
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private aborted(): void {
    const reason = (this.signal.reason as Error | undefined) ?? new undiciErrors.RequestAbortedError();
    if (this.body !== undefined) this.body.destroy(reason);
    else if (this.abortFn !== undefined) this.abortFn(reason);
    else this.pendingAbort = reason;
  }

  finish(): void {
    if (this.over) return;
    this.over = true;
    this.signal.removeEventListener('abort', this.onAbort);
  }

  resumeParser(): void {
    this.resumeFn();
  }

  abortRequest(e: Error): void {
    this.abortFn?.(e);
  }

  /** The dispatch threw synchronously (undici refused the request). */
  refused(e: unknown): void {
    this.finish();
    destroyBody(this.reqBody, e as Error);
    const reject = this.reject;
    this.resolve = this.reject = undefined;
    reject?.(e);
  }

  // --- undici's handler calls ---

  onConnect(abort: (e?: Error) => void): void {
    this.abortFn = abort as (e: Error) => void;
    if (this.pendingAbort !== undefined) abort(this.pendingAbort);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const headers = headersOf(rawHeaders);
    if (statusCode < 200) {
      this.hooks.onInfo?.({ statusCode, headers });
      return true;
    }
    this.resumeFn = resume;
    const body = new OriginBody(this);
    this.body = body;
    const resolve = this.resolve;
    this.resolve = this.reject = undefined;
    resolve?.({ statusCode, headers, body });
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.hooks.count(chunk.length);
    return (this.body as OriginBody).onData(chunk);
  }

  onComplete(): void {
    if (this.body !== undefined) this.body.onComplete();
    else this.finish();
  }

  onError(e: Error): void {
    destroyBody(this.reqBody, e);
    if (this.body !== undefined) this.body.onError(e);
    else {
      this.finish();
      const reject = this.reject;
      this.resolve = this.reject = undefined;
      // As undici's request(): the rejection after the handlers queued before the error.
      if (reject !== undefined) queueMicrotask(() => reject(e));
    }
  }
}

type RawValue = Buffer | string | Array<Buffer | string>;
const latin1 = (b: Buffer | string): string => (typeof b === 'string' ? b : (b as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(0, b.length));

/**
 * The response's fields as undici's parseHeaders gives them (names lowercase, a repeated field's values in an array,
 * values latin1), but without a field named `__proto__` (dropped, as the copy request()'s path once made dropped it)
 * and with each value decoded by latin1Slice itself, not through Buffer#toString's argument handling (issue 16: the
 * parse was ~13k instructions of a warm miss's outbound stretch).
 */
export function headersOf(raw: ReadonlyArray<RawValue>): Headers {
  const out: Headers = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = undiciUtil.headerNameToString(raw[i] as string | Buffer);
    if (key === '__proto__') continue;
    const r = raw[i + 1] as RawValue;
    const v = Array.isArray(r) ? r.map(latin1) : latin1(r);
    const prev = out[key];
    // A name Object.prototype has (`constructor`) reads as defined: an own field only when the object has it.
    if (prev === undefined || !Object.hasOwn(out, key)) out[key] = v;
    else out[key] = (typeof prev === 'string' ? [prev] : prev).concat(v);
  }
  return out;
}

/**
 * One request through `dispatcher.dispatch` with a handler of our own (no RequestHandler, AsyncResource or
 * BodyReadable; no Readable event per chunk unless someone reads the body as a stream). Resolves at the final
 * response's head; interim responses go to `hooks.onInfo`. `signal` aborts the request (before the head: rejects
 * with its reason; after: the body fails with it).
 */
export function dispatchRequest(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions, signal: AbortLike, hooks: ExchangeHooks): Promise<DispatchedResponse> {
  return new Promise<DispatchedResponse>((resolve, reject) => {
    if (signal.aborted) {
      destroyBody(opts.body, signal.reason as Error);
      reject(signal.reason ?? new undiciErrors.RequestAbortedError());
      return;
    }
    const ex = new Exchange(hooks, signal, opts.body, resolve, reject);
    try {
      // Values a policy set with characters above U+00FF go out as UTF-8 (wire-headers.ts).
      const headers = opts.headers === undefined ? undefined : wireHeaders(opts.headers);
      if (headers !== undefined && headers !== opts.headers) opts = { ...opts, headers };
      dispatcher.dispatch(opts, ex as unknown as Dispatcher.DispatchHandler);
    } catch (e: unknown) {
      ex.refused(e);
    }
  });
}

function destroyBody(b: unknown, e: Error): void {
  if (b instanceof Readable && !b.destroyed) {
    b.on('error', noop);
    b.destroy(e);
  }
}
