import { readFileSync } from 'node:fs';
import { terminalWidth } from '../table.js';
import { Progress, progressWanted } from '../progress.js';
import { Args, Command, Flags } from '@oclif/core';
import { CliError } from '../errors.js';
import { compare, formatComparison, formatReport, replay, type Comparison, type ReplayReport } from '../replay/replay.js';
import { readTrace, TraceFormatError, withHost, type Trace } from '../replay/trace.js';

export default class ReplayCommand extends Command {
  static override summary = 'Replay recorded traffic against a proxy and compare status and cache outcome with the recording.';
  static override description =
    'Reads varnishlog output (-g request, -g vxid, -g session or -g raw text, or a binary varnishlog -w file), Sluice\'s own text or NDJSON transaction log, or an NCSA combined log (varnishncsa, nginx, Apache). Each client request is sent again as the client sent it: request line, headers in their order and case (the X-Forwarded-For the recorder added is removed), and a made-up body of the recorded size. The report gives, per request, the recorded and observed status and outcome (hit, miss, pass, synth, pipe) and time to first byte, then the mismatches, latency percentiles, and every part of the trace that could not be replayed, with the reason.';
  static override examples = [
    '<%= config.bin %> replay varnishlog-request.log --target http://127.0.0.1:6081',
    '<%= config.bin %> replay sluice.ndjson --target http://127.0.0.1:6081 --speed 2',
    '<%= config.bin %> replay access.log --target http://127.0.0.1:6081 --asap --concurrency 16 --json',
    '<%= config.bin %> replay prod-varnishlog.txt --target http://127.0.0.1:6081 --host www.example.com',
    '<%= config.bin %> replay varnishlog.txt --target http://127.0.0.1:6081 --target http://127.0.0.1:6091   # Varnish vs Sluice',
  ];
  static override enableJsonFlag = true;
  static override args = { trace: Args.string({ description: 'Trace file to replay', required: true }) };
  static override flags = {
    target: Flags.string({
      summary: 'Where to send the requests; give it twice to compare two proxies (each replayed in turn, so both should start cold). e.g. --target http://127.0.0.1:6081 --target http://127.0.0.1:6091',
      helpValue: 'URL',
      required: true,
      multiple: true,
      // One value per --target, so `replay --target URL trace.log` keeps trace.log as the trace.
      multipleNonGreedy: true,
    }),
    speed: Flags.string({ summary: 'Timed replay speed: 1 = the recorded gaps, 2 = twice as fast (default 1). e.g. --speed 2', helpValue: 'N' }),
    asap: Flags.boolean({ summary: 'Send as fast as possible instead of on the recorded schedule. e.g. --asap --concurrency 8' }),
    concurrency: Flags.integer({ summary: 'Requests in flight with --asap (default 1). e.g. --concurrency 8', helpValue: 'N', min: 1 }),
    host: Flags.string({ summary: 'Replace the recorded Host header with this one (requests recorded without Host keep none). e.g. --host staging.example.com', helpValue: 'HOST' }),
    ca: Flags.string({ summary: 'PEM file of the CA to trust for an https:// target, instead of the system CAs. e.g. --ca ./staging-ca.pem', helpValue: 'FILE' }),
    insecure: Flags.boolean({ summary: 'Do not verify an https:// target\'s certificate (testing only). e.g. --insecure' }),
    'fail-on-mismatch': Flags.boolean({
      summary: 'Exit 1 when a status or cache outcome differs from the recording (with two --target: between the targets), for CI. e.g. --fail-on-mismatch',
    }),
    progress: Flags.boolean({
      summary: 'Progress on stderr (requests done, ETA): on by default when stderr is a terminal, --progress forces it (a line per tenth), --no-progress turns it off. e.g. --progress',
      allowNo: true,
    }),
    timeout: Flags.integer({ summary: 'Seconds to wait for each complete response (default 30). e.g. --timeout 5', helpValue: 'SECONDS', min: 1 }),
  };

