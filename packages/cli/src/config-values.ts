import type { BackendConfig, DirectorType } from '@sluice/origin-client';
import type { Config } from './config.js';
import { CliError } from './errors.js';
import { compileNcsaFormat } from './ncsa-format.js';
import { parseDurationSec, parseSizeBytes } from './units.js';

/** The value parsers of the settings (config.ts): each takes a flag or file value and throws one CliError line. */

export function size(name: string, v: string | number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = typeof v === 'number' ? v : parseSizeBytes(v);
  if (n === undefined || !Number.isFinite(n) || n < 0) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `${name}: "${String(v)}" is not a size (examples: 1048576, 512k, 256MB)`);
  }
  return n;
}

export function duration(name: string, v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : parseDurationSec(v);
  if (n === undefined || !Number.isFinite(n) || n < 0) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `${name}: "${String(v)}" is not a duration (examples: 90, 500ms, 10s, 2m, 1h)`);
  }
  return n;
}

export function logGroupingOf(v: string): 'request' | 'vxid' | 'session' {
  if (v !== 'request' && v !== 'vxid' && v !== 'session') throw new CliError('CLI_ERR_FLAG_INVALID', `--log-grouping: "${v}" is not one of request, vxid, session`);
  return v;
}

/** --log and --log-format: a format implies --log ncsa, is compiled now (so `check` names a bad one), and fits no other log. */
export function accessLogOf(log: string | undefined, format: string | undefined): { log: Config['log']; logFormat: string | undefined } {
  const kind = logFormatOf(log ?? (format === undefined ? 'none' : 'ncsa'));
  if (format === undefined) return { log: kind, logFormat: undefined };
  if (kind !== 'ncsa') throw new CliError('CLI_ERR_FLAG_INVALID', `--log-format is for the access log (--log ncsa), not --log ${kind}`);
  compileNcsaFormat(format);
  return { log: kind, logFormat: format };
}

export function logFormatOf(v: string): 'none' | 'text' | 'ndjson' | 'ncsa' {
  if (v !== 'none' && v !== 'text' && v !== 'ndjson' && v !== 'ncsa') throw new CliError('CLI_ERR_FLAG_INVALID', `--log: "${v}" is not one of none, text, ndjson, ncsa`);
  return v;
}

