/** p50/p90/p99 and the largest value of a sample, in the sample's unit, and how many values it had. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  n: number;
}

/**
 * The one percentile helper of the CLI (replay and bench): nearest rank (the smallest value with at least q of the
 * sample at or below it), rounded to `decimals`. Undefined values are left out; an empty sample gives NaN with n 0.
 */
export function percentiles(values: ReadonlyArray<number | undefined>, decimals = 3): Percentiles {
  const s = values.filter((v): v is number => v !== undefined && !Number.isNaN(v)).sort((a, b) => a - b);
  const k = 10 ** decimals;
  const r = (v: number): number => Math.round(v * k) / k;
  const at = (q: number): number => (s.length === 0 ? NaN : r(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number));
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s.length === 0 ? NaN : r(s[s.length - 1] as number), n: s.length };
}
