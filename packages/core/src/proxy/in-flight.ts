/**
 * The requests a proxy is still handling asynchronously (a hit that never waits is not counted). A stop waits for them
 * after cutting their connections: their steps end a few turns later, and only then are their log groups complete
 * (a SIGTERM twice lost the cut request's group when the log file was closed first).
 */
export class InFlight {
  private count = 0;
  private onIdle: (() => void) | undefined;

  /** Counts `p` until it settles; `onError` gets its rejection. */
  track(p: Promise<void>, onError: (e: unknown) => void): void {
    this.count++;
    p.then(this.settled, (e: unknown) => {
      onError(e);
      this.settled();
    });
  }

  /**
   * Resolves once no request is left, then (`abortFetches` called again: the fetches those requests began meanwhile)
   * once `fetches` is empty too, or after `boundMs` in all. A request's log group ends with its fetches.
   */
  async idle(boundMs: number, abortFetches: () => void, fetches: { readonly size: number }): Promise<void> {
    const until = performance.now() + boundMs;
    if (this.count > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, boundMs);
        this.onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    abortFetches();
    while (fetches.size > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
  }

  private readonly settled = (): void => {
    if (--this.count === 0 && this.onIdle !== undefined) {
      const f = this.onIdle;
      this.onIdle = undefined;
      f();
    }
  };
}
