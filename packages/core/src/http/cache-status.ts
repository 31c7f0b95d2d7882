/**
 * RFC 9211 Cache-Status: `sluice; hit` or `sluice; fwd=<reason>` plus parameters. Built as a string once per response.
 */
export type FwdReason = 'bypass' | 'method' | 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale';

export interface CacheStatus {
  hit?: boolean;
  fwd?: FwdReason;
  fwdStatus?: number;
  stored?: boolean;
  collapsed?: boolean;
  ttlSec?: number;
  detail?: string;
}

export function formatCacheStatus(name: string, s: CacheStatus): string {
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
