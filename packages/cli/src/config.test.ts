import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseListen, toConfig } from './config.js';
import { policyOf } from './compose.js';
import { parseDurationSec, parseSizeBytes } from './units.js';

describe('units', () => {
  it.each([
    ['1048576', 1048576],
    ['512k', 512 * 1024],
    ['64KiB', 64 * 1024],
    ['256MB', 256 * 1024 * 1024],
    ['1g', 1024 ** 3],
    ['10b', 10],
    ['12xb', undefined],
    ['-1', undefined],
    ['', undefined],
  ])('size %s', (raw, want) => expect(parseSizeBytes(raw)).toBe(want));

  it.each([
    ['90', 90],
    ['500ms', 0.5],
    ['10s', 10],
    ['2m', 120],
    ['1h', 3600],
    ['1d', 86400],
    ['2 minutes', undefined],
    ['abc', undefined],
  ])('duration %s', (raw, want) => expect(parseDurationSec(raw)).toBe(want));
});

describe('toConfig', () => {
  it('applies defaults and flags', () => {
    const c = toConfig({ backend: ['http://127.0.0.1:8080'], storage: '1MB', 'default-ttl': '2m' });
    expect(c).toMatchObject({
      listenHost: '127.0.0.1',
      listenPort: 6081,
      backends: [{ url: 'http://127.0.0.1:8080' }],
      storageBytes: 1024 * 1024,
      defaultTtlSec: 120,
      // RFC-strict defaults (issue 12): no grace, expired objects kept a day for revalidation.
      profile: 'rfc',
      graceSec: 0,
      keepSec: 86_400,
      staleIfDisconnected: true,
      hitForMissSec: 120,
      stream: true,
    });
    expect(toConfig({ backend: ['http://127.0.0.1:8080'] }).defaultTtlSec).toBeUndefined();
  });

  it("--profile varnish restores Varnish's builtin defaults (default TTL 120 s, grace 10 s, keep 0); flags still win", () => {
    const backend = ['http://127.0.0.1:8080'];
    expect(toConfig({ backend, profile: 'varnish' })).toMatchObject({ profile: 'varnish', defaultTtlSec: 120, graceSec: 10, keepSec: 0, staleIfDisconnected: false });
    expect(toConfig({ backend }, { profile: 'varnish' })).toMatchObject({ defaultTtlSec: 120, graceSec: 10, keepSec: 0 });
    expect(toConfig({ backend, profile: 'varnish', grace: '30s', 'default-ttl': '5s' })).toMatchObject({ defaultTtlSec: 5, graceSec: 30, keepSec: 0 });
    expect(toConfig({ backend, grace: '10s' })).toMatchObject({ profile: 'rfc', graceSec: 10, keepSec: 86_400 });
    expect(() => toConfig({ backend, profile: 'squid' })).toThrow(/--profile: "squid" is not one of rfc, varnish/);
  });

  it('--cache-targets (or the file\'s cacheTargets) sets the targeted fields obeyed; none empties it; the profile and core decide when unset', () => {
    const backend = ['http://127.0.0.1:8080'];
    expect(toConfig({ backend }).cacheTargets).toBeUndefined();
    expect(toConfig({ backend, 'cache-targets': 'Sluice-Cache-Control, cdn-cache-control' }).cacheTargets).toEqual(['sluice-cache-control', 'cdn-cache-control']);
    expect(toConfig({ backend, 'cache-targets': 'none' }).cacheTargets).toEqual([]);
    expect(toConfig({ backend }, { cacheTargets: ['surrogate-control'] }).cacheTargets).toEqual(['surrogate-control']);
    expect(policyOf(toConfig({ backend, profile: 'varnish', 'cache-targets': 'cdn-cache-control' }))).toMatchObject({ profile: 'varnish', cacheTargets: ['cdn-cache-control'] });
    expect(() => toConfig({ backend, 'cache-targets': 'cdn cache control' })).toThrow(/--cache-targets: "cdn cache control" is not a header field name/);
  });

  it('flags win over the config file; the file fills the rest', () => {
    const c = toConfig({ storage: '2MB' }, { storage: '1GB', backends: ['http://a.test:81'], grace: '1m', listen: ':7000' });
    expect(c.storageBytes).toBe(2 * 1024 * 1024);
    expect(c.graceSec).toBe(60);
    expect(c.listenPort).toBe(7000);
    expect(c.backends).toEqual([{ url: 'http://a.test:81' }]);
  });

  it.each([
    [{ backend: ['ftp://x'] }, {}, /must start with http/],
    [{ backend: ['http://x/path'] }, {}, /must not have a path/],
    [{}, {}, /no backend/],
    [{ backend: ['http://x'], grace: 'soon' }, {}, /--grace: "soon" is not a duration/],
    [{ backend: ['http://x'], listen: 'nowhere' }, {}, /--listen/],
    [{ backend: ['http://x'] }, { colour: 'red' }, /unknown setting "colour"/],
    [{ backend: ['http://x'], director: 'closest' }, {}, /--director: "closest" is not one of/],
    [{ backend: ['http://x'], 'connect-allow': ['example.com'] }, {}, /--connect-allow: "example.com" is not host:port/],
    [{ backend: ['http://x'], 'slice-size': '12' }, {}, /--slice-size: "12" is too small/],
    [{ backend: ['http://x'], 'slice-size': 'big' }, {}, /--slice-size: "big" is not a size/],
    [{ backend: ['http://x'], 'slice-url': '\\.mp4$' }, {}, /--slice-url needs --slice or --slice-size/],
    [{ backend: ['http://x'], 'slice-min': '16MB' }, {}, /--slice-min needs --slice/],
    [{ backend: ['http://x'], slice: '1MB', 'slice-size': '1MB' }, {}, /--slice and --slice-size exclude each other/],
    [{ backend: ['http://x'], 'slice-size': '1MB', 'slice-min': '16MB' }, {}, /--slice-min goes with --slice/],
    [{ backend: ['http://x'], slice: '1MB', 'slice-read-ahead': 17 }, {}, /--slice-read-ahead: "17"/],
    [{ backend: ['http://x'], 'slice-size': '1MB', 'slice-runs': true }, {}, /--slice-runs goes with --slice/],
    [{ backend: ['http://x'], 'slice-size': '1MB', 'slice-url': '(' }, {}, /--slice-url: "\(" is not a regular expression/],
    [{ backend: ['http://x'], 'log-grouping': 'raw' }, {}, /--log-grouping: "raw" is not one of request, vxid, session/],
    [{}, { backends: [{ url: 'http://x', name: 'a' }], directors: { d: { backends: ['b'] } } }, /config directors\.d: no backend is named "b" \(backends: a\)/],
    [{}, { backends: [{ url: 'http://x', name: 'a' }], directors: { d: { backends: [] } } }, /config directors\.d: needs backends, a non-empty list of backend names/],
    [{}, { backends: [{ url: 'http://x', name: 'a' }], directors: { a: { backends: ['a'] } } }, /config directors\.a: a backend has this name/],
    [{}, { backends: [{ url: 'http://x', name: 'a' }], directors: { d: { type: 'closest', backends: ['a'] } } }, /config directors\.d: type "closest" is not one of/],
    [{}, { backends: ['http://x'], directors: ['x'] }, /config directors: must be an object/],
    [{}, { backends: ['http://x'], hooks: { recv: () => undefined } }, /config hooks: unknown hook "recv" \(hooks: newCtx, requestFilter, .*\); Varnish's vcl_recv is requestFilter$/],
    [{}, { backends: ['http://x'], hooks: { respnseFilter: () => undefined } }, /config hooks: unknown hook "respnseFilter" \(hooks: .*responseFilter.*\)$/],
    [{}, { backends: ['http://x'], hooks: { requestFilter: 'pass' } }, /config hooks\.requestFilter: must be a function/],
  ])('rejects bad input with one line naming it (%o %o)', (flags, file, msg) => {
    expect(() => toConfig(flags, file as never)).toThrow(msg);
  });

  it('slicing decided from the response: --slice, --slice-min (default one segment), --slice-read-ahead, or file keys', () => {
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-min': '16MB', 'slice-read-ahead': 4 }).slice).toEqual({
      sizeBytes: 1024 * 1024,
      match: undefined,
      minBytes: 16 * 1024 * 1024,
      readAhead: 4,
    });
    expect(toConfig({ backend: ['http://x'], slice: '1MB' }).slice?.minBytes).toBe(1024 * 1024);
    const c = toConfig({ backend: ['http://x'] }, { slice: '2MB', sliceMin: '64MB', sliceReadAhead: 2, sliceUrl: '\\.iso$' });
    expect(c.slice).toMatchObject({ sizeBytes: 2 * 1024 * 1024, minBytes: 64 * 1024 * 1024, readAhead: 2 });
    expect(c.slice?.match?.test('/x.iso')).toBe(true);
    expect(toConfig({ backend: ['http://x'], 'slice-size': '1MB' }).slice?.minBytes).toBeUndefined();
  });

  it('run fetches: --slice-runs or sliceRuns in the config file, with --slice; on by default (core\'s default: not passed), --no-slice-runs or sliceRuns: false turns them off', () => {
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-runs': true }).slice?.runs).toBe(true);
    expect(toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceRuns: true }).slice?.runs).toBe(true);
    expect(toConfig({ backend: ['http://x'], slice: '1MB' }).slice?.runs).toBeUndefined();
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-runs': false }).slice?.runs).toBe(false);
    expect(toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceRuns: false }).slice?.runs).toBe(false);
    // The flag wins over the file, both ways.
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-runs': false }, { sliceRuns: true }).slice?.runs).toBe(false);
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-runs': true }, { sliceRuns: false }).slice?.runs).toBe(true);
  });

  it('the kept 200 body (first run): off by default (not passed), --slice-keep-body or sliceKeepBody: true turns it on; it needs --slice and runs; a non-boolean is refused', () => {
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-keep-body': true }).slice?.keepBody).toBe(true);
    expect(toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceKeepBody: true }).slice?.keepBody).toBe(true);
    expect(toConfig({ backend: ['http://x'], slice: '1MB' }).slice?.keepBody).toBeUndefined();
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-keep-body': false }).slice?.keepBody).toBe(false);
    expect(toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceKeepBody: false }).slice?.keepBody).toBe(false);
    expect(toConfig({ backend: ['http://x'], slice: '1MB', 'slice-keep-body': true }, { sliceKeepBody: false }).slice?.keepBody).toBe(true);
    expect(() => toConfig({ backend: ['http://x'], 'slice-size': '1MB', 'slice-keep-body': true })).toThrow(/--slice-keep-body goes with --slice and runs/);
    expect(() => toConfig({ backend: ['http://x'], slice: '1MB', 'slice-runs': false, 'slice-keep-body': true })).toThrow(/--slice-keep-body goes with --slice and runs/);
    expect(() => toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceKeepBody: 'no' } as never)).toThrow(/config: sliceKeepBody must be true or false/);
    expect(() => toConfig({ backend: ['http://x'] }, { slice: '1MB', sliceRuns: 'false' } as never)).toThrow(/config: sliceRuns must be true or false/);
  });

  it('slicing: --slice-size and --slice-url, or sliceSize and sliceUrl in the config file', () => {
    expect(toConfig({ backend: ['http://x'] }).slice).toBeUndefined();
    expect(toConfig({ backend: ['http://x'], 'slice-size': '1MB' }).slice).toEqual({ sizeBytes: 1024 * 1024, match: undefined });
    const c = toConfig({ backend: ['http://x'] }, { sliceSize: '512k', sliceUrl: '\\.iso$' });
    expect(c.slice?.sizeBytes).toBe(512 * 1024);
    expect(c.slice?.match?.test('/x.iso')).toBe(true);
  });

  it('parses listen forms', () => {
    expect(parseListen('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseListen('8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListen('[::1]:81')).toEqual({ host: '::1', port: 81 });
  });
});

