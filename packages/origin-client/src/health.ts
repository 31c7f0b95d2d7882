import { request, type Dispatcher } from 'undici';

/**
 * Health probes, as Varnish's: every `intervalMs` a request to `path`; the last `window` results are kept and the
 * backend is healthy while at least `threshold` of them succeeded (status `expectStatus` within `timeoutMs`).
 * A backend starts healthy (Varnish's `.initial` = threshold). State changes are reported through `onChange`.
 */
export interface ProbeConfig {
  path?: string;
  intervalMs?: number;
  timeoutMs?: number;
  window?: number;
  threshold?: number;
  expectStatus?: number;
}

export class Probe {
  private readonly results: boolean[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private inflight: Promise<boolean> | undefined;
  healthy = true;
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly window: number;
  readonly threshold: number;
  readonly expectStatus: number;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly origin: string,
    cfg: ProbeConfig,
    private readonly onChange: (healthy: boolean) => void,
  ) {
    this.path = cfg.path ?? '/';
    this.intervalMs = cfg.intervalMs ?? 5_000;
    this.timeoutMs = cfg.timeoutMs ?? 2_000;
    this.window = cfg.window ?? 8;
    this.threshold = cfg.threshold ?? 3;
    this.expectStatus = cfg.expectStatus ?? 200;
    for (let i = 0; i < this.threshold; i++) this.results.push(true);
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One probe now (after any probe in flight); resolves with its result. Tests step the probe with it. */
  async tick(): Promise<boolean> {
    while (this.inflight !== undefined) await this.inflight;
    const run = this.probeOnce();
    this.inflight = run;
    try {
      return await run;
    } finally {
      this.inflight = undefined;
    }
  }

  private async probeOnce(): Promise<boolean> {
    this.running = true;
    let ok = false;
    try {
      const res = await request(`${this.origin}${this.path}`, {
        dispatcher: this.dispatcher,
        method: 'GET',
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.body.dump();
      ok = res.statusCode === this.expectStatus;
    } catch {
      ok = false;
    } finally {
      this.running = false;
    }
    this.record(ok);
    return ok;
  }

  private record(ok: boolean): void {
    this.results.push(ok);
    while (this.results.length > this.window) this.results.shift();
    const good = this.results.filter(Boolean).length;
    const healthy = good >= this.threshold;
    if (healthy !== this.healthy) {
      this.healthy = healthy;
      this.onChange(healthy);
    }
  }
}
