import { parseCacheControl, type CacheControl } from './cache-control.js';
import { getHeader, type HeaderMap } from './headers.js';

/**
 * The cache rules in force (a profile) and targeted cache control: RFC 9213 (CDN-Cache-Control and any targeted
 * field) and Surrogate-Control (W3C Edge Architecture). Pure: header values in, directives out.
 */

/** Which storage rules the cache follows: RFC 9111 strictly (the default) or Varnish's builtin.vcl. */
export type CacheProfile = 'rfc' | 'varnish';

export interface CacheRules {
  readonly profile: CacheProfile;
  /**
   * The target list (RFC 9213 §2.1), lowercase field names in order of preference: the first one present with a
   * valid, non-empty value replaces Cache-Control and Expires for this cache. `surrogate-control` means the
   * directives of that field that are untargeted or targeted at `deviceToken`.
   */
  readonly targets: readonly string[];
  /** Our device token in Surrogate-Control targeting and Surrogate-Capability (the proxy's name). */
  readonly deviceToken: string;
}

/** The targets of the rfc profile: CDN-Cache-Control first (the standard), then Surrogate-Control. */
export const DEFAULT_TARGETS: readonly string[] = ['cdn-cache-control', 'surrogate-control'];

export const RFC_RULES: CacheRules = { profile: 'rfc', targets: DEFAULT_TARGETS, deviceToken: 'sluice' };
export const VARNISH_RULES: CacheRules = { profile: 'varnish', targets: [], deviceToken: 'sluice' };

/** Directives as `directivesOf` gives them: shared between callers, so read-only. */
export interface Directives {
  readonly cc: ReadonlyMap<string, string | true>;
  readonly targeted: string | undefined;
}

/**
 * The last `directivesOf` answer and the field values it was worked out from (the targets' in order, then
 * Cache-Control's). A miss asks up to seven times for the same response's directives (freshness, grace, stale
 * rules, storing, the builtin rules, the committed object: issue 16), each a parse of the same strings.
 */
let lastRules: CacheRules | undefined;
let lastRaw: Array<string | undefined> = [];
let lastDirectives: Directives | undefined;

/**
 * responseDirectives for core's own readers: the same answer, shared while the fields it comes from are the same
 * strings (the directives are a pure function of them and of `rules`). Callers never modify it.
 */
export function directivesOf(headers: HeaderMap, rules: CacheRules | undefined): Directives {
  const targets = rules === undefined ? NO_TARGETS : rules.targets;
  const n = targets.length;
  if (lastDirectives !== undefined && lastRules === rules && lastRaw.length === n + 1 && lastRaw[n] === getHeader(headers, 'cache-control')) {
    let i = 0;
    while (i < n && lastRaw[i] === getHeader(headers, targets[i] as string)) i++;
    if (i === n) return lastDirectives;
  }
  const raw: Array<string | undefined> = [];
  for (const name of targets) raw.push(getHeader(headers, name));
  raw.push(getHeader(headers, 'cache-control'));
  const d = responseDirectives(headers, rules);
  lastRules = rules;
  lastRaw = raw;
  lastDirectives = d;
  return d;
}

const NO_TARGETS: readonly string[] = [];

/** The cache directives that make a Surrogate-Control field count (a lone `content="ESI/1.0"` does not). */
const SURROGATE_DIRECTIVES = new Set(['max-age', 'no-store', 'no-cache', 'private', 'must-revalidate', 'stale-while-revalidate', 'stale-if-error']);

/**
 * The Cache-Control directives this cache obeys for a response: those of the first targeted field in `rules.targets`
 * that is present, valid and non-empty (RFC 9213 §2.1: then Cache-Control and Expires are ignored), else the
 * response's own Cache-Control. `targeted` names the field used, undefined for Cache-Control.
 */