describe('hardening settings', () => {
  const base = { backend: ['http://127.0.0.1:9'] };

  it('defaults: 30 s shutdown, 20 s body idle, 500 B/s, 100 MiB body, 60 s send, 5 min tunnel idle, secrets masked', () => {
    const c = toConfig(base);
    expect(c.shutdownTimeoutSec).toBe(30);
    expect(c.requestBody).toEqual({ idleTimeoutMs: 20_000, minBytesPerSec: 500, maxBytes: 100 * 1024 * 1024 });
    expect(c.sendTimeoutMs).toBe(60_000);
    expect(c.tunnelIdleTimeoutMs).toBe(300_000);
    expect(c.logSecrets).toBe(false);
  });

  it('flags and config keys set them; flags win', () => {
    const c = toConfig(
      { ...base, 'shutdown-timeout': '5s', 'max-body-size': '1MB', 'body-timeout': '2s', 'send-timeout': '10s', 'log-secrets': true },
      { bodyMinRate: '1k', tunnelIdleTimeout: '1m', shutdownTimeout: '99s' },
    );
    expect(c.shutdownTimeoutSec).toBe(5);
    expect(c.requestBody).toEqual({ idleTimeoutMs: 2_000, minBytesPerSec: 1024, maxBytes: 1024 * 1024 });
    expect(c.sendTimeoutMs).toBe(10_000);
    expect(c.tunnelIdleTimeoutMs).toBe(60_000);
    expect(c.logSecrets).toBe(true);
  });

  it('a bad value names its flag', () => {
    expect(() => toConfig({ ...base, 'body-timeout': 'soon' })).toThrow(/--body-timeout: "soon" is not a duration/);
    expect(() => toConfig({ ...base, 'max-body-size': 'big' })).toThrow(/--max-body-size: "big" is not a size/);
  });

  it('--admin-token-file reads the token from the first line of a file (kept out of ps)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-token-'));
    const file = path.join(dir, 'token');
    writeFileSync(file, 'secret-token-123\nignored\n');
    expect(toConfig({ ...base, 'admin-token-file': file }).adminToken).toBe('secret-token-123');
    expect(() => toConfig({ ...base, 'admin-token-file': path.join(dir, 'missing') })).toThrow(/--admin-token-file: cannot read .*ENOENT/);
  });
});

describe('restart and retry limits (issue 14)', () => {
  it('default to Varnish 4 and 4; flags and the config file set them; a negative one is refused', () => {
    const base = { backend: ['http://127.0.0.1:1'] };
    const d = toConfig(base, {});
    expect([d.maxRestarts, d.maxRetries]).toEqual([4, 4]);
    const f = toConfig({ ...base, 'max-restarts': 0, 'max-retries': 1 }, {});
    expect([f.maxRestarts, f.maxRetries]).toEqual([0, 1]);
    expect(toConfig(base, { maxRestarts: 2 }).maxRestarts).toBe(2);
    expect(() => toConfig(base, { maxRetries: -1 })).toThrow(/--max-retries: "-1" is not a whole number/);
  });
});
