/**
 * RFC 9211 Cache-Status: `sluice; hit` or `sluice; fwd=<reason>` plus parameters. Built as a string once per response.
 */
import type { NotStoredReason } from './freshness.js';

/**
 * Cache-Status `detail` values: a closed union. The machine decides from its own outcome fields (the lookup kind,
 * the fetch reason) and derives this text; it never reads it back.
 */
export type CacheStatusDetail =
  | 'coalesced'
  | 'grace'
  | 'stale-if-error'
  | 'hit-for-miss'
  | 'hit-for-pass'
  | 'pass'
  | 'pipe'
  | 'pinned'
  | 'purge'
  | 'slice'
  | 'fetch-error'
  | 'synth'
  | NotStoredReason;

export type FwdReason = 'bypass' | 'method' | 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale';

export interface CacheStatus {
  hit?: boolean;
  fwd?: FwdReason;
  fwdStatus?: number;
  stored?: boolean;
  collapsed?: boolean;
  ttlSec?: number;
  detail?: CacheStatusDetail;
}

/** A CacheStatus whose fields may be present and undefined (one fixed-shape literal per response). */
export type CacheStatusFields = { [K in keyof CacheStatus]?: CacheStatus[K] | undefined };

export function formatCacheStatus(name: string, s: CacheStatusFields): string {
  let out = name;
  if (s.hit === true) out += '; hit';
  if (s.fwd !== undefined) out += `; fwd=${s.fwd}`;
  if (s.fwdStatus !== undefined) out += `; fwd-status=${s.fwdStatus}`;
  if (s.stored === true) out += '; stored';
  if (s.collapsed === true) out += '; collapsed';
  if (s.ttlSec !== undefined) out += `; ttl=${Math.floor(s.ttlSec)}`;
  if (s.detail !== undefined) out += `; detail=${s.detail}`;
  return out;
}
