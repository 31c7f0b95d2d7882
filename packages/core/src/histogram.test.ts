import { describe, expect, it } from 'vitest';
import { BUCKETS_SEC, Histogram, OUTCOMES } from './histogram.js';

describe('Histogram', () => {
  it('counts each observation in its outcome and bucket, cumulative in the exposition, with sum and count', () => {
    const h = new Histogram();
    h.observe('hit', 0.0001);
    h.observe('hit', 0.0007);
    h.observe('hit', 0.0007);
    h.observe('miss', 0.3);
    h.observe('error', 20);
    h.observe('synth', 0.001);
    const lines = h.lines('x');
    // 5 outcomes x (buckets + +Inf + sum + count)
    expect(lines).toHaveLength(OUTCOMES.length * (BUCKETS_SEC.length + 3));
    expect(lines).toContain('x_bucket{outcome="hit",le="0.0005"} 1');
    expect(lines).toContain('x_bucket{outcome="hit",le="0.001"} 3');
    expect(lines).toContain('x_bucket{outcome="hit",le="+Inf"} 3');
    expect(lines).toContain('x_count{outcome="hit"} 3');
    expect(lines).toContain(`x_sum{outcome="hit"} ${0.0001 + 0.0007 + 0.0007}`);
    expect(lines).toContain('x_bucket{outcome="miss",le="0.25"} 0');
    expect(lines).toContain('x_bucket{outcome="miss",le="0.5"} 1');
    // 0.001 is not above the 0.001 bound: it counts in that bucket (le is inclusive)
    expect(lines).toContain('x_bucket{outcome="synth",le="0.001"} 1');
    expect(lines).toContain('x_bucket{outcome="synth",le="0.0005"} 0');
    expect(lines).toContain('x_bucket{outcome="error",le="10"} 0');
    expect(lines).toContain('x_bucket{outcome="error",le="+Inf"} 1');
    expect(lines).toContain('x_sum{outcome="error"} 20');
    expect(lines).toContain('x_count{outcome="pass"} 0');
    expect(lines).toContain('x_sum{outcome="pass"} 0');
  });
});
