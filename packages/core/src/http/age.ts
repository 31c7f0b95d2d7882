import { parseHttpDate } from './dates.js';
import { getHeader, type HeaderMap } from './headers.js';

/**
 * The one age calculation (RFC 9111 §4.2.3). Everything that asks "how old is this object now?" (lookup, the Age
 * header, the log's remaining TTL, stale-if-error windows) comes here.
 */

/**
 * Age the response already had when it arrived (corrected_initial_age), seconds:
 * apparent_age = max(0, response_time - date_value); corrected_age_value = age_value + response_delay.
 */
export function initialAgeSec(headers: HeaderMap, requestTimeMs: number, responseTimeMs: number): number {
  const date = parseHttpDate(getHeader(headers, 'date'));
  const apparentAgeSec = date === undefined ? 0 : Math.max(0, (responseTimeMs - date) / 1000);
  const ageValueSec = ageFieldSec(getHeader(headers, 'age'));
  const responseDelaySec = Math.max(0, (responseTimeMs - requestTimeMs) / 1000);
  return Math.max(apparentAgeSec, ageValueSec + responseDelaySec);
}

/**
 * The Age field's value, seconds (RFC 9111 §5.1): "a cache encountering a message with a list-based Age field value
 * SHOULD use the first member of the field value, discarding subsequent ones. If the field value (after discarding
 * additional members ...) is invalid (e.g., it contains something other than a non-negative integer), a cache SHOULD
 * ignore the field." Repeated field lines are one list (RFC 9110 §5.3), so the first line's first member counts.
 * Negative, fractional, non-numeric values and values with parameters are invalid: 0 (ignored). Delta-seconds too large
 * saturate at 2^31 (RFC 9111 §1.2.2).
 */
export function ageFieldSec(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const first = (raw.split(',')[0] ?? '').trim();
  if (!/^\d+$/.test(first)) return 0;
  return Math.min(Number(first), 2147483648);
}

/**
 * Whether the Age field, when present, is valid (its first member a non-negative integer). The rfc profile treats a
 * response with an invalid Age as stale on arrival: its age cannot be known, and a cache may always revalidate
 * rather than reuse (the public suite's age-parse-* expect it; RFC 9111 §5.1 only asks that the value be ignored in
 * the age calculation, which ageFieldSec does).
 */
export function ageFieldValid(raw: string | undefined): boolean {
  if (raw === undefined) return true;
  return /^\d+$/.test((raw.split(',')[0] ?? '').trim());
}

/** current_age = corrected_initial_age + resident_time, seconds, not rounded. */
export function currentAgeSec(initialAge: number, responseTimeMs: number, nowMs: number): number {
  return initialAge + Math.max(0, (nowMs - responseTimeMs) / 1000);
}

/** What an object's age is computed from. */
export interface Aged {
  initialAgeSec: number;
  responseTimeMs: number;
  ttlSec: number;
}

/** The current age of a stored response, seconds, not rounded. */
export function ageOf(o: Aged, nowMs: number): number {
  return currentAgeSec(o.initialAgeSec, o.responseTimeMs, nowMs);
}

/** Freshness left, seconds (negative once stale). */
export function ttlLeftSec(o: Aged, nowMs: number): number {
  return o.ttlSec - ageOf(o, nowMs);
}
