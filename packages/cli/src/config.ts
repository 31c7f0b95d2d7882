import { pathToFileURL } from 'node:url';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ProxyHooks } from '@sluice/core';
import type { BackendConfig, DirectorType, NamedDirectorConfig } from '@sluice/origin-client';
import { CliError } from './errors.js';
import { size, duration, logGroupingOf, accessLogOf, adminListenOf, adminTokenOf, connectAllowOf, PROFILES, cacheTargetsOf, profileOf, DIRECTORS, DEFAULT_STREAM_MIN_BYTES, sliceOf, wholeNumber, esiDepthOf, positiveInt, parseListen, backendOf, type Profile } from './config-values.js';
export { DEFAULT_STREAM_MIN_BYTES, parseListen, PROFILES, type Profile } from './config-values.js';

/**
 * Settings: flags and the optional --config module -> one typed Config. Flags win over the file. Pure except for
 * loading the module.
 */
export interface Config {
  listenHost: string;
  listenPort: number;
  backends: BackendConfig[];
  director: DirectorType;
  /** Named directors a policy can pick per request (`req.backend = 'name'`), over some of the backends. */
  directors: Record<string, NamedDirectorConfig>;
  /** CONNECT destinations allowed (`host:port`, `*`, `*.domain`); empty = CONNECT refused. */
  connectAllow: string[];
  /** Admin listener address (undefined: off) and its token. */
  adminListen: { host: string; port: number } | undefined;
  adminToken: string | undefined;
  /** Addresses allowed to send PURGE. */
  purgeAllow: string[];
  /** Transaction log format and destination (undefined file: stdout). */
  log: 'none' | 'text' | 'ndjson' | 'ncsa';
  /** With log ncsa: a varnishncsa -F format (undefined: varnishncsa's default, combined). */
  logFormat: string | undefined;
  logFile: string | undefined;
  /** request: a block per client request (varnishlog -g request); vxid: a block per transaction, sessions too. */
  logGrouping: 'request' | 'vxid' | 'session';
  storageBytes: number;
  /** The defaults the settings start from: RFC 9111 strict, or Varnish's builtin. */
  profile: Profile;
  /** Targeted cache-control fields obeyed over Cache-Control (RFC 9213), lowercase; undefined: the profile's. */
  cacheTargets: string[] | undefined;
  defaultTtlSec: number | undefined;
  graceSec: number;
  keepSec: number;
  /** Serve a kept stale object when the origin cannot be reached (unless the response forbids stale). */
  staleIfDisconnected: boolean;
  hitForMissSec: number;
  transitBytes: number;
  streamMinBytes: number;
  maxRanges: number;
  /** Most restarts of one request, and retries of one fetch, by policy (Varnish's max_restarts, max_retries). */
  maxRestarts: number;
  maxRetries: number;
  /** The slicer: segment size and the URLs it applies to (undefined: off). */
  slice:
    | { sizeBytes: number; match: RegExp | undefined; minBytes?: number | undefined; readAhead?: number | undefined; runs?: boolean | undefined; keepBody?: boolean | undefined }
    | undefined;
  /** false: every response is fetched whole before delivery (doStream off), unless a hook turns it back on. */
  stream: boolean;
  /** ESI (objects a hook marks doEsi): include nesting depth (max_esi_depth) and Varnish's feature esi_include_onerror. */
  esi: { maxDepth: number; includeOnError: boolean };
  quiet: boolean;
  hooks: ProxyHooks;
  /** Write Authorization, Cookie and Set-Cookie values to the transaction log as they are (default: masked). */
  logSecrets: boolean;
  /** Client sockets read into one shared buffer (core's ProxyOptions.sharedReadBuffer). */
  sharedReadBuffer: boolean;
  /** Prepared hits written straight to the socket's handle (core's ProxyOptions.directWrites). */
  directWrites: boolean;
  /** Longest wait for a client to take any byte of its response, ms. */
  sendTimeoutMs: number;
  /** A CONNECT tunnel silent both ways this long is closed, ms. */
  tunnelIdleTimeoutMs: number;
  /** How long SIGTERM waits for responses in flight before cutting them, seconds. */
  shutdownTimeoutSec: number;
  /** Request-body limits: idle timeout, minimum rate, size cap (408 / 413). */
  requestBody: { idleTimeoutMs: number; minBytesPerSec: number; maxBytes: number };
}

