/**
 * The request-body clock: a client must keep its body coming. Two limits, as nginx's client_body_timeout and
 * Apache's mod_reqtimeout MinRate:
 *   idle      no body byte for `idleMs` while we are waiting for the client;
 *   min rate  fewer than `minBytesPerSec` on average over each window of `windowMs`.
 * Time during which the proxy itself is not reading (the origin is slow to take the body: backpressure) does not
 * count against the client. One timer per body still arriving, stopped when it ends.
 */
export interface BodyClockOptions {
  /** Longest wait for the next body byte, ms (default 20 s). */
  idleMs: number;
  /** Slowest average body rate accepted, bytes per second (default 500; 0 turns it off). */
  minBytesPerSec: number;
  /** Window over which the rate is measured, ms (default 10 s). */
  windowMs: number;
}

export const DEFAULT_BODY_CLOCK: BodyClockOptions = { idleMs: 20_000, minBytesPerSec: 500, windowMs: 10_000 };

export class BodyClock {
  private timer: NodeJS.Timeout | undefined;
  private readonly tickMs: number;
  private lastByteMs: number;
  private windowBytes = 0;
  /** Ms of the current window spent waiting on the client (not paused by backpressure). */
  private windowWaitMs = 0;
  private lastTickMs: number;

  constructor(
    private readonly opts: BodyClockOptions,
    /** Whether we are waiting on the client now (false while the body's reader applies backpressure). */
    private readonly waiting: () => boolean,
    private readonly onTimeout: (reason: string) => void,
  ) {
    const now = Date.now();
    this.lastByteMs = now;
    this.lastTickMs = now;
    this.tickMs = Math.max(10, Math.min(1000, Math.floor(Math.min(opts.idleMs, opts.windowMs) / 4)));
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Body bytes arrived. */
  progress(bytes: number): void {
    this.lastByteMs = Date.now();
    this.windowBytes += bytes;
  }

  /** The reader asked for more after backpressure: the wait for the client starts now. */
  resumed(): void {
    this.lastByteMs = Date.now();
  }

  private tick(): void {
    const now = Date.now();
    const elapsed = now - this.lastTickMs;
    this.lastTickMs = now;
    if (!this.waiting()) {
      // Our side is not reading: the client cannot be blamed for this time.
      this.lastByteMs = now;
      return;
    }
    this.windowWaitMs += elapsed;
    if (now - this.lastByteMs >= this.opts.idleMs) return this.fire(`no request body byte for ${this.opts.idleMs} ms`);
    if (this.opts.minBytesPerSec > 0 && this.windowWaitMs >= this.opts.windowMs) {
      const rate = (this.windowBytes * 1000) / this.windowWaitMs;
      if (rate < this.opts.minBytesPerSec) return this.fire(`request body at ${rate.toFixed(0)} B/s, below ${this.opts.minBytesPerSec} B/s`);
      this.windowBytes = 0;
      this.windowWaitMs = 0;
      }
  }

  private fire(reason: string): void {
    this.stop();
    this.onTimeout(reason);
  }
}
