import { describe, expect, it } from 'vitest';
import { parseCacheControl } from './cache-control.js';
import { freshnessLifetime, initialAgeSec, notStorableReason, builtinUncacheableReason } from './freshness.js';
import { stripHopByHop } from './headers.js';
import { varyFields, varySignature } from './vary.js';
import { formatCacheStatus } from './cache-status.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const date = (offsetSec: number): string => new Date(NOW + offsetSec * 1000).toUTCString();

describe('parseCacheControl (RFC 9111 §5.2)', () => {
  it.each([
    ['max-age=60', [['max-age', '60']]],
    ['Max-Age=60, PUBLIC', [['max-age', '60'], ['public', true]]],
    ['no-cache="set-cookie, x", s-maxage=5', [['no-cache', 'set-cookie, x'], ['s-maxage', '5']]],
    ['max-age=1, max-age=2', [['max-age', '1']]],
    ['', []],
  ] as const)('%s', (raw, want) => {
    expect([...parseCacheControl(raw).entries()]).toEqual(want);
  });
});

describe('freshnessLifetime (RFC 9111 §4.2.1, §4.2.2)', () => {
  it.each([
    ['s-maxage wins over max-age', 200, { 'cache-control': 'max-age=10, s-maxage=30' }, 30, 's-maxage'],
    ['max-age wins over Expires', 200, { 'cache-control': 'max-age=10', expires: date(100), date: date(0) }, 10, 'max-age'],
    ['Expires minus Date', 200, { expires: date(100), date: date(0) }, 100, 'expires'],
    ['invalid Expires is already expired', 200, { expires: '0', date: date(0) }, 0, 'expires'],
    ['heuristic: 10% of Date - Last-Modified', 200, { date: date(0), 'last-modified': date(-1000) }, 100, 'heuristic'],
    ['heuristic capped at one day', 200, { date: date(0), 'last-modified': date(-86_400 * 100) }, 86_400, 'heuristic'],
    ['no heuristic for a non-heuristically-cacheable status', 302, { date: date(0), 'last-modified': date(-1000) }, 0, 'none'],
    ['nothing explicit, no Last-Modified: not reusable', 200, { date: date(0) }, 0, 'none'],
    ['invalid max-age is stale', 200, { 'cache-control': 'max-age=abc' }, 0, 'max-age'],
  ] as const)('%s', (_name, status, headers, lifetime, source) => {
    expect(freshnessLifetime(status, headers, NOW)).toEqual({ lifetimeSec: lifetime, source });
  });

  it('defaultTtl replaces heuristics when nothing explicit is given (Varnish default_ttl)', () => {
    const opts = { defaultTtlSec: 120, heuristicFraction: 0.1, heuristicMaxSec: 86_400 };
    expect(freshnessLifetime(200, { date: date(0) }, NOW, opts)).toEqual({ lifetimeSec: 120, source: 'default-ttl' });
    expect(freshnessLifetime(200, { 'cache-control': 'max-age=5' }, NOW, opts).lifetimeSec).toBe(5);
  });
});

describe('HTTP dates read again (parseHttpDate keeps the last one, issue 16)', () => {
  it('Expires lifetimes stay right when Date and Expires values alternate', () => {
    const a = { date: 'Wed, 02 Dec 2026 10:00:00 GMT', expires: 'Wed, 02 Dec 2026 10:01:00 GMT' };
    const b = { date: 'Wed, 02 Dec 2026 10:00:30 GMT', expires: 'Wed, 02 Dec 2026 10:10:30 GMT' };
    for (let i = 0; i < 3; i++) {
      expect(freshnessLifetime(200, a, 0)).toEqual({ lifetimeSec: 60, source: 'expires' });
      expect(freshnessLifetime(200, b, 0)).toEqual({ lifetimeSec: 600, source: 'expires' });
      expect(freshnessLifetime(200, { ...a, expires: '0' }, 0)).toEqual({ lifetimeSec: 0, source: 'expires' });
    }
  });
});