/**
 * What a --config module may export (default export), every field optional. Sizes/durations as strings or numbers.
 * `Ctx` is the per-request context the hooks share (what `hooks.newCtx` returns); write the file with `defineConfig`
 * to have it inferred and checked.
 */
export interface ConfigFile<Ctx = Record<string, unknown>> {
  listen?: string;
  backends?: Array<string | BackendConfig>;
  director?: DirectorType;
  /**
   * Named directors, `{ api: { type: 'shard', backends: ['api1', 'api2'] } }` (type defaults to round-robin): a hook
   * setting `req.backend` (or `bereq.backend`) to one of these names spreads that request over its backends.
   */
  directors?: Record<string, { type?: DirectorType; backends: string[] }>;
  connectAllow?: string[];
  adminListen?: string;
  adminToken?: string;
  purgeAllow?: string[];
  log?: 'none' | 'text' | 'ndjson' | 'ncsa';
  logFormat?: string;
  logFile?: string;
  logGrouping?: 'request' | 'vxid' | 'session';
  storage?: string | number;
  profile?: Profile;
  cacheTargets?: string[];
  defaultTtl?: string | number;
  grace?: string | number;
  keep?: string | number;
  hitForMissTtl?: string | number;
  transitBuffer?: string | number;
  streamMinBytes?: string | number;
  maxRanges?: number;
  maxRestarts?: number;
  maxRetries?: number;
  /** Segment size, decided from the response (objects of at least sliceMin). */
  slice?: string | number;
  sliceMin?: string | number;
  sliceReadAhead?: number;
  /** Read-ahead of missing segments as runs, one origin Range request each (--slice-runs; on by default, false turns them off). */
  sliceRuns?: boolean;
  /** With runs: a sliced object's 200 body kept as its first run (--slice-keep-body; on by default, false closes it). */
  sliceKeepBody?: boolean;
  /** Segment size, sliced as the request arrives (nginx's model). */
  sliceSize?: string | number;
  sliceUrl?: string;
  stream?: boolean;
  /** ESI include nesting depth (Varnish's max_esi_depth, default 5; 0 turns includes off). */
  esiMaxDepth?: number;
  /** Varnish's feature esi_include_onerror (default false): see the README's ESI section. */
  esiIncludeOnError?: boolean;
  hooks?: ProxyHooks<Ctx>;
  shutdownTimeout?: string | number;
  maxBodySize?: string | number;
  bodyTimeout?: string | number;
  bodyMinRate?: string | number;
  adminTokenFile?: string;
  logSecrets?: boolean;
  sharedReadBuffer?: boolean;
  directWrites?: boolean;
  sendTimeout?: string | number;
  tunnelIdleTimeout?: string | number;
}

const FILE_KEYS = new Set([
  'listen',
  'backends',
  'director',
  'directors',
  'connectAllow',
  'adminListen',
  'adminToken',
  'purgeAllow',
  'log',
  'logFile',
  'logGrouping',
  'storage',
  'profile',
  'cacheTargets',
  'defaultTtl',
  'grace',
  'keep',
  'hitForMissTtl',
  'transitBuffer',
  'streamMinBytes',
  'maxRanges',
  'maxRestarts',
  'maxRetries',
  'slice',
  'sliceMin',
  'sliceReadAhead',
  'sliceRuns',
  'sliceKeepBody',
  'sliceSize',
  'sliceUrl',
  'stream',
  'esiMaxDepth',
  'esiIncludeOnError',
  'hooks',
  'shutdownTimeout',
  'maxBodySize',
  'bodyTimeout',
  'bodyMinRate',
  'adminTokenFile',
  'logSecrets',
  'sharedReadBuffer',
  'directWrites',
  'logFormat',
  'sendTimeout',
  'tunnelIdleTimeout',
]);

