import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

/**
 * Shared settings for the property-based fuzzers (issue 10). In CI every property runs a small fixed number of cases
 * from a fixed seed, so a failure reproduces exactly; `FUZZ_SEED` overrides the seed and `FUZZ_RUNS` the case count
 * (the long run, `bench/fuzz.mjs`, sets both). With `FUZZ_REPORT` set to a file path, each property appends one NDJSON
 * line (name, seed, runs, time, outcome) there, which the long run collects into bench/results/.
 */

/** The CI seed; any fixed integer works, this one is the date the fuzzers were written. */
export const DEFAULT_FUZZ_SEED = 20261204;

export const FUZZ_SEED = process.env['FUZZ_SEED'] !== undefined ? Number(process.env['FUZZ_SEED']) : DEFAULT_FUZZ_SEED;

/** Cases to run: `ciRuns` unless the long run asks for more. */
export function fuzzRuns(ciRuns: number): number {
  const env = process.env['FUZZ_RUNS'];
  return env !== undefined ? Number(env) : ciRuns;
}

/** A vitest timeout that grows with `FUZZ_RUNS`: 20 s in CI, about 1 ms a case (at least) in the long run. */
export function fuzzTimeoutMs(ciRuns: number): number {
  return Math.max(20_000, fuzzRuns(ciRuns) * 2);
}

export interface FuzzReportLine {
  property: string;
  seed: number;
  runs: number;
  ms: number;
  failed: boolean;
  /** fast-check's report of the shrunk counterexample, when one was found. */
  counterexample?: string;
}

function report(line: FuzzReportLine): void {
  const file = process.env['FUZZ_REPORT'];
  if (file !== undefined) appendFileSync(file, `${JSON.stringify(line)}\n`);
}

/**
 * Runs `prop` with the shared seed and `fuzzRuns(ciRuns)` cases, records the outcome, and throws fast-check's report
 * (seed, path and the shrunk counterexample) when the property fails.
 */
export async function checkProperty<T>(
  name: string,
  prop: fc.IProperty<T> | fc.IAsyncProperty<T>,
  ciRuns: number,
): Promise<void> {
  const t0 = performance.now();
  const details = await fc.check(prop, { seed: FUZZ_SEED, numRuns: fuzzRuns(ciRuns) });
  const ms = Math.round(performance.now() - t0);
  const line: FuzzReportLine = { property: name, seed: FUZZ_SEED, runs: details.numRuns, ms, failed: details.failed };
  if (details.failed) line.counterexample = fc.defaultReportMessage(details) ?? 'failed';
  report(line);
  if (details.failed) throw new Error(line.counterexample);
}

/** One byte as a latin1 character: what the HTTP/1 server hands the head parser. */
export const latin1Char = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c));

/** Characters that steer parsers into their interesting branches, mixed with arbitrary bytes. */
export function charsFrom(special: string): fc.Arbitrary<string> {
  return fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...special.split('')) }, { weight: 1, arbitrary: latin1Char });
}

/** An RFC 9110 §5.6.2 token. */
export const token = fc.string({
  unit: fc.constantFrom(...("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split(''))),
  minLength: 1,
  maxLength: 12,
});

/** Splits `buf` at the given (unsorted, possibly out-of-range) offsets, as a socket might deliver it. */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}
