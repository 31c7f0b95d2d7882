import { Command, Flags } from '@oclif/core';
import { formatVarnishlog, parseNdjsonGroup } from '@sluice/core';
import { adminFetch, adminTarget } from '../admin-client.js';
import { CliError } from '../errors.js';
import { adminFlags } from './stats.js';

export default class LogCommand extends Command {
  static override summary = "Tail a running proxy's transaction log, as varnishlog does.";
  static override description =
    'Reads GET /log from the admin API and prints each transaction group as it completes, in the layout varnishlog prints (or NDJSON with --ndjson). The proxy builds log records only while someone is reading them (or --log is on), so tailing costs nothing when no one does. Filters apply to the client request of each group.';
  static override examples = [
    '<%= config.bin %> log --token s3cret-token',
    '<%= config.bin %> log -g vxid',
    '<%= config.bin %> log --url "^/api/" --status 5xx',
    '<%= config.bin %> log --ndjson --count 100 > sample.ndjson',
  ];
  static override flags = {
    ...adminFlags,
    grouping: Flags.string({
      char: 'g',
      summary: 'request: a client request with its backend fetches (varnishlog -g request); vxid: one block per transaction, sessions included; session: a client connection with its requests, printed when it closes. e.g. -g vxid',
      options: ['request', 'vxid', 'session'],
      default: 'request',
    }),
    url: Flags.string({ summary: 'Only requests whose URL matches this regular expression. e.g. --url "^/api/"', helpValue: 'REGEX' }),
    status: Flags.string({ summary: 'Only responses with this status or class. e.g. --status 404, --status 5xx', helpValue: 'CODE' }),
    ndjson: Flags.boolean({ summary: 'Print NDJSON groups (replayable with sluice replay) instead of text. e.g. --ndjson' }),
    count: Flags.integer({ summary: 'Stop after N groups. e.g. --count 10', helpValue: 'N', min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(LogCommand);
    const t = adminTarget(flags);
    if (flags.url !== undefined) {
      try {
        new RegExp(flags.url);
      } catch {
        throw new CliError('CLI_ERR_FLAG_INVALID', `--url: "${flags.url}" is not a regular expression`);
      }
    }
    if (flags.status !== undefined && !/^([1-5]\d\d|[1-5]xx)$/i.test(flags.status)) {
      throw new CliError('CLI_ERR_FLAG_INVALID', `--status: "${flags.status}" is not a status (404) or a class (5xx)`);
    }
    const q = new URLSearchParams({ grouping: flags.grouping });
    if (flags.url !== undefined) q.set('url', flags.url);
    if (flags.status !== undefined) q.set('status', flags.status);
    const ac = new AbortController();
    const res = await adminFetch(t, 'GET', `/log?${q.toString()}`, { signal: ac.signal });
    if (res.body === null) throw new CliError('CLI_ERR_ADMIN', 'admin API GET /log: no body');
    const grouping = flags.grouping === 'vxid' ? 'vxid' : flags.grouping === 'session' ? 'session' : 'request';
    let n = 0;
    let buf = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() === '') continue;
          const overflow = /^\{"overflow":(\d+)\}$/.exec(line);
          if (overflow !== null) {
            process.stderr.write(`sluice log: ${overflow[1]} groups dropped (reader too slow)\n`);
            continue;
          }
          if (flags.ndjson) process.stdout.write(`${line}\n`);
          else {
            const g = parseNdjsonGroup(line);
            if (g !== undefined) process.stdout.write(formatVarnishlog(g, grouping));
          }
          if (flags.count !== undefined && ++n >= flags.count) {
            ac.abort();
            return;
          }
        }
      }
    } catch (e: unknown) {
      if (ac.signal.aborted) return;
      throw new CliError('CLI_ERR_ADMIN', `the admin API closed the log stream: ${(e as Error).message}`);
    }
  }
}