export interface ProxyFlags {
  listen?: string | undefined;
  backend?: string[] | undefined;
  director?: string | undefined;
  'connect-allow'?: string[] | undefined;
  'admin-listen'?: string | undefined;
  'admin-token'?: string | undefined;
  'purge-allow'?: string[] | undefined;
  log?: string | undefined;
  'log-file'?: string | undefined;
  'log-grouping'?: string | undefined;
  config?: string | undefined;
  storage?: string | undefined;
  profile?: string | undefined;
  'cache-targets'?: string | undefined;
  'default-ttl'?: string | undefined;
  grace?: string | undefined;
  keep?: string | undefined;
  'hit-for-miss-ttl'?: string | undefined;
  'transit-buffer'?: string | undefined;
  'stream-min-bytes'?: string | undefined;
  'max-ranges'?: number | undefined;
  'max-restarts'?: number | undefined;
  'max-retries'?: number | undefined;
  slice?: string | undefined;
  'slice-min'?: string | undefined;
  'slice-read-ahead'?: number | undefined;
  'slice-runs'?: boolean | undefined;
  'slice-keep-body'?: boolean | undefined;
  'slice-size'?: string | undefined;
  'slice-url'?: string | undefined;
  stream?: boolean | undefined;
  quiet?: boolean | undefined;
  'shutdown-timeout'?: string | undefined;
  'max-body-size'?: string | undefined;
  'body-timeout'?: string | undefined;
  'body-min-rate'?: string | undefined;
  'admin-token-file'?: string | undefined;
  'log-secrets'?: boolean | undefined;
  'shared-read-buffer'?: boolean | undefined;
  'direct-writes'?: boolean | undefined;
  'log-format'?: string | undefined;
  'send-timeout'?: string | undefined;
  'tunnel-idle-timeout'?: string | undefined;
}