  async run(): Promise<ReplayReport | Comparison> {
    const { args, flags } = await this.parse(ReplayCommand);
    const targets = flags.target.map(targetOf);
    const speed = flags.speed === undefined ? 1 : Number(flags.speed);
    if (!Number.isFinite(speed) || speed <= 0) throw new CliError('CLI_ERR_FLAG_INVALID', `--speed must be a number above 0 (e.g. --speed 2), got "${flags.speed}"`);
    if (flags.concurrency !== undefined && !flags.asap) throw new CliError('CLI_ERR_FLAG_INVALID', '--concurrency needs --asap (timed replay keeps the recorded concurrency)');
    if (flags.speed !== undefined && flags.asap) throw new CliError('CLI_ERR_FLAG_INVALID', 'give --speed or --asap, not both');
    const ca = flags.ca === undefined ? undefined : readCa(flags.ca);
    if (flags.insecure) process.stderr.write('sluice: warning: --insecure: https certificates are not verified\n');
    let trace: Trace;
    try {
      trace = readTrace(args.trace);
    } catch (e: unknown) {
      if (e instanceof TraceFormatError) throw new CliError('CLI_ERR_TRACE', e.message);
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError('CLI_ERR_TRACE', `cannot read ${args.trace}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    if (flags.host !== undefined) {
      if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(flags.host)) throw new CliError('CLI_ERR_FLAG_INVALID', `--host "${flags.host}" is not a host[:port] (e.g. --host staging.example.com)`);
      trace = withHost(trace, flags.host);
    }
    if (!this.jsonEnabled()) {
      process.stderr.write(`replaying ${trace.requests.length} requests from ${args.trace} (${trace.format}); ${trace.skipped.length} skipped\n`);
    }
    const reports: ReplayReport[] = [];
    // stderr only: --json's stdout stays one JSON document.
    const progress = new Progress(process.stderr, progressWanted(flags.progress), process.stderr.isTTY === true);
    for (const target of targets) {
      progress.begin(`replay ${target.origin}`, trace.requests.length, 'requests');
      reports.push(
        await replay(trace, args.trace, {
          onResult: () => progress.tick(),
          target,
          speed,
          asap: flags.asap,
          concurrency: flags.concurrency,
          timeoutMs: (flags.timeout ?? 30) * 1000,
          ca,
          insecure: flags.insecure,
        }),
      );
      progress.end();
    }
    const [only] = reports;
    const result = reports.length === 1 && only !== undefined ? only : compare(reports);
    if (!this.jsonEnabled()) this.log('reports' in result ? formatComparison(result) : formatReport(result, terminalWidth()));
    const failure = verdict(reports, 'reports' in result ? result : undefined, flags['fail-on-mismatch']);
    if (failure !== undefined) {
      // Not thrown: the report (and --json's object) is still the output; the exit status tells CI it failed.
      process.stderr.write(`sluice: ${failure}\n`);
      process.exitCode = 1;
    }
    return result;
  }
}

function targetOf(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--target "${raw}" is not a URL (e.g. --target http://127.0.0.1:6081)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError('CLI_ERR_FLAG_INVALID', `--target must be an http:// or https:// URL, got "${raw}"`);
  return u;
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e: unknown) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--ca: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * Why the replay failed, if it did: requests that got no response at all (refused, reset or timed out before the
 * status line; a body cut mid-way is an observation, as the recording may have one too), or with --fail-on-mismatch
 * answers that differ from the recording (one target) or between the targets (several).
 */
export function verdict(reports: ReplayReport[], comparison: Comparison | undefined, failOnMismatch: boolean): string | undefined {
  for (const rep of reports) {
    const failed = rep.requests.filter((r) => r.observed.status === undefined);
    if (failed.length > 0) {
      const first = failed[0]?.observed.error ?? 'no response';
      return `${failed.length} of ${rep.requests.length} requests got no response from ${rep.summary.target} (${first}${failed.length > 1 ? ', ...' : ''})`;
    }
  }
  if (!failOnMismatch) return undefined;
  if (comparison !== undefined) {
    const n = comparison.differences.length;
    return n === 0 ? undefined : `${n} requests answered differently on ${comparison.targets.join(' and ')} and --fail-on-mismatch is set`;
  }
  for (const rep of reports) {
    const s = rep.summary;
    const differ = rep.requests.filter((r) => r.match.status === false || r.match.outcome === false).length;
    if (differ > 0) return `${differ} of ${rep.requests.length} requests answered differently from the recording at ${s.target} (${s.statusMismatches} status, ${s.outcomeMismatches} outcome mismatches) and --fail-on-mismatch is set`;
  }
  return undefined;
}