describe('initialAgeSec (RFC 9111 §4.2.3)', () => {
  it('takes the larger of apparent age and Age plus response delay', () => {
    expect(initialAgeSec({ date: date(-30) }, NOW - 2000, NOW)).toBe(30);
    expect(initialAgeSec({ date: date(0), age: '50' }, NOW - 2000, NOW)).toBe(52);
    expect(initialAgeSec({}, NOW, NOW)).toBe(0);
  });
});

describe('notStorableReason (RFC 9111 §3, shared cache)', () => {
  const none = parseCacheControl('');
  it.each([
    ['GET 200 max-age', 'GET', 200, { 'cache-control': 'max-age=60' }, false, undefined],
    ['POST', 'POST', 200, { 'cache-control': 'max-age=60' }, false, 'method'],
    ['206 is not stored whole', 'GET', 206, { 'cache-control': 'max-age=60' }, false, 'status'],
    ['no-store', 'GET', 200, { 'cache-control': 'no-store' }, false, 'no-store'],
    ['private', 'GET', 200, { 'cache-control': 'private, max-age=60' }, false, 'private'],
    ['Authorization without public', 'GET', 200, { 'cache-control': 'max-age=60' }, true, 'authorization'],
    ['Authorization with s-maxage', 'GET', 200, { 'cache-control': 's-maxage=60' }, true, undefined],
    ['Vary: *', 'GET', 200, { vary: 'Accept, *' }, false, 'vary-star'],
  ] as const)('%s', (_n, method, status, headers, auth, want) => {
    expect(notStorableReason(method, status, headers, none, auth)).toBe(want);
  });

  it('honours no-store in the request', () => {
    expect(notStorableReason('GET', 200, {}, parseCacheControl('no-store'), false)).toBe('no-store');
  });

  it('builtin policy refuses Set-Cookie, no-cache and Surrogate-Control: no-store', () => {
    expect(builtinUncacheableReason({ 'set-cookie': ['a=1'] })).toBe('set-cookie');
    expect(builtinUncacheableReason({ 'cache-control': 'no-cache' })).toBe('no-cache');
    expect(builtinUncacheableReason({ 'surrogate-control': 'no-store' })).toBe('surrogate-control');
    expect(builtinUncacheableReason({ 'cache-control': 'max-age=1' })).toBeUndefined();
  });
});

describe('stripHopByHop (RFC 9110 §7.6.1)', () => {
  it('removes connection-specific fields and those Connection names', () => {
    const out = stripHopByHop({
      connection: 'keep-alive, X-Secret',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      trailer: 'x',
      upgrade: 'websocket',
      'proxy-authorization': 'Basic x',
      'proxy-connection': 'keep-alive',
      'x-secret': '1',
      'transfer-encoding': 'chunked',
      'content-length': '5',
      'x-keep': 'yes',
    });
    expect(out).toEqual({ 'x-keep': 'yes' });
    expect(stripHopByHop({ 'content-length': '5' }, { keepContentLength: true })).toEqual({ 'content-length': '5' });
  });
});

describe('vary (RFC 9111 §4.1)', () => {
  it('signature differs exactly when a varied field differs', () => {
    const f = varyFields({ vary: 'Accept-Encoding, Accept-Language' });
    expect(f).toEqual(['accept-encoding', 'accept-language']);
    const a = varySignature(f, { 'accept-encoding': 'gzip,  br', 'accept-language': 'en' });
    const b = varySignature(f, { 'accept-encoding': 'gzip, br', 'accept-language': 'en', cookie: 'x' });
    const c = varySignature(f, { 'accept-encoding': 'gzip', 'accept-language': 'en' });
    const d = varySignature(f, { 'accept-language': 'en' });
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(c).not.toBe(d);
  });
});

describe('Cache-Status (RFC 9211)', () => {
  it.each([
    [{ hit: true, ttlSec: 59.7 }, 'sluice; hit; ttl=59'],
    [{ fwd: 'uri-miss', fwdStatus: 200, stored: true }, 'sluice; fwd=uri-miss; fwd-status=200; stored'],
    [{ fwd: 'uri-miss', detail: 'pass' }, 'sluice; fwd=uri-miss; detail=pass'],
  ] as const)('%o', (s, want) => {
    expect(formatCacheStatus('sluice', s)).toBe(want);
  });
});