/** Merges flags over the config file into a Config; throws CliError with one line naming the first problem. */
export function toConfig(flags: ProxyFlags, file: ConfigFile = {}): Config {
  for (const k of Object.keys(file)) {
    if (!FILE_KEYS.has(k)) throw new CliError('CLI_ERR_CONFIG_INVALID', `config: unknown setting "${k}"`);
  }
  const listen = parseListen(flags.listen ?? file.listen ?? '127.0.0.1:6081');
  const rawBackends: Array<string | BackendConfig> =
    flags.backend !== undefined && flags.backend.length > 0 ? flags.backend : (file.backends ?? []);
  if (rawBackends.length === 0) {
    throw new CliError('CLI_ERR_FLAG_INVALID', 'no backend: give --backend URL (example: --backend http://127.0.0.1:8080)');
  }
  const backends = rawBackends.map((b) => backendOf(b, flags.backend !== undefined ? '--backend' : 'config backends'));
  const director = flags.director ?? file.director ?? 'round-robin';
  if (!DIRECTORS.includes(director as DirectorType)) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--director: "${director}" is not one of ${DIRECTORS.join(', ')}`);
  }
  const directors = directorsOf(file.directors, backends);
  for (const b of backends) {
    if (b.tls?.dangerouslySkipTlsVerify === true) process.emitWarning(`TLS verification is OFF for backend ${b.url} (dangerouslySkipTlsVerify)`);
  }
  const storageBytes = size('--storage', flags.storage ?? file.storage, 256 * 1024 * 1024);
  const profile = profileOf(flags.profile ?? file.profile ?? 'rfc');
  const dflt = PROFILES[profile];
  if (storageBytes < 1024) throw new CliError('CLI_ERR_FLAG_INVALID', `--storage: ${storageBytes} bytes is too small (minimum 1k)`);
  return {
    listenHost: listen.host,
    listenPort: listen.port,
    backends,
    director: director as DirectorType,
    directors,
    connectAllow: connectAllowOf(flags['connect-allow'] ?? file.connectAllow ?? []),
    adminListen: adminListenOf(flags['admin-listen'] ?? file.adminListen),
    adminToken: adminTokenOf(flags['admin-token'] ?? file.adminToken ?? tokenFromFile(flags['admin-token-file'] ?? file.adminTokenFile) ?? process.env['SLUICE_ADMIN_TOKEN']),
    purgeAllow: [...(flags['purge-allow'] ?? file.purgeAllow ?? [])],
    ...accessLogOf(flags.log ?? file.log, flags['log-format'] ?? file.logFormat),
    logFile: flags['log-file'] ?? file.logFile,
    logGrouping: logGroupingOf(flags['log-grouping'] ?? file.logGrouping ?? 'request'),
    storageBytes,
    profile,
    cacheTargets: cacheTargetsOf(flags['cache-targets'], file.cacheTargets),
    defaultTtlSec: duration('--default-ttl', flags['default-ttl'] ?? file.defaultTtl) ?? dflt.defaultTtlSec,
    graceSec: duration('--grace', flags.grace ?? file.grace) ?? dflt.graceSec,
    keepSec: duration('--keep', flags.keep ?? file.keep) ?? dflt.keepSec,
    staleIfDisconnected: dflt.staleIfDisconnected,
    hitForMissSec: duration('--hit-for-miss-ttl', flags['hit-for-miss-ttl'] ?? file.hitForMissTtl) ?? 120,
    transitBytes: size('--transit-buffer', flags['transit-buffer'] ?? file.transitBuffer, 1024 * 1024),
    streamMinBytes: size('--stream-min-bytes', flags['stream-min-bytes'] ?? file.streamMinBytes, DEFAULT_STREAM_MIN_BYTES),
    maxRanges: positiveInt('--max-ranges', flags['max-ranges'] ?? file.maxRanges, 16),
    maxRestarts: wholeNumber('--max-restarts', flags['max-restarts'] ?? file.maxRestarts, 4),
    maxRetries: wholeNumber('--max-retries', flags['max-retries'] ?? file.maxRetries, 4),
    slice: sliceOf({
      adaptive: flags.slice ?? file.slice,
      min: flags['slice-min'] ?? file.sliceMin,
      readAhead: flags['slice-read-ahead'] ?? file.sliceReadAhead,
      runs: flags['slice-runs'] ?? booleanOf('sliceRuns', file.sliceRuns),
      keepBody: flags['slice-keep-body'] ?? booleanOf('sliceKeepBody', file.sliceKeepBody),
      onArrival: flags['slice-size'] ?? file.sliceSize,
      url: flags['slice-url'] ?? file.sliceUrl,
    }),
    stream: flags.stream ?? file.stream ?? true,
    esi: { maxDepth: esiDepthOf(file.esiMaxDepth), includeOnError: file.esiIncludeOnError ?? false },
    quiet: flags.quiet ?? false,
    hooks: hooksOf(file.hooks),
    logSecrets: flags['log-secrets'] ?? file.logSecrets ?? false,
    sharedReadBuffer: flags['shared-read-buffer'] ?? booleanOf('sharedReadBuffer', file.sharedReadBuffer) ?? true,
    directWrites: flags['direct-writes'] ?? booleanOf('directWrites', file.directWrites) ?? true,
    sendTimeoutMs: Math.round((duration('--send-timeout', flags['send-timeout'] ?? file.sendTimeout) ?? 60) * 1000),
    tunnelIdleTimeoutMs: Math.round((duration('--tunnel-idle-timeout', flags['tunnel-idle-timeout'] ?? file.tunnelIdleTimeout) ?? 300) * 1000),
    shutdownTimeoutSec: duration('--shutdown-timeout', flags['shutdown-timeout'] ?? file.shutdownTimeout) ?? 30,
    requestBody: {
      idleTimeoutMs: Math.round((duration('--body-timeout', flags['body-timeout'] ?? file.bodyTimeout) ?? 20) * 1000),
      minBytesPerSec: size('--body-min-rate', flags['body-min-rate'] ?? file.bodyMinRate, 500),
      maxBytes: size('--max-body-size', flags['max-body-size'] ?? file.maxBodySize, 100 * 1024 * 1024),
    },
  };
}

/** Every hook a config may define; the compiler keeps this in step with core's ProxyHooks. */
const HOOK_NAMES: Record<keyof Required<ProxyHooks>, string> = {
  newCtx: '',
  requestFilter: 'vcl_recv',
  cacheKey: 'vcl_hash',
  upstreamRequestFilter: 'vcl_backend_fetch',
  upstreamResponseFilter: 'vcl_backend_response',
  backendError: 'vcl_backend_error',
  responseFilter: 'vcl_deliver',
  sliceSize: '',
};

/** The config's hooks, checked: a misspelt hook (or a VCL subroutine's name) would otherwise never run, silently. */
function hooksOf(raw: ConfigFile['hooks']): ProxyHooks {
  if (raw === undefined) return {};
  if (raw === null || typeof raw !== 'object') throw new CliError('CLI_ERR_CONFIG_INVALID', 'config hooks: must be an object of functions');
  for (const [name, fn] of Object.entries(raw)) {
    if (!(name in HOOK_NAMES)) {
      const vcl = Object.entries(HOOK_NAMES).find(([, sub]) => sub !== '' && (sub === name || sub === `vcl_${name}`))?.[0];
      const hint = vcl !== undefined ? `; Varnish's ${name.startsWith('vcl_') ? name : `vcl_${name}`} is ${vcl}` : '';
      throw new CliError('CLI_ERR_CONFIG_INVALID', `config hooks: unknown hook "${name}" (hooks: ${Object.keys(HOOK_NAMES).join(', ')})${hint}`);
    }
    if (typeof fn !== 'function') throw new CliError('CLI_ERR_CONFIG_INVALID', `config hooks.${name}: must be a function`);
  }
  return raw as ProxyHooks;
}

