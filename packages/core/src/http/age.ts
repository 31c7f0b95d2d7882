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
  const ageRaw = getHeader(headers, 'age');
  const ageValueSec = ageRaw !== undefined && /^\d+$/.test(ageRaw.trim()) ? Number(ageRaw.trim()) : 0;
  const responseDelaySec = Math.max(0, (responseTimeMs - requestTimeMs) / 1000);
  return Math.max(apparentAgeSec, ageValueSec + responseDelaySec);
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
