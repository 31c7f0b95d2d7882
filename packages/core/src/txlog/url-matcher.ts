import { Worker } from 'node:worker_threads';

/**
 * A live-log subscriber's URL regex (`sluice log --url REGEX`), run off the request path.
 *
 * Why: JavaScript regexes backtrack, and a user's `(a+)+$` against a URL of forty a's and a b runs for hours on the
 * thread that calls it; the proxy has one thread, so every request would wait (one such filter stalled every request
 * for 6.8 s). Refusing "dangerous" patterns cannot be complete (`(a|aa)+$` has no nested quantifier), and cutting the
 * URL short changes what matches. So we do what Varnish does: varnishlog evaluates its `-q` query in its own process,
 * reading the shared log, never in varnishd's workers, and PCRE's match limit bounds each match. Here the regex runs
 * in a worker thread owned by the subscriber; the request path only posts the URL. A URL the worker has not
 * answered within `budgetMs` counts as no match (as a PCRE match-limit error does): the worker is terminated (V8
 * interrupts the regex) and a fresh one takes the URLs after it. At most `maxPending` URLs wait for a verdict; past
 * that, groups are dropped, as for any reader that does not keep up.
 *
 * Lifecycle: the worker starts on the first URL, is replaced after a budget overrun, and ends with `close()`.
 * Verdicts come back in the order the URLs were given.
 */
export class UrlMatcher {
  private worker: Worker | undefined;
  /** URLs posted to the worker and not answered yet, oldest first. */
  private readonly pending: Array<{ url: string; resolve: (ok: boolean) => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  /** The current worker is running (its start-up is not charged to a URL's budget). */
  private online = false;
  private closed = false;
  /** URLs dropped because `maxPending` were already waiting. */
  dropped = 0;

  constructor(
    private readonly regex: RegExp,
    private readonly budgetMs = 50,
    private readonly maxPending = 1000,
  ) {}

  /** Whether `url` matches, answered asynchronously; undefined when it was dropped (too many waiting) or closed. */
  test(url: string): Promise<boolean> | undefined {
    if (this.closed) return undefined;
    if (this.pending.length >= this.maxPending) {
      this.dropped++;
      return undefined;
    }
    return new Promise<boolean>((resolve) => {
      this.pending.push({ url, resolve });
      this.ensureWorker().postMessage(url);
      if (this.pending.length === 1) this.arm();
    });
  }

  /** Ends the worker; URLs still waiting count as no match. */
  close(): void {
    this.closed = true;
    this.stop();
    for (const p of this.pending.splice(0)) p.resolve(false);
  }

  private ensureWorker(): Worker {
    if (this.worker !== undefined) return this.worker;
    // Stateless test (no g/y lastIndex); the worker answers each URL in order.
    const flags = this.regex.flags.replace(/[gy]/g, '');
    const code = `const { parentPort, workerData } = require('node:worker_threads');
const re = new RegExp(workerData.source, workerData.flags);
parentPort.on('message', (url) => parentPort.postMessage(re.test(url)));`;
    const w = new Worker(code, { eval: true, workerData: { source: this.regex.source, flags } });
    w.unref();
    this.online = false;
    w.once('online', () => {
      if (this.worker !== w) return;
      this.online = true;
      if (this.pending.length > 0) this.arm();
    });
    // A terminated worker's last answers may still arrive: only the current worker's count.
    w.on('message', (ok: unknown) => {
      if (this.worker === w) this.answered(ok === true);
    });
    w.on('error', () => {
      if (this.worker === w) this.overrun();
    });
    this.worker = w;
    return w;
  }

  private answered(ok: boolean): void {
    this.pending.shift()?.resolve(ok);
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length > 0) this.arm();
  }

  /** The budget of the oldest waiting URL, counted from when the worker could start on it. */
  private arm(): void {
    if (!this.online) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.overrun(), this.budgetMs);
    this.timer.unref();
  }

  /** The oldest URL took too long (or the worker died): no match; a fresh worker takes the rest. */
  private overrun(): void {
    this.stop();
    this.pending.shift()?.resolve(false);
    if (this.closed || this.pending.length === 0) return;
    const w = this.ensureWorker();
    for (const p of this.pending) w.postMessage(p.url);
    this.arm();
  }

  private stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    void this.worker?.terminate();
    this.worker = undefined;
  }
}