export function responseDirectives(headers: HeaderMap, rules: CacheRules | undefined): { cc: CacheControl; targeted: string | undefined } {
  if (rules !== undefined) {
    for (const name of rules.targets) {
      const raw = getHeader(headers, name);
      if (raw === undefined) continue;
      const cc = name === 'surrogate-control' ? parseSurrogateControl(raw, rules.deviceToken) : parseTargetedField(raw);
      if (cc !== undefined && cc.size > 0) return { cc, targeted: name };
    }
  }
  return { cc: parseCacheControl(getHeader(headers, 'cache-control')), targeted: undefined };
}

const SF_KEY = /^[a-z*][a-z0-9_\-.*]*$/;
const SF_TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;
const SF_NUMBER = /^-?\d{1,15}(\.\d{1,3})?$/;

/**
 * A targeted field (RFC 9213 §2.2): a Structured Fields Dictionary (RFC 8941 §3.2) whose members are cache
 * directives: `max-age=60, private, no-cache="a"`. Keys are lowercase; values are integers, decimals, strings,
 * tokens or booleans, parameters ignored. Any syntax error makes the whole field invalid (undefined): the cache
 * then falls back to Cache-Control (§2.1).
 */
export function parseTargetedField(raw: string): CacheControl | undefined {
  const out: CacheControl = new Map();
  for (const member of splitOutsideQuotes(raw, ',')) {
    const m = member.trim();
    if (m === '') return undefined;
    const [head = ''] = splitOutsideQuotes(m, ';');
    const eq = head.indexOf('=');
    const key = eq < 0 ? head : head.slice(0, eq);
    if (!SF_KEY.test(key)) return undefined;
    const value = eq < 0 ? true : sfItemValue(head.slice(eq + 1));
    if (value === undefined) return undefined;
    if (value === false) {
      out.delete(key);
      continue;
    }
    // RFC 8941 §4.2.2: a later duplicate key overwrites the earlier one.
    out.set(key, value);
  }
  return out;
}

/** An SF bare item as a directive argument: true for ?1, false for ?0, undefined when invalid. */
function sfItemValue(v: string): string | boolean | undefined {
  if (v === '?1') return true;
  if (v === '?0') return false;
  if (SF_NUMBER.test(v) || SF_TOKEN.test(v)) return v;
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
    const inner = v.slice(1, -1);
    if (/(^|[^\\])"/.test(inner)) return undefined;
    return inner.replace(/\\(["\\])/g, '$1');
  }
  return undefined;
}

/**
 * Surrogate-Control (W3C Edge Architecture 1.0): comma-separated directives, each optionally targeted with
 * `;device-token` (`max-age=60;sluice, no-store;other`). Only untargeted directives and those targeted at
 * `deviceToken` apply; names are case-insensitive; `max-age=N+M` keeps N (the staleness part is not implemented).
 * Returns only the cache directives (content="ESI/1.0" and extensions are left out), so an ESI-only field does not
 * replace Cache-Control.
 */
export function parseSurrogateControl(raw: string, deviceToken: string): CacheControl {
  const out: CacheControl = new Map();
  const me = deviceToken.toLowerCase();
  for (const member of splitOutsideQuotes(raw, ',')) {
    const [directive = '', ...targets] = splitOutsideQuotes(member.trim(), ';');
    if (targets.length > 0 && !targets.some((t) => t.trim().toLowerCase() === me)) continue;
    const parsed = parseCacheControl(directive);
    for (const [name, arg] of parsed) {
      if (!SURROGATE_DIRECTIVES.has(name) || out.has(name)) continue;
      out.set(name, name === 'max-age' && typeof arg === 'string' ? (arg.split('+')[0] ?? '') : arg);
    }
  }
  return out;
}

/** Splits on `sep` outside double-quoted strings. */
function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (quoted && c === '\\' && i + 1 < s.length) {
      cur += c + (s[++i] as string);
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** The Surrogate-Capability request field announcing our device token (sent when Surrogate-Control is targeted). */
export function surrogateCapability(rules: CacheRules): string | undefined {
  return rules.targets.includes('surrogate-control') ? `${rules.deviceToken}="Surrogate/1.0"` : undefined;
}
