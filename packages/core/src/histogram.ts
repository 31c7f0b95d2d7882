/**
 * Latency histograms by cache outcome, for /metrics (Prometheus histograms: cumulative buckets, sum, count). One
 * observation is a bucket search and two additions: cheap enough for every request.
 */
export type Outcome = 'hit' | 'miss' | 'pass' | 'synth' | 'error';
export const OUTCOMES: readonly Outcome[] = ['hit', 'miss', 'pass', 'synth', 'error'];

/** Upper bounds in seconds (prom-client's defaults, plus a millisecond step below them for cache hits). */
export const BUCKETS_SEC = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  /** Per outcome: a count per bucket (not cumulative) and the +Inf overflow last. */
  private readonly counts = new Map<Outcome, number[]>(OUTCOMES.map((o) => [o, new Array<number>(BUCKETS_SEC.length + 1).fill(0)]));
  private readonly sums = new Map<Outcome, number>(OUTCOMES.map((o) => [o, 0]));

  observe(outcome: Outcome, seconds: number): void {
    const c = this.counts.get(outcome) as number[];
    let i = 0;
    while (i < BUCKETS_SEC.length && seconds > (BUCKETS_SEC[i] as number)) i++;
    c[i] = (c[i] as number) + 1;
    this.sums.set(outcome, (this.sums.get(outcome) as number) + seconds);
  }

  /** The exposition lines of this histogram (without HELP/TYPE). */
  lines(name: string): string[] {
    const out: string[] = [];
    for (const o of OUTCOMES) {
      const c = this.counts.get(o) as number[];
      let cum = 0;
      for (let i = 0; i < BUCKETS_SEC.length; i++) {
        cum += c[i] as number;
        out.push(`${name}_bucket{outcome="${o}",le="${BUCKETS_SEC[i]}"} ${cum}`);
      }
      cum += c[BUCKETS_SEC.length] as number;
      out.push(`${name}_bucket{outcome="${o}",le="+Inf"} ${cum}`, `${name}_sum{outcome="${o}"} ${this.sums.get(o) as number}`, `${name}_count{outcome="${o}"} ${cum}`);
    }
    return out;
  }
}