/** The config file's named directors, checked: each over existing backends (by name), none named like a backend. */
function directorsOf(raw: ConfigFile['directors'], backends: BackendConfig[]): Record<string, NamedDirectorConfig> {
  if (raw === undefined) return {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CliError('CLI_ERR_CONFIG_INVALID', 'config directors: must be an object of { name: { type, backends: [names] } }');
  }
  const names = new Set(backends.map((b) => b.name ?? new URL(b.url).host));
  const out: Record<string, NamedDirectorConfig> = {};
  for (const [name, d] of Object.entries(raw)) {
    const where = `config directors.${name}`;
    if (names.has(name)) throw new CliError('CLI_ERR_CONFIG_INVALID', `${where}: a backend has this name; a director needs a name of its own`);
    if (d === null || typeof d !== 'object' || !Array.isArray(d.backends) || d.backends.length === 0 || !d.backends.every((b) => typeof b === 'string')) {
      throw new CliError('CLI_ERR_CONFIG_INVALID', `${where}: needs backends, a non-empty list of backend names`);
    }
    const type = d.type ?? 'round-robin';
    if (!DIRECTORS.includes(type)) throw new CliError('CLI_ERR_CONFIG_INVALID', `${where}: type "${String(type)}" is not one of ${DIRECTORS.join(', ')}`);
    const unknown = d.backends.find((b) => !names.has(b));
    if (unknown !== undefined) throw new CliError('CLI_ERR_CONFIG_INVALID', `${where}: no backend is named "${unknown}" (backends: ${[...names].join(', ')})`);
    out[name] = { type, backends: [...d.backends] };
  }
  return out;
}

