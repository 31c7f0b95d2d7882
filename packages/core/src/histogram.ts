/**
 * Latency histograms by cache outcome, for /metrics (Prometheus histograms: cumulative buckets, sum, count). One
 * observation is a bucket search and two additions: cheap enough for every request.
 */
export type Outcome = 'hit' | 'miss' | 'pass' | 'synth' | 'error';
export const OUTCOMES: readonly Outcome[] = ['hit', 'miss', 'pass', 'synth', 'error'];

/** Upper bounds in seconds (prom-client's defaults, plus a millisecond step below them for cache hits). */
export const BUCKETS_SEC = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** An outcome's slot in the per-outcome arrays (a switch on interned strings: no map or keyed lookup per request). */
function slotOf(outcome: Outcome): number {
  switch (outcome) {
    case 'hit':
      return 0;
    case 'miss':
      return 1;
    case 'pass':
      return 2;
    case 'synth':
      return 3;
    default:
      return 4;
  }
}

export class Histogram {
  /** Per outcome (in OUTCOMES order): a count per bucket (not cumulative) and the +Inf overflow last. */
  private readonly counts: Float64Array[] = OUTCOMES.map(() => new Float64Array(BUCKETS_SEC.length + 1));
  private readonly sums = new Float64Array(OUTCOMES.length);

  observe(outcome: Outcome, seconds: number): void {
    const slot = slotOf(outcome);
    const c = this.counts[slot] as Float64Array;
    let i = 0;
    while (i < BUCKETS_SEC.length && seconds > (BUCKETS_SEC[i] as number)) i++;
    c[i] = (c[i] as number) + 1;
    this.sums[slot] = (this.sums[slot] as number) + seconds;
  }

  /** The exposition lines of this histogram (without HELP/TYPE). */
  lines(name: string): string[] {
    const out: string[] = [];
    for (const o of OUTCOMES) {
      const c = this.counts[slotOf(o)] as Float64Array;
      let cum = 0;
      for (let i = 0; i < BUCKETS_SEC.length; i++) {
        cum += c[i] as number;
        out.push(`${name}_bucket{outcome="${o}",le="${BUCKETS_SEC[i]}"} ${cum}`);
      }
      cum += c[BUCKETS_SEC.length] as number;
      out.push(`${name}_bucket{outcome="${o}",le="+Inf"} ${cum}`, `${name}_sum{outcome="${o}"} ${this.sums[slotOf(o)] as number}`, `${name}_count{outcome="${o}"} ${cum}`);
    }
    return out;
  }
}
