import { Command } from '@oclif/core';
import { loadConfigFile, toConfig, type Config } from '../config.js';
import { CliError } from '../errors.js';
import ProxyCommand from './proxy.js';

/**
 * `sluice check`: what `varnishd -C` and `nginx -t` are to them. Loads the config file and flags exactly as `proxy`
 * would, prints the effective settings, and exits 0 when they are valid, 1 (one line naming the problem) when not.
 * Nothing listens.
 */
export default class CheckCommand extends Command {
  static override summary = 'Validate a configuration (file and flags) and print the effective settings, without serving.';
  static override examples = [
    '<%= config.bin %> check --config ./sluice.config.ts',
    '<%= config.bin %> check --backend http://127.0.0.1:8080 --grace 30s',
  ];
  static override flags = ProxyCommand.flags;

  async run(): Promise<void> {
    const { flags } = await this.parse(CheckCommand);
    let config: Config;
    try {
      const file = flags.config === undefined ? {} : await loadConfigFile(flags.config);
      config = toConfig(flags, file);
    } catch (e: unknown) {
      if (!(e instanceof CliError)) throw e;
      this.logToStderr(`sluice: configuration invalid: ${e.message}`);
      // Exit 1 as varnishd -C and nginx -t do for a bad configuration (a usage error elsewhere is 2).
      process.exitCode = 1;
      return;
    }
    for (const line of effectiveSettings(config)) this.log(line);
    this.log(`sluice: configuration OK${flags.config === undefined ? '' : ` (${flags.config})`}`);
  }
}

/** The settings a proxy would run with, one `name value` line each, in the flags' words. */
export function effectiveSettings(c: Config): string[] {
  const hooks = Object.keys(c.hooks).filter((k) => typeof (c.hooks as Record<string, unknown>)[k] === 'function');
  const rows: Array<[string, string]> = [
    ['listen', `${c.listenHost}:${c.listenPort}`],
    ['backends', c.backends.map((b) => b.url).join(', ')],
    ['director', c.director],
    ...Object.entries(c.directors).map(([name, d]): [string, string] => [`director ${name}`, `${d.type} over ${d.backends.join(', ')}`]),
    ['storage', mb(c.storageBytes)],
    ['default-ttl', c.defaultTtlSec === undefined ? 'none (RFC 9111 heuristics)' : `${c.defaultTtlSec}s`],
    ['grace', `${c.graceSec}s`],
    ['keep', `${c.keepSec}s`],
    ['hit-for-miss-ttl', `${c.hitForMissSec}s`],
    ['transit-buffer', mb(c.transitBytes)],
    ['stream', c.stream ? 'on' : 'off'],
    ['max-ranges', String(c.maxRanges)],
    ['max-restarts', String(c.maxRestarts)],
    ['max-retries', String(c.maxRetries)],
    ['slice', sliceLine(c.slice)],
    ['max-body-size', mb(c.requestBody.maxBytes)],
    ['body-timeout', `${c.requestBody.idleTimeoutMs / 1000}s`],
    ['body-min-rate', `${c.requestBody.minBytesPerSec}B/s`],
    ['send-timeout', `${c.sendTimeoutMs / 1000}s`],
    ['shutdown-timeout', `${c.shutdownTimeoutSec}s`],
    ['connect-allow', c.connectAllow.length === 0 ? 'none' : c.connectAllow.join(', ')],
    ['purge-allow', c.purgeAllow.length === 0 ? 'none' : c.purgeAllow.join(', ')],
    ['admin', c.adminListen === undefined ? 'off' : `${c.adminListen.host}:${c.adminListen.port} (token ${c.adminToken === undefined ? 'generated' : 'set'})`],
    ['log', c.log === 'none' ? 'off' : `${c.log}${c.logFormat === undefined ? '' : ` '${c.logFormat}'`}${c.logFile === undefined ? '' : ` to ${c.logFile}`}, -g ${c.logGrouping}${c.logSecrets ? ', secrets kept' : ''}`],
    ['hooks', hooks.length === 0 ? 'none (builtin)' : hooks.join(', ')],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
}

/** The slicer line of `check`: segment size, when it is decided, the URL filter, the read-ahead (as runs or not). */
function sliceLine(s: Config['slice']): string {
  if (s === undefined) return 'off';
  const when = s.minBytes === undefined ? 'as requests arrive' : `objects of at least ${mb(s.minBytes)}`;
  // Runs: decided from the response only, on unless turned off (core's default).
  const runs = s.minBytes === undefined ? '' : s.runs === false ? ', no runs' : s.keepBody === true ? ', as runs, the 200 kept as the first run' : ', as runs';
  return `${mb(s.sizeBytes)} segments, ${when}${s.match === undefined ? '' : ` for ${String(s.match)}`}, read-ahead ${s.readAhead ?? 4}${runs}`;
}

function mb(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)}MB` : `${n}B`;
}