/** A JSON config (settings only: hooks need a module); a parse error named with its line and column. */
function jsonConfig(abs: string, file: string): ConfigFile {
  const text = readFileSync(abs, 'utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e: unknown) {
    const msg = e instanceof Error ? e.message : String(e);
    const pos = /position (\d+)/.exec(msg);
    let where = file;
    if (pos !== null) {
      const before = text.slice(0, Number(pos[1])).split('\n');
      where = `${file}:${before.length}:${(before[before.length - 1] ?? '').length + 1}`;
    }
    throw new CliError('CLI_ERR_CONFIG_LOAD', `--config: ${where}: ${msg.replace(/ in JSON at position \d+.*$/, '')}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CliError('CLI_ERR_CONFIG_INVALID', `--config: ${file} must hold a JSON object`);
  if ('hooks' in v) throw new CliError('CLI_ERR_CONFIG_INVALID', `--config: ${file}: hooks need a JS or TS module, not JSON`);
  return v as ConfigFile;
}

/** The admin token kept in a file (so it does not show in `ps`): its first line, trimmed. */
function tokenFromFile(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return (readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '').trim();
  } catch (e: unknown) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--admin-token-file: cannot read ${file} (${(e as { code?: string }).code ?? String(e)})`);
  }
}

/**
 * Loads a --config module: .js/.mjs are imported; .ts/.mts are transpiled with TypeScript to a temporary .mjs beside
 * the file (so its relative imports resolve), imported, and the temporary file removed.
 */
let loads = 0;

export async function loadConfigFile(file: string): Promise<ConfigFile> {
  const abs = path.resolve(file);
  // Each load imports the file anew (a reload must see its new contents, not the module cache).
  const n = ++loads;
  if (!existsSync(abs)) throw new CliError('CLI_ERR_CONFIG_LOAD', `--config: file not found: ${file}`);
  if (/\.json$/i.test(abs)) return jsonConfig(abs, file);
  let target = abs;
  let temp: string | undefined;
  const ts = (await import('typescript')).default;
  const source = readFileSync(abs, 'utf8');
  // Parsed first, with TypeScript's diagnostics, so a syntax error is named with file:line:column (Node's import
  // error says only "Unexpected token").
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, allowJs: true },
    fileName: abs,
    reportDiagnostics: true,
  });
  const diag = out.diagnostics?.find((d) => d.category === ts.DiagnosticCategory.Error);
  if (diag !== undefined) {
    const at = diag.file !== undefined && diag.start !== undefined ? diag.file.getLineAndCharacterOfPosition(diag.start) : undefined;
    const where = at === undefined ? file : `${file}:${at.line + 1}:${at.character + 1}`;
    throw new CliError('CLI_ERR_CONFIG_LOAD', `--config: ${where}: ${ts.flattenDiagnosticMessageText(diag.messageText, ' ')}`);
  }
  if (/\.m?ts$/.test(abs)) {
    temp = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.${n}.mjs`);
    writeFileSync(temp, out.outputText);
    target = temp;
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(`${pathToFileURL(target).href}${n > 1 ? `?load=${n}` : ''}`)) as { default?: unknown };
  } catch (e: unknown) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new CliError('CLI_ERR_CONFIG_LOAD', `--config: cannot load ${file}: ${msg}`, { cause: e });
  } finally {
    if (temp !== undefined) unlinkSync(temp);
  }
  const cfg = mod.default;
  if (cfg === null || typeof cfg !== 'object') {
    throw new CliError('CLI_ERR_CONFIG_INVALID', `--config: ${file} must default-export an object`);
  }
  return cfg as ConfigFile; // shape checked key by key in toConfig
}

/** A config file's boolean setting, refused with one line when it is something else (a string "false" is truthy). */
function booleanOf(key: string, v: unknown): boolean | undefined {
  if (v === undefined || typeof v === 'boolean') return v;
  throw new CliError('CLI_ERR_CONFIG_INVALID', `config: ${key} must be true or false, not ${JSON.stringify(v)}`);
}
