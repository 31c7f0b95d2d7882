/**
 * A fetch's abort (issue 16, a miss's first byte): the shape of an AbortController whose `signal` is itself
 * (`aborted`, `reason`, 'abort' listeners, `throwIfAborted`), without an AbortSignal. Node 20 builds an AbortSignal
 * (an EventTarget) lazily on the controller's first `.signal`, and that build is what costs: ~6 us of CPU, and each
 * 'abort' listener added and removed ~5 us more (micro-measured at load 11; bench/miss-prof.mjs shows
 * createAbortSignal among the miss's top self times). Every miss made one for its CacheObject.
 *
 * As an AbortSignal: listeners run once, in the order added, when `abort` is first called (later calls do nothing);
 * the same listener added twice runs once; a listener added after the abort never runs; one that throws does not stop
 * the others (its error is rethrown on the next tick, as EventTarget reports it: uncaught). The reason defaults to an
 * `AbortError` DOMException.
 */
/**
 * What a wait needs of an abort: an AbortSignal fits, and so does a FetchAbort. A client's delivery waits on its
 * response's FetchAbort (http1/response.ts `abortWatch`), so a miss builds no AbortSignal (issue 16, first byte).
 */
export interface AbortWatch {
  readonly aborted: boolean;
  readonly reason: unknown;
  throwIfAborted(): void;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class FetchAbort implements AbortWatch {
  aborted = false;
  reason: unknown = undefined;
  /** One listener (the common case: the origin request's), then a list. */
  private one: (() => void) | undefined = undefined;
  private more: Array<() => void> | undefined = undefined;

  /** Itself: code written for an AbortController (`controller.signal.aborted`) reads the same. */
  get signal(): this {
    return this;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    const one = this.one;
    const more = this.more;
    this.one = undefined;
    this.more = undefined;
    if (one !== undefined) run(one);
    if (more !== undefined) for (const fn of more) run(fn);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  addEventListener(_type: 'abort', fn: () => void, _opts?: { once?: boolean }): void {
    if (this.aborted || fn === this.one || this.more?.includes(fn) === true) return;
    if (this.one === undefined && this.more === undefined) this.one = fn;
    else (this.more ??= []).push(fn);
  }

  removeEventListener(_type: 'abort', fn: () => void): void {
    if (this.one === fn) {
      this.one = undefined;
      return;
    }
    const more = this.more;
    if (more === undefined) return;
    const i = more.indexOf(fn);
    if (i >= 0) more.splice(i, 1);
  }
}

function run(fn: () => void): void {
  try {
    fn();
  } catch (e: unknown) {
    process.nextTick(() => {
      throw e;
    });
  }
}