export function adminListenOf(raw: string | undefined): { host: string; port: number } | undefined {
  if (raw === undefined) return undefined;
  try {
    return parseListen(raw);
  } catch {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--admin-listen: "${raw}" is not HOST:PORT (example: 127.0.0.1:6082)`);
  }
}

export function adminTokenOf(token: string | undefined): string | undefined {
  if (token !== undefined && token.length < 8) throw new CliError('CLI_ERR_FLAG_INVALID', '--admin-token: the token must be at least 8 characters');
  return token;
}

export function connectAllowOf(entries: readonly string[]): string[] {
  for (const e of entries) {
    if (!/^(\*|\*\.[^:]+|[^:*]+|[0-9a-f:]+):(\*|\d{1,5})$/i.test(e)) {
      throw new CliError('CLI_ERR_FLAG_INVALID', `--connect-allow: "${e}" is not host:port (examples: example.com:443, *.example.com:443, 127.0.0.1:*)`);
    }
  }
  return [...entries];
}

/** The defaults a profile gives the cache settings; flags and the config file override each. */
export type Profile = 'rfc' | 'varnish';

export interface ProfileDefaults {
  defaultTtlSec: number | undefined;
  graceSec: number;
  keepSec: number;
  staleIfDisconnected: boolean;
}

/**
 * rfc (the default): RFC 9111 strictly, as the public cache test suite checks it: no TTL for responses without
 * freshness beyond the RFC heuristic; stale served only where the response allows it (stale-while-revalidate,
 * stale-if-error) or when the origin cannot be reached, never against must-revalidate / proxy-revalidate / s-maxage /
 * no-cache; expired objects kept a day (bounded by --storage) so the next request revalidates them.
 * varnish: Varnish's builtin defaults: default_ttl 120 s, grace 10 s, keep 0, nothing stale when the backend is down.
 */
export const PROFILES: Record<Profile, ProfileDefaults> = {
  rfc: { defaultTtlSec: undefined, graceSec: 0, keepSec: 86_400, staleIfDisconnected: true },
  varnish: { defaultTtlSec: 120, graceSec: 10, keepSec: 0, staleIfDisconnected: false },
};

/** `--cache-targets cdn-cache-control,surrogate-control` (or `none`), or the config file's list: field names. */
export function cacheTargetsOf(flag: string | undefined, file: string[] | undefined): string[] | undefined {
  const list = flag === undefined ? file : flag.trim().toLowerCase() === 'none' ? [] : flag.split(',');
  if (list === undefined) return undefined;
  const out = list.map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
  for (const t of out) {
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(t)) throw new CliError('CLI_ERR_FLAG_INVALID', `--cache-targets: "${t}" is not a header field name (e.g. --cache-targets cdn-cache-control,surrogate-control)`);
  }
  return out;
}

export function profileOf(v: string): Profile {
  if (v !== 'rfc' && v !== 'varnish') throw new CliError('CLI_ERR_FLAG_INVALID', `--profile: "${v}" is not one of rfc, varnish`);
  return v;
}

export const DIRECTORS: readonly DirectorType[] = ['round-robin', 'random', 'hash', 'shard', 'fallback'];

/** Default adaptive-streaming threshold (see bench/results for the measurement it comes from). */
export const DEFAULT_STREAM_MIN_BYTES = 0;

/** The slicer settings as given: flags or file keys. */
export interface SliceInput {
  adaptive: string | number | undefined;
  min: string | number | undefined;
  readAhead: number | undefined;
  runs?: boolean | undefined;
  keepBody?: boolean | undefined;
  onArrival: string | number | undefined;
  url: string | undefined;
}

export function sliceOf(i: SliceInput): Config['slice'] {
  if (i.adaptive !== undefined && i.onArrival !== undefined) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice and --slice-size exclude each other (--slice decides from the response, --slice-size as the request arrives)');
  const name = i.adaptive !== undefined ? '--slice' : '--slice-size';
  const sizeRaw = i.adaptive ?? i.onArrival;
  if (sizeRaw === undefined) {
    if (i.url !== undefined) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice-url needs --slice or --slice-size (e.g. --slice 1MB --slice-url "\\.mp4$")');
    if (i.min !== undefined) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice-min needs --slice (e.g. --slice 1MB --slice-min 16MB)');
    return undefined;
  }
  if (i.min !== undefined && i.adaptive === undefined) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice-min goes with --slice, not --slice-size');
  const sizeBytes = size(name, sizeRaw, 0);
  if (sizeBytes < 1024) throw new CliError('CLI_ERR_FLAG_INVALID', `${name}: "${String(sizeRaw)}" is too small (at least 1k; e.g. ${name} 1MB)`);
  if (i.readAhead !== undefined && (!Number.isInteger(i.readAhead) || i.readAhead < 0 || i.readAhead > 16)) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--slice-read-ahead: "${String(i.readAhead)}" is not a number of segments from 0 to 16`);
  }
  let match: RegExp | undefined;
  if (i.url !== undefined) {
    try {
      match = new RegExp(i.url);
    } catch {
      throw new CliError('CLI_ERR_FLAG_INVALID', `--slice-url: "${i.url}" is not a regular expression`);
    }
  }
  const minBytes = i.adaptive === undefined ? undefined : size('--slice-min', i.min, sizeBytes);
  if (i.runs === true && i.adaptive === undefined) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice-runs goes with --slice (runs fetch a sliced object\'s segments, decided from the response)');
  if (i.keepBody === true && (i.adaptive === undefined || i.runs === false)) throw new CliError('CLI_ERR_FLAG_INVALID', '--slice-keep-body goes with --slice and runs (the 200 body is kept as the first run)');
  // Runs are on by default with --slice, the kept 200 body off (core's defaults): only what was said
  // (--[no-]slice-runs, sliceRuns, --[no-]slice-keep-body, sliceKeepBody) is passed on.
  const out: NonNullable<Config['slice']> = { sizeBytes, match, minBytes, readAhead: i.readAhead };
  if (i.adaptive !== undefined && i.runs !== undefined) out.runs = i.runs;
  if (i.adaptive !== undefined && i.keepBody !== undefined) out.keepBody = i.keepBody;
  return out;
}

export function wholeNumber(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0) throw new CliError('CLI_ERR_FLAG_INVALID', `${name}: "${String(v)}" is not a whole number`);
  return v;
}

export function esiDepthOf(v: number | undefined): number {
  if (v === undefined) return 5;
  if (!Number.isInteger(v) || v < 0) throw new CliError('CLI_ERR_CONFIG_INVALID', `esiMaxDepth: "${String(v)}" is not a whole number of at least 0`);
  return v;
}

export function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new CliError('CLI_ERR_FLAG_INVALID', `${name}: "${String(v)}" is not a whole number of at least 1`);
  return v;
}

/** Parses `HOST:PORT`, `:PORT` or `PORT`. */
export function parseListen(raw: string): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(raw.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--listen: "${raw}" is not HOST:PORT (example: 127.0.0.1:6081)`);
  }
  return { host: m[1] === undefined || m[1] === '' ? '127.0.0.1' : m[1], port };
}

export function backendOf(v: string | BackendConfig, where: string): BackendConfig {
  const b: BackendConfig = typeof v === 'string' ? { url: v } : v;
  let u: URL;
  try {
    u = new URL(b.url);
  } catch {
    throw new CliError('CLI_ERR_FLAG_INVALID', `${where}: "${b.url}" is not a URL (example: http://127.0.0.1:8080)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new CliError('CLI_ERR_FLAG_INVALID', `${where}: "${b.url}" must start with http:// or https://`);
  }
  if (u.pathname !== '/' || u.search !== '') {
    throw new CliError('CLI_ERR_FLAG_INVALID', `${where}: "${b.url}" must not have a path (example: http://127.0.0.1:8080)`);
  }
  return { ...b, url: u.origin };
}
